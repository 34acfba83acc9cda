// ValkeyLink for JavaScript (see link.h for what the jobs do). Arguments are
// checked here; byte ranges are computed here from one source/destination
// Buffer and a segment size, so JS never builds per-segment objects. The
// Buffers (and the pool memory they live in) are held until the job settles.
#include "binding.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "../addon-data.h"
#include "../napi-args.h"
#include "link.h"
#include "../checksum.h"
#include "../constants.h"

namespace kvtier {
namespace {

// Splits [data, data+total) into keys.size() segments of segBytes (the last shorter).
void layoutSegments(Napi::Env env, ValkeyJob* job, std::vector<std::string> keys, uint8_t* data, size_t total,
                    size_t segBytes) {
  if (keys.empty()) return;
  if (segBytes == 0 || (total + segBytes - 1) / segBytes != keys.size()) {
    args::bad(env, std::to_string(keys.size()) + " segments of " + std::to_string(segBytes) + " bytes cannot hold " +
                     std::to_string(total) + " bytes");
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    SegmentIo s;
    s.key = std::move(keys[i]);
    s.data = data + i * segBytes;
    s.length = std::min(segBytes, total - i * segBytes);
    job->segments.push_back(std::move(s));
  }
}

std::chrono::milliseconds timeoutArg(const Napi::CallbackInfo& info, size_t i) {
  return std::chrono::milliseconds(args::integer(info, i, "timeoutMs", 3.6e6));
}

class LinkWrap : public Napi::ObjectWrap<LinkWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ValkeyLink",
                       {InstanceMethod("write", &LinkWrap::Write), InstanceMethod("read", &LinkWrap::Read),
                        InstanceMethod("stats", &LinkWrap::Stats), InstanceMethod("close", &LinkWrap::Close),
                        InstanceMethod("abort", &LinkWrap::Abort)});
  }

  // new ValkeyLink(host, port, username, password, db, connections, connectTimeoutMs, pipelineBytes,
  //                tls, tlsCaPem ('' for the system's roots), tlsInsecure)
  explicit LinkWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LinkWrap>(info) {
    NodeAddress a;
    a.host = args::string(info, 0, "host");
    a.port = static_cast<int>(args::integer(info, 1, "port", 65535));
    a.username = args::string(info, 2, "username");
    a.password = args::string(info, 3, "password");
    a.db = static_cast<int>(args::integer(info, 4, "db", 1 << 20));
    int connections = static_cast<int>(args::integer(info, 5, "connections", 256));
    int connectMs = static_cast<int>(args::integer(info, 6, "connectTimeoutMs", 3.6e6));
    size_t pipeline = static_cast<size_t>(args::integer(info, 7, "pipelineBytes"));
    if (args::boolean(info, 8, "tls")) {
      TlsOptions tls;
      tls.enabled = true;
      tls.caPem = args::string(info, 9, "tlsCaPem");
      tls.insecure = args::boolean(info, 10, "tlsInsecure");
      std::string why;
      a.tls = TlsContext::create(tls, &why);
      if (!a.tls) args::bad(info.Env(), why);
    }
    link_ = ValkeyLink::start(std::move(a), std::max(1, connections), connectMs, pipeline);
  }
  ~LinkWrap() override {
    if (link_) link_->close();
  }

 private:
  // write(segKeys, src, segBytes, segTtl, manifestKey, manifest, sumOffsets: Uint32Array, manifestTtl, timeoutMs)
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto job = std::make_unique<ValkeyJob>();
    job->write = true;
    auto keys = args::strings(info, 0, "segment keys");
    Napi::Uint8Array src = args::bytes(info, 1, "source");
    size_t seg = static_cast<size_t>(args::integer(info, 2, "segment bytes"));
    layoutSegments(env, job.get(), std::move(keys), src.Data(), src.ByteLength(), seg);
    job->segmentTtl = args::integer(info, 3, "segment ttl");
    job->manifestKey = args::string(info, 4, "manifest key");
    Napi::Uint8Array manifest = args::bytes(info, 5, "manifest");
    job->manifest.assign(manifest.Data(), manifest.Data() + manifest.ByteLength());
    if (!info[6].IsTypedArray() || info[6].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
      args::bad(env, "expected a Uint32Array for the checksum offsets");
    }
    Napi::Uint32Array offsets = info[6].As<Napi::Uint32Array>();
    job->sumOffsets.assign(offsets.Data(), offsets.Data() + offsets.ElementLength());
    for (uint32_t at : job->sumOffsets) {
      if (static_cast<size_t>(at) + 16 > job->manifest.size()) args::bad(env, "a checksum offset lies outside the manifest");
    }
    job->manifestTtl = args::integer(info, 7, "manifest ttl");
    job->timeout = timeoutArg(info, 8);
    return start(env, std::move(job), {src}, [](Napi::Env env, ValkeyJob&) { return env.Undefined(); });
  }

  // read(manifestKey ('' for none), manifestCap, segKeys, dest, segBytes, timeoutMs, asking)
  //   -> { manifest: Buffer | null, manifestState: 'ok'|'nil'|'too-long'|'none', got: Float64Array, sums: string[] }
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto job = std::make_unique<ValkeyJob>();
    job->manifestKey = args::string(info, 0, "manifest key");
    size_t cap = static_cast<size_t>(args::integer(info, 1, "manifest capacity", 64 << 20));
    if (!job->manifestKey.empty()) job->manifest.resize(cap);
    auto keys = args::strings(info, 2, "segment keys");
    Napi::Uint8Array dest = args::bytes(info, 3, "destination");
    size_t seg = static_cast<size_t>(args::integer(info, 4, "segment bytes"));
    layoutSegments(env, job.get(), std::move(keys), dest.Data(), dest.ByteLength(), seg);
    job->timeout = timeoutArg(info, 5);
    job->asking = args::boolean(info, 6, "asking");
    const bool wantManifest = !job->manifestKey.empty();
    return start(env, std::move(job), {dest}, [wantManifest](Napi::Env env, ValkeyJob& j) -> Napi::Value {
      Napi::Object o = Napi::Object::New(env);
      if (!wantManifest) {
        o.Set("manifestState", "none");
        o.Set("manifest", env.Null());
      } else if (j.manifestGot >= 0) {
        o.Set("manifestState", "ok");
        o.Set("manifest", Napi::Buffer<uint8_t>::Copy(env, j.manifest.data(), static_cast<size_t>(j.manifestGot)));
      } else {
        o.Set("manifestState", j.manifestGot == -2 ? "too-long" : "nil");
        o.Set("manifest", env.Null());
      }
      auto got = Napi::Float64Array::New(env, j.segments.size());
      Napi::Array sums = Napi::Array::New(env, j.segments.size());
      char hex[16];
      for (size_t i = 0; i < j.segments.size(); ++i) {
        got[i] = static_cast<double>(j.segments[i].got);
        sumHex(j.segments[i].sum, hex);
        sums.Set(static_cast<uint32_t>(i), Napi::String::New(env, hex, 16));
      }
      o.Set("got", got);
      o.Set("sums", sums);
      return o;
    });
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    LinkStats s = link_ ? link_->stats() : LinkStats{};
    Napi::Object o = Napi::Object::New(env);
    o.Set("jobs", static_cast<double>(s.jobs));
    o.Set("failures", static_cast<double>(s.failures));
    o.Set("reconnects", static_cast<double>(s.reconnects));
    o.Set("bytesOut", static_cast<double>(s.bytesOut));
    o.Set("bytesIn", static_cast<double>(s.bytesIn));
    o.Set("parts", static_cast<double>(s.parts));
    o.Set("busyMs", static_cast<double>(s.busyNs) / 1e6);
    o.Set("waitMs", static_cast<double>(s.waitNs) / 1e6);
    return o;
  }

  // abort(why): fails every queued part, shuts down the sockets of running ones; the count of queued parts.
  Napi::Value Abort(const Napi::CallbackInfo& info) {
    std::string why = args::string(info, 0, "reason");
    return Napi::Number::New(info.Env(), link_ ? static_cast<double>(link_->abort(why)) : 0);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (link_) link_->close();
    return info.Env().Undefined();
  }

  using Result = std::function<Napi::Value(Napi::Env, ValkeyJob&)>;

  Napi::Value start(Napi::Env env, std::unique_ptr<ValkeyJob> job, std::vector<Napi::Uint8Array> buffers,
                    Result result) {
    auto* data = env.GetInstanceData<AddonData>();
    auto deferred = Napi::Promise::Deferred::New(env);
    HeldBuffers held = holdBuffers(env, buffers, "link", Value());
    std::vector<std::shared_ptr<PoolMemory>> pools = std::move(held.pools);
    auto* pending = new PendingCopy{deferred, Napi::Persistent(held.keep), {}, {}};
    CompletionQueue* completions = data->completions.get();
    completions->started(env);
    job->done = [pending, completions, result = std::move(result), pools = std::move(pools)](ValkeyJob* raw) {
      std::shared_ptr<ValkeyJob> j(raw);
      pending->result = {j->code, j->message};
      if (j->code.empty()) pending->value = [j, result](Napi::Env env) { return result(env, *j); };
      completions->finished(pending);
    };
    link_->submit(std::move(job));
    return deferred.Promise();
  }

  std::shared_ptr<ValkeyLink> link_;
};

}  // namespace

Napi::Function defineValkeyLink(Napi::Env env) { return LinkWrap::Define(env); }


}  // namespace kvtier
