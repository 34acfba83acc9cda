// Test-only CUDA helpers (see cuda-testing.h).
#include "cuda-testing.h"

#include "cuda-backend.h"
#include "constants.h"

namespace kvtier {

namespace {

[[noreturn]] void fail(Napi::Env env, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Value().Set("code", Napi::String::New(env, codes::kNative));
  throw e;
}

uint8_t* devicePtr(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsBigInt()) fail(info.Env(), "expected a bigint device pointer");
  bool lossless = false;
  uint64_t v = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless || v == 0) fail(info.Env(), "expected a non-zero 64-bit device pointer");
  return reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(v));
}

size_t num(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber()) fail(info.Env(), "expected a number");
  int64_t v = info[i].As<Napi::Number>().Int64Value();
  if (v < 0) fail(info.Env(), "expected a non-negative number");
  return static_cast<size_t>(v);
}

// alloc(bytes, device) -> { handle: Buffer(64), ptr: bigint }
Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t handle[64];
  std::string reason;
  void* p = cudaBackendTestAlloc(num(info, 0), static_cast<int>(num(info, 1)), handle, &reason);
  if (p == nullptr) fail(env, "device allocation failed: " + reason);
  Napi::Object o = Napi::Object::New(env);
  o.Set("handle", Napi::Buffer<uint8_t>::Copy(env, handle, sizeof handle));
  o.Set("ptr", Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p))));
  return o;
}

// write(ptr, offset, src: Buffer)
Napi::Value Write(const Napi::CallbackInfo& info) {
  uint8_t* p = devicePtr(info, 0);
  size_t off = num(info, 1);
  if (info.Length() < 3 || !info[2].IsBuffer()) fail(info.Env(), "expected a Buffer to write");
  auto src = info[2].As<Napi::Buffer<uint8_t>>();
  std::string err = cudaBackendTestMemcpy(p + off, src.Data(), src.Length());
  if (!err.empty()) fail(info.Env(), err);
  return info.Env().Undefined();
}

// read(ptr, offset, length) -> Buffer
Napi::Value Read(const Napi::CallbackInfo& info) {
  uint8_t* p = devicePtr(info, 0);
  size_t off = num(info, 1);
  size_t len = num(info, 2);
  auto out = Napi::Buffer<uint8_t>::New(info.Env(), len);
  std::string err = cudaBackendTestMemcpy(out.Data(), p + off, len);
  if (!err.empty()) fail(info.Env(), err);
  return out;
}

// readInto(ptr, offset, dst: Buffer): device bytes into an existing buffer
// (a pinned pool slab, for the benchmark's reference).
Napi::Value ReadInto(const Napi::CallbackInfo& info) {
  uint8_t* p = devicePtr(info, 0);
  size_t off = num(info, 1);
  if (info.Length() < 3 || !info[2].IsBuffer()) fail(info.Env(), "expected a Buffer to read into");
  auto dst = info[2].As<Napi::Buffer<uint8_t>>();
  std::string err = cudaBackendTestMemcpy(dst.Data(), p + off, dst.Length());
  if (!err.empty()) fail(info.Env(), err);
  return info.Env().Undefined();
}

// timeMemcpy(ptr, host: Buffer, toDevice: boolean, iters) -> milliseconds for
// `iters` cudaMemcpyAsync calls of host.length bytes, timed with CUDA events.
Napi::Value TimeMemcpy(const Napi::CallbackInfo& info) {
  uint8_t* p = devicePtr(info, 0);
  if (info.Length() < 4 || !info[1].IsBuffer() || !info[2].IsBoolean()) fail(info.Env(), "timeMemcpy(ptr, host, toDevice, iters)");
  auto host = info[1].As<Napi::Buffer<uint8_t>>();
  bool toDevice = info[2].As<Napi::Boolean>().Value();
  int iters = static_cast<int>(num(info, 3));
  std::string reason;
  double ms = toDevice ? cudaBackendTimeMemcpy(p, host.Data(), host.Length(), iters, &reason)
                       : cudaBackendTimeMemcpy(host.Data(), p, host.Length(), iters, &reason);
  if (ms < 0) fail(info.Env(), "timed cudaMemcpy failed: " + reason);
  return Napi::Number::New(info.Env(), ms);
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  cudaBackendTestFree(devicePtr(info, 0));
  return info.Env().Undefined();
}

}  // namespace

Napi::Object cudaTestingExports(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("alloc", Napi::Function::New(env, Alloc));
  o.Set("write", Napi::Function::New(env, Write));
  o.Set("read", Napi::Function::New(env, Read));
  o.Set("readInto", Napi::Function::New(env, ReadInto));
  o.Set("timeMemcpy", Napi::Function::New(env, TimeMemcpy));
  o.Set("free", Napi::Function::New(env, Free));
  return o;
}

}  // namespace kvtier
