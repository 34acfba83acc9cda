// N-API bindings: the only file that knows about JavaScript values. It turns
// arguments into plain numbers, pointers and lengths, checks each one at the
// boundary (type, range, instance of the right class), and hands them to
// pool/region/copy. Errors thrown or rejected here carry a `code` from
// src/errors.ts; native/index.ts maps them to the typed classes.
#include <napi.h>

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <vector>

#include "addon-data.h"
#include "checksum.h"
#include "napi-args.h"
#include "completion-queue.h"
#include "copy.h"
#include "cuda-backend.h"
#include "cuda-testing.h"
#include "disk/binding.h"
#include "peer-cred.h"
#include "prefix-hash.h"
#include "pool.h"
#include "region.h"
#include "thread-pool.h"
#include "valkey/binding.h"
#include "constants.h"

namespace kvtier {

Napi::Error codedError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Value().Set("code", Napi::String::New(env, code));
  return e;
}

namespace {

[[noreturn]] void throwCoded(Napi::Env env, const std::string& code, const std::string& message) {
  throw codedError(env, code, message);
}

size_t sizeArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throwCoded(info.Env(), codes::kBadRequest, std::string("expected a number for ") + what);
  }
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0 && v <= 9007199254740991.0) || std::floor(v) != v) {
    throwCoded(info.Env(), codes::kBadRequest,
               std::string("expected a non-negative integer for ") + what + ", got " + std::to_string(v));
  }
  return static_cast<size_t>(v);
}

// Live pool memories, so that a copy can hold the pool its buffers point
// into even if the pool is closed while the copy runs.
std::mutex gPoolsMu;
std::vector<std::weak_ptr<PoolMemory>> gPools;

}  // namespace

std::shared_ptr<PoolMemory> poolHolding(const uint8_t* p) {
  std::lock_guard<std::mutex> lock(gPoolsMu);
  for (auto& w : gPools) {
    auto mem = w.lock();
    if (mem && p >= mem->base && p < mem->base + mem->size) return mem;
  }
  return nullptr;
}

HeldBuffers holdBuffers(Napi::Env env, const std::vector<Napi::Uint8Array>& buffers, const char* ownerKey,
                        Napi::Value owner) {
  HeldBuffers held{Napi::Object::New(env), {}};
  for (size_t i = 0; i < buffers.size(); ++i) {
    held.keep.Set(static_cast<uint32_t>(i), buffers[i]);
    if (buffers[i].ByteLength() > 0) {
      auto mem = poolHolding(buffers[i].Data());
      if (mem) held.pools.push_back(std::move(mem));
    }
  }
  held.keep.Set(ownerKey, owner);
  return held;
}

