// The CPU copy threads: a fixed handful (2-4) of std::threads fed from one
// queue. Separate from libuv's pool so that a burst of copies never starves
// fs/dns work and vice versa. Started on first use, never joined (they end with the process).
#pragma once
#include <cstddef>
#include <functional>

namespace kvtier {

size_t copyThreadCount();
void submitCopyTask(std::function<void()> task);

}  // namespace kvtier
