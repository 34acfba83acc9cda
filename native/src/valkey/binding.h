// N-API side of the native Valkey data plane (class ValkeyLink).
#pragma once
#include <napi.h>

namespace kvtier {

Napi::Function defineValkeyLink(Napi::Env env);

}  // namespace kvtier
