// What the binding files share per addon instance (one per Node environment).
#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "completion-queue.h"
#include "pool.h"

namespace kvtier {

struct AddonData {
  Napi::FunctionReference regionCtor;
  std::unique_ptr<CompletionQueue> completions;
};

// The live pool memory `p` points into, or null: a job holds it so that a
// pool closed while bytes move to or from its slabs is unmapped only after.
std::shared_ptr<PoolMemory> poolHolding(const uint8_t* p);

// What an asynchronous job needs of the JS buffers it reads or writes: an
// object keeping them (and `owner`, the wrapper that runs the job) reachable
// until the job settles, and the pool memories under them held open.
struct HeldBuffers {
  Napi::Object keep;
  std::vector<std::shared_ptr<PoolMemory>> pools;
};
HeldBuffers holdBuffers(Napi::Env env, const std::vector<Napi::Uint8Array>& buffers, const char* ownerKey,
                        Napi::Value owner);

Napi::Error codedError(Napi::Env env, const std::string& code, const std::string& message);

}  // namespace kvtier
