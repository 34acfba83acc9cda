// Argument checks shared by the addon's bindings (valkey/, disk/): each
// throws a KVT_BAD_REQUEST coded error naming what was expected, so a
// wrong call from TypeScript is a clear error, never a crash.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "addon-data.h"
#include "constants.h"

namespace kvtier {
namespace args {

[[noreturn]] inline void bad(Napi::Env env, const std::string& message) {
  throw codedError(env, codes::kBadRequest, message);
}

// A non-negative integer up to `max` (default: the largest exact double, 2^53 - 1).
inline int64_t integer(const Napi::CallbackInfo& info, size_t i, const char* what, double max = 9007199254740991.0) {
  if (info.Length() <= i || !info[i].IsNumber()) bad(info.Env(), std::string("expected a number for ") + what);
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0 && v <= max) || std::floor(v) != v) bad(info.Env(), std::string("expected a non-negative integer for ") + what);
  return static_cast<int64_t>(v);
}

inline std::string string(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) bad(info.Env(), std::string("expected a string for ") + what);
  return info[i].As<Napi::String>().Utf8Value();
}

inline bool boolean(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsBoolean()) bad(info.Env(), std::string("expected a boolean for ") + what);
  return info[i].As<Napi::Boolean>().Value();
}

inline Napi::Uint8Array bytes(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    bad(info.Env(), std::string("expected a Uint8Array for ") + what);
  }
  return info[i].As<Napi::Uint8Array>();
}

inline std::vector<std::string> strings(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsArray()) bad(info.Env(), std::string("expected an array of strings for ") + what);
  Napi::Array a = info[i].As<Napi::Array>();
  std::vector<std::string> out;
  out.reserve(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value v = a.Get(k);
    if (!v.IsString()) bad(info.Env(), std::string("expected strings in ") + what);
    out.push_back(v.As<Napi::String>().Utf8Value());
  }
  return out;
}

}  // namespace args
}  // namespace kvtier
