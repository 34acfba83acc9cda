// DiskIo for JavaScript (see disk-file.h for what the jobs do): each call
// copies its arguments into a job on the JS thread, runs it on the DiskIo's
// own ThreadPool and settles its Promise through the addon's CompletionQueue,
// as copy.cc and the Valkey binding do. The Buffers (and the pool memory they
// live in) are held until the job settles. diskProbe and diskLock are
// synchronous: the daemon calls them once, before it serves.
//
// A chunk's checksum runs on a second pool of as many threads, beside its
// write or after its read, so the I/O threads only move bytes:
//
//   write: [sum pool] XXH3, header sums ─┐  (the two at once; the header waits for the sums)
//          [I/O pool] pwritev payload ───┴─► header, close, rename ─► settle
//   read:  [I/O pool] preadv header + payload ─► [sum pool] XXH3 ─► settle
#include "binding.h"

#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "../addon-data.h"
#include "../napi-args.h"
#include "../constants.h"
#include "../thread-pool.h"
#include "../checksum.h"
#include "disk-file.h"

namespace kvtier {
namespace {

using Result = std::function<Napi::Value(Napi::Env)>;

class DiskIoWrap : public Napi::ObjectWrap<DiskIoWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "DiskIo",
                       {InstanceMethod("write", &DiskIoWrap::Write), InstanceMethod("read", &DiskIoWrap::Read),
                        InstanceMethod("writePlain", &DiskIoWrap::WritePlain),
                        InstanceMethod("readPlain", &DiskIoWrap::ReadPlain), InstanceMethod("scan", &DiskIoWrap::Scan),
                        InstanceMethod("remove", &DiskIoWrap::Remove), InstanceMethod("close", &DiskIoWrap::Close),
                        InstanceAccessor("threads", &DiskIoWrap::Threads, nullptr)});
  }

  // new DiskIo(threads)
  explicit DiskIoWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DiskIoWrap>(info) {
    double n = args::integer(info, 0, "threads");
    if (n < 1 || n > 64) args::bad(info.Env(), "expected 1..64 for disk I/O threads");
    pool_ = std::make_unique<ThreadPool>(static_cast<size_t>(n));
    sums_ = std::make_unique<ThreadPool>(static_cast<size_t>(n));
  }

 private:
  void requireOpen(Napi::Env env) {
    if (!pool_) throw codedError(env, codes::kNative, "the disk I/O pool is closed");
  }

  // write(tmpPath, finalPath, header(4096), payload, sumOffset, headerSumOffset, direct, sync) -> {direct}
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    requireOpen(env);
    auto w = std::make_shared<DiskWrite>();
    w->tmpPath = args::string(info, 0, "temporary path");
    w->finalPath = args::string(info, 1, "final path");
    Napi::Uint8Array header = args::bytes(info, 2, "header");
    if (header.ByteLength() != kDiskBlock) args::bad(env, "expected a 4096-byte header");
    w->header.assign(header.Data(), header.Data() + kDiskBlock);
    Napi::Uint8Array payload = args::bytes(info, 3, "payload");
    w->data = payload.Data();
    w->length = payload.ByteLength();
    w->sumOffset = static_cast<size_t>(args::integer(info, 4, "sumOffset"));
    w->headerSumOffset = static_cast<size_t>(args::integer(info, 5, "headerSumOffset"));
    w->direct = args::boolean(info, 6, "direct");
    w->sync = args::boolean(info, 7, "sync");
    Stages stages{[w] { return sumChunkWrite(*w); }, [w] { return writeChunkFile(*w); }, nullptr};
    return startStaged(env, {payload}, std::move(stages), [w](Napi::Env env) -> Napi::Value {
      Napi::Object o = Napi::Object::New(env);
      o.Set("direct", w->usedDirect);
      return o;
    });
  }

  // read(path, dest, direct, dropCache) -> {complete, fileSize, header: Buffer|null, sum, direct}
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    requireOpen(env);
    auto r = std::make_shared<DiskRead>();
    r->path = args::string(info, 0, "path");
    Napi::Uint8Array dest = args::bytes(info, 1, "destination");
    r->data = dest.Data();
    r->length = dest.ByteLength();
    r->direct = args::boolean(info, 2, "direct");
    r->dropCache = args::boolean(info, 3, "dropCache");
    Stages stages{nullptr, [r] { return readChunkFile(*r); }, [r] { sumChunkRead(*r); return CopyError{"", ""}; }};
    return startStaged(env, {dest}, std::move(stages), [r](Napi::Env env) -> Napi::Value {
      Napi::Object o = Napi::Object::New(env);
      o.Set("complete", r->complete);
      o.Set("fileSize", static_cast<double>(r->fileSize));
      o.Set("direct", r->usedDirect);
      if (r->complete) {
        o.Set("header", Napi::Buffer<uint8_t>::Copy(env, r->header.data(), r->header.size()));
        char hex[16];
        sumHex(r->sum, hex);
        o.Set("sum", Napi::String::New(env, hex, 16));
      } else {
        o.Set("header", env.Null());
        o.Set("sum", "");
      }
      return o;
    });
  }

  // writePlain(path, src, offset, direct)
  Napi::Value WritePlain(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    requireOpen(env);
    std::string path = args::string(info, 0, "path");
    Napi::Uint8Array src = args::bytes(info, 1, "source");
    uint64_t offset = static_cast<uint64_t>(args::integer(info, 2, "offset"));
    bool direct = args::boolean(info, 3, "direct");
    const uint8_t* data = src.Data();
    size_t len = src.ByteLength();
    return start(env, {src}, [=] { return writePlain(path, data, len, offset, direct); }, nullptr);
  }

  // readPlain(path, dest, offset, direct, dropCache)
  Napi::Value ReadPlain(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    requireOpen(env);
    std::string path = args::string(info, 0, "path");
    Napi::Uint8Array dest = args::bytes(info, 1, "destination");
    uint64_t offset = static_cast<uint64_t>(args::integer(info, 2, "offset"));
    bool direct = args::boolean(info, 3, "direct");
    bool drop = args::boolean(info, 4, "dropCache");
    uint8_t* data = dest.Data();
    size_t len = dest.ByteLength();
    return start(env, {dest}, [=] { return readPlain(path, data, len, offset, direct, drop); }, nullptr);
  }

  // scan(root, headBytes) -> {paths: string[], sizes: Float64Array, mtimes: Float64Array, heads: Buffer[]}
  Napi::Value Scan(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    requireOpen(env);
    std::string root = args::string(info, 0, "root");
    size_t headBytes = static_cast<size_t>(args::integer(info, 1, "headBytes"));
    if (headBytes > kDiskBlock) args::bad(env, "expected at most 4096 head bytes");
    auto entries = std::make_shared<std::vector<DiskScanEntry>>();
    return start(env, {}, [=] { return scanChunkDir(root, headBytes, entries.get()); }, [entries](Napi::Env env) -> Napi::Value {
      const auto& es = *entries;
      Napi::Object o = Napi::Object::New(env);
      Napi::Array paths = Napi::Array::New(env, es.size());
      Napi::Array heads = Napi::Array::New(env, es.size());
      auto sizes = Napi::Float64Array::New(env, es.size());
      auto mtimes = Napi::Float64Array::New(env, es.size());
      for (size_t i = 0; i < es.size(); ++i) {
        paths.Set(static_cast<uint32_t>(i), Napi::String::New(env, es[i].path));
        heads.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(env, es[i].head.data(), es[i].head.size()));
        sizes[i] = static_cast<double>(es[i].size);
        mtimes[i] = es[i].mtimeMs;
      }
      o.Set("paths", paths);
      o.Set("heads", heads);
      o.Set("sizes", sizes);
      o.Set("mtimes", mtimes);
      return o;
    });
  }

  // remove(paths) -> number that existed
  Napi::Value Remove(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    requireOpen(env);
    auto paths = std::make_shared<std::vector<std::string>>(args::strings(info, 0, "paths"));
    auto removed = std::make_shared<size_t>(0);
    return start(env, {}, [=] {
      *removed = removeFiles(*paths);
      return CopyError{"", ""};
    }, [removed](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(*removed)); });
  }

  // Runs what is queued, then joins the threads (the caller awaits its jobs first).
  Napi::Value Close(const Napi::CallbackInfo& info) {
    pool_.reset();
    sums_.reset();
    return info.Env().Undefined();
  }

  Napi::Value Threads(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), pool_ ? static_cast<double>(pool_->size()) : 0);
  }

  Napi::Value start(Napi::Env env, std::vector<Napi::Uint8Array> buffers, std::function<CopyError()> work,
                    Result result) {
    auto* data = env.GetInstanceData<AddonData>();
    auto deferred = Napi::Promise::Deferred::New(env);
    HeldBuffers held = holdBuffers(env, buffers, "io", Value());
    std::vector<std::shared_ptr<PoolMemory>> pools = std::move(held.pools);
    auto* pending = new PendingCopy{deferred, Napi::Persistent(held.keep), {}, {}};
    CompletionQueue* completions = data->completions.get();
    completions->started(env);
    pool_->submit([pending, completions, work = std::move(work), result = std::move(result), pools = std::move(pools)] {
      pending->result = work();
      if (pending->result.code.empty() && result) pending->value = result;
      completions->finished(pending);
    });
    return deferred.Promise();
  }

  // A chunk job: CPU work beside its I/O (started at the same time; `io`
  // waits for what it needs of it and settles only after it, as
  // writeChunkFile does), the I/O, CPU work after it. Either CPU stage may be empty.
  struct Stages {
    std::function<CopyError()> beside;
    std::function<CopyError()> io;
    std::function<CopyError()> after;
  };

  // As start(), with `beside` and `after` on the sum pool and only `io` on
  // the I/O pool; a failed `io` settles the job at once, and `beside`'s
  // result reaches the job through `io`.
  Napi::Value startStaged(Napi::Env env, std::vector<Napi::Uint8Array> buffers, Stages stages, Result result) {
    auto* data = env.GetInstanceData<AddonData>();
    auto deferred = Napi::Promise::Deferred::New(env);
    HeldBuffers held = holdBuffers(env, buffers, "io", Value());
    auto* pending = new PendingCopy{deferred, Napi::Persistent(held.keep), {}, {}};
    CompletionQueue* completions = data->completions.get();
    completions->started(env);
    ThreadPool* io = pool_.get();
    ThreadPool* sums = sums_.get();
    auto job = std::make_shared<Stages>(std::move(stages));
    auto pools = std::make_shared<std::vector<std::shared_ptr<PoolMemory>>>(std::move(held.pools));
    auto settle = [pending, completions, result, pools](CopyError e) {
      pending->result = std::move(e);
      if (pending->result.code.empty() && result) pending->value = result;
      completions->finished(pending);
    };
    if (job->beside) sums->submit([job] { job->beside(); });
    io->submit([sums, job, settle] {
      CopyError e = job->io();
      if (!e.code.empty() || !job->after) return settle(std::move(e));
      sums->submit([job, settle] { settle(job->after()); });
    });
    return deferred.Promise();
  }

  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<ThreadPool> sums_;
};

