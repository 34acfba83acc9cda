// What the binding files share per addon instance (one per Node environment).
#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>

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

Napi::Error codedError(Napi::Env env, const std::string& code, const std::string& message);

}  // namespace kvtier
