// Test-only exports (`__testing` on the addon): a child process in
// test/native/gpu.test.ts plays a vLLM worker with them, allocating device
// memory and handing out its CUDA IPC handle. native/index.ts never exposes
// them; without CUDA every call throws KVT_NATIVE with the reason.
#pragma once
#include <napi.h>

namespace kvtier {

Napi::Object cudaTestingExports(Napi::Env env);

}  // namespace kvtier