// diskProbe(dir, direct) -> '' or why the directory cannot be used
Napi::Value DiskProbe(const Napi::CallbackInfo& info) {
  std::string dir = args::string(info, 0, "dir");
  bool direct = args::boolean(info, 1, "direct");
  return Napi::String::New(info.Env(), probeDir(dir, direct));
}

// diskLock(path) -> fd; throws KVT_DISK_LOCKED with `heldBy` (a pid, or 0)
Napi::Value DiskLock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = args::string(info, 0, "path");
  std::string why;
  long heldBy = 0;
  int fd = lockFile(path, &why, &heldBy);
  if (fd < 0) {
    Napi::Error e = codedError(env, codes::kDiskLocked, why);
    e.Value().Set("heldBy", static_cast<double>(heldBy));
    throw e;
  }
  return Napi::Number::New(env, fd);
}

// diskUnlock(fd)
Napi::Value DiskUnlock(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(args::integer(info, 0, "fd"));
  flock(fd, LOCK_UN);
  ::close(fd);
  return info.Env().Undefined();
}

}  // namespace

void defineDiskIo(Napi::Env env, Napi::Object exports) {
  exports.Set("DiskIo", DiskIoWrap::Define(env));
  exports.Set("diskProbe", Napi::Function::New(env, DiskProbe));
  exports.Set("diskLock", Napi::Function::New(env, DiskLock));
  exports.Set("diskUnlock", Napi::Function::New(env, DiskUnlock));
}

}  // namespace kvtier