namespace {

// Faults in and locks one arena on a libuv worker thread (pool.h, "Warming").
// It holds the memory, so a close() while it runs only stops it early.
class WarmWorker : public Napi::AsyncWorker {
 public:
  WarmWorker(Napi::Env env, std::shared_ptr<PoolMemory> mem, size_t step)
      : Napi::AsyncWorker(env), mem_(std::move(mem)), step_(step), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { warmPoolMemory(*mem_, step_, mem_->size); }
  void OnOK() override { deferred_.Resolve(Napi::Boolean::New(Env(), mem_->warm.load(std::memory_order_acquire))); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::shared_ptr<PoolMemory> mem_;
  size_t step_;
  Napi::Promise::Deferred deferred_;
};

class Pool : public Napi::ObjectWrap<Pool> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Pool",
                       {InstanceMethod("alloc", &Pool::Alloc), InstanceMethod("free", &Pool::Free),
                        InstanceMethod("info", &Pool::Info), InstanceMethod("warm", &Pool::Warm),
                        InstanceMethod("warmNow", &Pool::WarmNow),
                        InstanceMethod("close", &Pool::Close)});
  }

  explicit Pool(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Pool>(info) {
    Napi::Env env = info.Env();
    size_t bytes = sizeArg(info, 0, "pool bytes");
    if (bytes < ExtentAllocator::kGranule) {
      throwCoded(env, codes::kBadRequest,
                 "expected at least " + std::to_string(ExtentAllocator::kGranule) + " for pool bytes, got " +
                     std::to_string(bytes));
    }
    bytes = bytes / ExtentAllocator::kGranule * ExtentAllocator::kGranule;
    // One ArrayBuffer per pool: Node cannot hand out Buffers past 4 GiB, and a
    // failed external ArrayBuffer creation frees its hint twice. NativePool in
    // index.ts builds larger pools from several arenas.
    if (bytes > (size_t{1} << 32)) {
      throwCoded(env, codes::kBadRequest, "expected at most 4 GiB for one pool arena, got " + std::to_string(bytes));
    }
    try {
      mem_ = allocatePoolMemory(bytes);
    } catch (const std::exception& e) {
      throwCoded(env, codes::kNative, e.what());
    }
    alloc_ = std::make_unique<ExtentAllocator>(bytes);
    {
      std::lock_guard<std::mutex> lock(gPoolsMu);
      gPools.erase(std::remove_if(gPools.begin(), gPools.end(), [](auto& w) { return w.expired(); }),
                   gPools.end());
      gPools.push_back(mem_);
    }
    // The ArrayBuffer holds its own reference; its finalizer drops it.
    auto* hold = new std::shared_ptr<PoolMemory>(mem_);
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
        env, mem_->base, mem_->size, [](Napi::Env, void*, std::shared_ptr<PoolMemory>* h) { delete h; }, hold);
    ab_ = Napi::Persistent(ab);
    info.This().As<Napi::Object>().Set("buffer", ab);
  }

 private:
  void requireOpen(Napi::Env env) {
    if (!mem_) throwCoded(env, codes::kNative, "the pool is closed");
  }

  Napi::Value Alloc(const Napi::CallbackInfo& info) {
    requireOpen(info.Env());
    size_t bytes = sizeArg(info, 0, "allocation bytes");
    alloc_->grow(mem_->ready.load(std::memory_order_acquire));
    return Napi::Number::New(info.Env(), static_cast<double>(alloc_->allocate(bytes)));
  }

  Napi::Value Free(const Napi::CallbackInfo& info) {
    requireOpen(info.Env());
    size_t offset = sizeArg(info, 0, "slab offset");
    if (alloc_->release(offset) != 0) {
      throwCoded(info.Env(), codes::kNative,
                 "slab at offset " + std::to_string(offset) +
                     " is not live in this pool (released twice, or never allocated here)");
    }
    return info.Env().Undefined();
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("capacityBytes", static_cast<double>(alloc_->capacity()));
    o.Set("usedBytes", static_cast<double>(alloc_->used()));
    o.Set("liveSlabs", static_cast<double>(alloc_->liveCount()));
    bool warm = mem_ && mem_->warm.load(std::memory_order_acquire);
    o.Set("readyBytes", static_cast<double>(mem_ ? std::min(mem_->ready.load(), alloc_->capacity()) : 0));
    o.Set("lockedBytes", static_cast<double>(mem_ ? mem_->locked.load() : 0));
    o.Set("warm", warm);
    o.Set("pinned", warm && mem_->pinned);
    o.Set("hugePages", mem_ ? mem_->hugePages : false);
    o.Set("cudaHost", mem_ ? mem_->cudaHost : false);
    std::string detail = !mem_ ? std::string("closed")
                         : warm && !mem_->lockDetail.empty() ? mem_->detail + "; " + mem_->lockDetail
                         : warm ? mem_->detail
                                : mem_->detail + "; warming (mlock in progress)";
    o.Set("detail", detail);
    return o;
  }

  // warmNow(upToBytes): warms [ready, upToBytes) on the JS thread (a first
  // step before the daemon listens; small pools in tests and benches).
  Napi::Value WarmNow(const Napi::CallbackInfo& info) {
    requireOpen(info.Env());
    size_t upTo = sizeArg(info, 0, "bytes to warm");
    warmPoolMemory(*mem_, upTo, upTo);
    return info.Env().Undefined();
  }

  // warm(stepBytes): a Promise of true once the arena is faulted in and
  // locked as far as the OS allows (false: stopped by close()).
  Napi::Value Warm(const Napi::CallbackInfo& info) {
    requireOpen(info.Env());
    size_t step = sizeArg(info, 0, "warming step bytes");
    if (step < ExtentAllocator::kGranule) {
      throwCoded(info.Env(), codes::kBadRequest, "expected at least 4096 for warming step bytes, got " + std::to_string(step));
    }
    auto* worker = new WarmWorker(info.Env(), mem_, step / ExtentAllocator::kGranule * ExtentAllocator::kGranule);
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  }

  // Detaches the ArrayBuffer (every Buffer view over it becomes empty, so JS
  // cannot touch freed memory) and drops the pool's reference.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (!mem_) return info.Env().Undefined();
    mem_->stop.store(true);
    Napi::ArrayBuffer ab = ab_.Value();
    if (!ab.IsDetached()) ab.Detach();
    ab_.Reset();
    mem_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<PoolMemory> mem_;
  std::unique_ptr<ExtentAllocator> alloc_;
  Napi::Reference<Napi::ArrayBuffer> ab_;
};

