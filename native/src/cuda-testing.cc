// Test-only CUDA helpers (see cuda-testing.h).
#include "cuda-testing.h"

#include "cuda-backend.h"

namespace kvtier {

namespace {

[[noreturn]] void fail(Napi::Env env, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Value().Set("code", Napi::String::New(env, "KVT_NATIVE"));
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
  o.Set("free", Napi::Function::New(env, Free));
  return o;
}

}  // namespace kvtier
