// N-API side of the native Valkey data plane (class ValkeyLink) and xxh64.
#pragma once
#include <napi.h>

namespace kvtier {

Napi::Function defineValkeyLink(Napi::Env env);
// xxh64(bytes: Uint8Array): 16 hex digits, as src/tiers/checksum.ts writes them.
Napi::Value Xxh64Hex(const Napi::CallbackInfo& info);

}  // namespace kvtier