class Region : public Napi::ObjectWrap<Region> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Region",
                       {InstanceMethod("close", &Region::Close), InstanceAccessor("size", &Region::Size, nullptr),
                        InstanceAccessor("kind", &Region::Kind, nullptr)});
  }

  // new Region(shmPath: string, size, shmDir: string, ownerUid) or
  // new Region(ipcHandle: Buffer(64), size, device)
  explicit Region(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Region>(info) {
    Napi::Env env = info.Env();
    size_t size = sizeArg(info, 1, "region size_bytes");
    if (size == 0) throwCoded(env, codes::kBadLayout, "expected a positive size_bytes for a region, got 0");
    if (info[0].IsString()) {
      if (info.Length() < 4 || !info[2].IsString()) {
        throwCoded(env, codes::kBadRequest, "expected (shmPath, size, shmDir, ownerUid) for a shm region");
      }
      size_t uid = sizeArg(info, 3, "owner uid");
      if (uid > UINT32_MAX) throwCoded(env, codes::kBadRequest, "expected a uid below 2^32, got " + std::to_string(uid));
      RegionError error;
      mapping_ = openShmRegion(info[2].As<Napi::String>().Utf8Value(), info[0].As<Napi::String>().Utf8Value(), size,
                               static_cast<uint32_t>(uid), &error);
      if (!mapping_) throwCoded(env, error.code, error.message);
      return;
    }
    std::string error;
    if (info[0].IsBuffer()) {
      auto handle = info[0].As<Napi::Buffer<uint8_t>>();
      if (handle.Length() != 64) {
        throwCoded(env, codes::kBadLayout,
                   "expected 64 bytes for cuda_ipc_handle, got " + std::to_string(handle.Length()));
      }
      size_t device = sizeArg(info, 2, "device_index");
      mapping_ = openCudaIpcRegion(handle.Data(), size, static_cast<int>(device), &error);
    } else {
      throwCoded(env, codes::kBadLayout, "expected a shm path or a CUDA IPC handle for a region");
    }
    if (!mapping_) throwCoded(env, codes::kRegionUnavailable, error);
  }

  std::shared_ptr<RegionMapping> mapping() const { return mapping_; }

 private:
  Napi::Value Close(const Napi::CallbackInfo& info) {
    mapping_.reset();
    return info.Env().Undefined();
  }
  Napi::Value Size(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), mapping_ ? static_cast<double>(mapping_->size) : 0);
  }
  Napi::Value Kind(const Napi::CallbackInfo& info) {
    if (!mapping_) return Napi::String::New(info.Env(), "closed");
    return Napi::String::New(info.Env(), mapping_->kind == RegionKind::Shm ? "shm" : "cuda");
  }

  std::shared_ptr<RegionMapping> mapping_;
};

