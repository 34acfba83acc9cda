// N-API side of the native Valkey data plane (class ValkeyLink) and the payload checksum.
#pragma once
#include <napi.h>

namespace kvtier {

Napi::Function defineValkeyLink(Napi::Env env);
// payloadSum(bytes, pieceBytes): XXH3-64 (checksum.h) as 16 hex digits, as
// src/tiers/checksum.ts writes them; fed in pieces of pieceBytes (0: one
// update), as the I/O threads feed it with each send and recv.
Napi::Value PayloadSumHex(const Napi::CallbackInfo& info);

}  // namespace kvtier