// Arguments 0-2 of copyBlocks: scatter flag, Region[], Uint8Array[].
std::shared_ptr<CopyBatch> batchFromArgs(const Napi::CallbackInfo& info, std::vector<BufferView>* views) {
  Napi::Env env = info.Env();
  auto* data = env.GetInstanceData<AddonData>();
  auto batch = std::make_shared<CopyBatch>();
  batch->scatter = info[0].As<Napi::Boolean>().Value();
  Napi::Array regions = info[1].As<Napi::Array>();
  Napi::Function regionCtor = data->regionCtor.Value();
  for (uint32_t i = 0; i < regions.Length(); ++i) {
    Napi::Value v = regions.Get(i);
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(regionCtor)) {
      throwCoded(env, codes::kBadRequest, "expected a Region for regions[" + std::to_string(i) + "]");
    }
    auto mapping = Region::Unwrap(v.As<Napi::Object>())->mapping();
    if (!mapping) throwCoded(env, codes::kRegionUnavailable, "region " + std::to_string(i) + " is closed");
    batch->regions.push_back(std::move(mapping));
  }
  if (!batch->regions.empty()) batch->device = batch->regions[0]->device;
  Napi::Array buffers = info[2].As<Napi::Array>();
  for (uint32_t i = 0; i < buffers.Length(); ++i) {
    Napi::Value v = buffers.Get(i);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throwCoded(env, codes::kBadRequest, "expected a Buffer for buffers[" + std::to_string(i) + "]");
    }
    auto u8 = v.As<Napi::Uint8Array>();
    views->push_back({u8.Data(), u8.ByteLength()});
    if (u8.ByteLength() > 0) {
      auto mem = poolHolding(u8.Data());
      if (mem) batch->pools.push_back(std::move(mem));
    }
  }
  return batch;
}

// Runs a planned batch; the promise settles on the JS thread when it is done.
Napi::Value startCopy(Napi::Env env, std::shared_ptr<CopyBatch> batch, const CopyError& planned, Napi::Object keep) {
  auto* data = env.GetInstanceData<AddonData>();
  auto deferred = Napi::Promise::Deferred::New(env);
  if (!planned.code.empty()) {
    deferred.Reject(codedError(env, planned.code, planned.message).Value());
    return deferred.Promise();
  }
  auto* pending = new PendingCopy{deferred, Napi::Persistent(keep), {}, {}};
  CompletionQueue* completions = data->completions.get();
  completions->started(env);
  runCopy(std::move(batch), [pending, completions](const CopyError& result) {
    pending->result = result;
    completions->finished(pending);
  });
  return deferred.Promise();
}

// Arguments 3-5 of copyBlocks: blockIds (Uint32Array[]), planes (Float64Array), numBlocks.
struct BlockArgs {
  std::vector<BlockIds> jobs;
  Napi::Float64Array planes;
  uint64_t numBlocks = 0;
};

BlockArgs blockArgs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6 || !info[0].IsBoolean() || !info[1].IsArray() || !info[2].IsArray() || !info[3].IsArray() ||
      !info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      !info[5].IsNumber()) {
    throwCoded(env, codes::kBadRequest,
               "expected (boolean, Region[], Uint8Array[], Uint32Array[], Float64Array, number) for copyBlocks");
  }
  BlockArgs a;
  Napi::Array idArrays = info[3].As<Napi::Array>();
  for (uint32_t i = 0; i < idArrays.Length(); ++i) {
    Napi::Value v = idArrays.Get(i);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
      throwCoded(env, codes::kBadRequest, "expected a Uint32Array for blockIds[" + std::to_string(i) + "]");
    }
    auto ids = v.As<Napi::Uint32Array>();
    a.jobs.push_back({ids.Data(), ids.ElementLength()});
  }
  a.planes = info[4].As<Napi::Float64Array>();
  if (a.planes.ElementLength() % 4 != 0) {
    throwCoded(env, codes::kBadLayout,
               "expected a multiple of 4 for the plane array length, got " + std::to_string(a.planes.ElementLength()));
  }
  a.numBlocks = static_cast<uint64_t>(sizeArg(info, 5, "num_blocks"));
  return a;
}

// copyBlocks(scatter, regions, buffers, blockIds: Uint32Array[], planes: Float64Array, numBlocks): Promise<void>
// The id arrays are read only while planning, here; the buffers stay
// referenced until the copy settles.
Napi::Value CopyBlocks(const Napi::CallbackInfo& info) {
  BlockArgs a = blockArgs(info);
  std::vector<BufferView> views;
  auto batch = batchFromArgs(info, &views);
  CopyError planned = planBlocks(batch.get(), views, a.jobs, a.planes.Data(), a.planes.ElementLength() / 4, a.numBlocks);
  return startCopy(info.Env(), std::move(batch), planned, info[2].As<Napi::Object>());
}

// __testing.segments(same arguments as copyBlocks): the segments it would
// copy, [regionIndex, regionOffset, bufferIndex, bufferOffset, length] x N.
Napi::Value ListSegments(const Napi::CallbackInfo& info) {
  BlockArgs a = blockArgs(info);
  std::vector<BufferView> views;
  auto batch = batchFromArgs(info, &views);
  std::vector<double> out;
  CopyError e = listSegments(*batch, views, a.jobs, a.planes.Data(), a.planes.ElementLength() / 4, a.numBlocks, &out);
  if (!e.code.empty()) throw codedError(info.Env(), e.code, e.message);
  auto arr = Napi::Float64Array::New(info.Env(), out.size());
  std::copy(out.begin(), out.end(), arr.Data());
  return arr;
}

// peerCredentials(fd): {pid, uid, gid} of the process connected to the Unix socket fd.
Napi::Value PeerCreds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t fd = sizeArg(info, 0, "socket fd");
  if (fd > INT32_MAX) throwCoded(env, codes::kBadRequest, "expected a file descriptor, got " + std::to_string(fd));
  PeerCredentials cred;
  std::string error;
  if (!peerCredentials(static_cast<int>(fd), &cred, &error)) throwCoded(env, codes::kNative, error);
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", static_cast<double>(cred.pid));
  o.Set("uid", static_cast<double>(cred.uid));
  o.Set("gid", static_cast<double>(cred.gid));
  return o;
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string reason;
  int devices = cudaBackendDeviceCount(&reason);
  Napi::Object o = Napi::Object::New(env);
  o.Set("cudaCompiled", cudaBackendCompiled());
  o.Set("deviceCount", devices);
  o.Set("reason", reason);
  o.Set("copyThreads", static_cast<double>(copyThreadCount()));
  o.Set("cudaCopy", cudaBackendCopyMode());
  o.Set("cudaCopyGpuMs", cudaBackendCopyGpuMs());
  return o;
}

// setCudaCopy(mode): "staged" or "kernel"; false when not taken.
Napi::Value SetCudaCopy(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "setCudaCopy(mode: string)");
  return Napi::Boolean::New(info.Env(), cudaBackendSetCopyMode(info[0].As<Napi::String>().Utf8Value()));
}

// tuneMalloc(): keeps large transient Buffers (frames, Valkey values) in
// glibc's heap instead of mmap/munmap per allocation. On the VMs we measured,
// first-touch page faults made a fresh 512 KiB Buffer cost more than the
// whole lookup that used it (bench lookup p50 3.5 ms -> 1.25 ms with this).
Napi::Value TuneMalloc(const Napi::CallbackInfo& info) {
  bool ok = mallopt(M_MMAP_THRESHOLD, 64 << 20) == 1;
  ok = mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 && ok;
  return Napi::Boolean::New(info.Env(), ok);
}

// chainHashes(prev: Buffer(32), tokens: Uint8Array, chunkBytes, count, out: Buffer(count*32)).
// Synchronous: 128K tokens take well under a millisecond, less than a hop to a thread.
Napi::Value ChainHashes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 5 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsNumber() ||
      !info[3].IsNumber() || !info[4].IsTypedArray()) {
    throw Napi::TypeError::New(env, "chainHashes(prev, tokens, chunkBytes, count, out): bad arguments");
  }
  auto bytes = [](const Napi::Value& v) { return v.As<Napi::Uint8Array>(); };
  Napi::Uint8Array prev = bytes(info[0]), tokens = bytes(info[1]), out = bytes(info[4]);
  const double chunkBytes = info[2].As<Napi::Number>().DoubleValue();
  const double count = info[3].As<Napi::Number>().DoubleValue();
  const double tokenBytes = static_cast<double>(tokens.ByteLength());
  const bool ok = prev.ByteLength() == 32 && chunkBytes >= 1 && chunkBytes == static_cast<double>(static_cast<size_t>(chunkBytes)) &&
                  count >= 0 && count == static_cast<double>(static_cast<size_t>(count)) &&
                  static_cast<double>(out.ByteLength()) >= count * 32 && (count == 0 || (count - 1) * chunkBytes < tokenBytes);
  if (!ok) throw Napi::RangeError::New(env, "chainHashes: out of bounds");
  // out must not overlap the tokens it is hashed from (or prev, read first anyway).
  const uint8_t* t0 = tokens.Data();
  const uint8_t* o0 = out.Data();
  if (o0 < t0 + tokens.ByteLength() && t0 < o0 + static_cast<size_t>(count) * 32) {
    throw Napi::RangeError::New(env, "chainHashes: out overlaps tokens");
  }
  chainHashes(prev.Data(), tokens.Data(), tokens.ByteLength(), static_cast<size_t>(chunkBytes), static_cast<size_t>(count),
              out.Data());
  return env.Undefined();
}

// setChainMemo(bytes): the chain memo's budget (prefix-hash.h); 0 turns it off.
Napi::Value SetChainMemo(const Napi::CallbackInfo& info) {
  setChainMemoBytes(static_cast<size_t>(args::integer(info, 0, "bytes")));
  return info.Env().Undefined();
}

// chainMemoStats(): {bytes, slots, hits, misses} of the chain memo.
Napi::Value ChainMemoStatsJs(const Napi::CallbackInfo& info) {
  const ChainMemoStats s = chainMemoStats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("bytes", static_cast<double>(s.bytes));
  o.Set("slots", static_cast<double>(s.slots));
  o.Set("hits", static_cast<double>(s.hits));
  o.Set("misses", static_cast<double>(s.misses));
  return o;
}

// payloadSum(bytes, pieceBytes): XXH3-64 (checksum.h) as 16 hex digits, as
// src/tiers/checksum.ts writes them, fed in pieces of pieceBytes (0: one
// update) as the I/O threads feed it with each send and recv. For tests, and
// for valkey-native.ts, whose first call of it loads the addon.
Napi::Value PayloadSumHex(const Napi::CallbackInfo& info) {
  Napi::Uint8Array bytes = args::bytes(info, 0, "bytes");
  // pieceBytes 0: one update of every byte.
  const size_t piece = static_cast<size_t>(args::integer(info, 1, "pieceBytes"));
  PayloadSum h;
  const size_t n = bytes.ByteLength();
  for (size_t at = 0; at < n; at += piece == 0 ? n : piece) h.update(bytes.Data() + at, std::min(n - at, piece == 0 ? n : piece));
  char hex[16];
  sumHex(h.digest(), hex);
  return Napi::String::New(info.Env(), hex, 16);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  Napi::Function region = Region::Define(env);
  data->regionCtor = Napi::Persistent(region);
  data->completions = std::make_unique<CompletionQueue>(env);
  // Registered after the queue's ThreadSafeFunction, so it runs before that
  // function is torn down (hooks run in reverse order).
  env.AddCleanupHook([q = data->completions.get()] { q->waitForThreads(); });
  env.SetInstanceData(data);
  exports.Set("Pool", Pool::Define(env));
  exports.Set("Region", region);
  exports.Set("copyBlocks", Napi::Function::New(env, CopyBlocks));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCreds));
  exports.Set("chainHashes", Napi::Function::New(env, ChainHashes));
  exports.Set("setChainMemo", Napi::Function::New(env, SetChainMemo));
  exports.Set("chainMemoStats", Napi::Function::New(env, ChainMemoStatsJs));
  exports.Set("tuneMalloc", Napi::Function::New(env, TuneMalloc));
  exports.Set("setCudaCopy", Napi::Function::New(env, SetCudaCopy));
  exports.Set("ValkeyLink", defineValkeyLink(env));
  exports.Set("payloadSum", Napi::Function::New(env, PayloadSumHex));
  defineDiskIo(env, exports);
  Napi::Object testing = cudaTestingExports(env);
  testing.Set("segments", Napi::Function::New(env, ListSegments));
  exports.Set("__testing", testing);
  return exports;
}

}  // namespace
}  // namespace kvtier

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return kvtier::Init(env, exports); }

NODE_API_MODULE(kvtier_native, InitAddon)
