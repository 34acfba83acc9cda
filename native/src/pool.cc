// Pool memory acquisition and the extent allocator (see pool.h for why).
#include "pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "cuda-backend.h"

namespace kvtier {

PoolMemory::~PoolMemory() {
  if (base == nullptr) return;
  if (cudaHost) {
    cudaBackendFreeHost(base);
  } else {
    munmap(base, size);
  }
}

static void populate(uint8_t* base, size_t size) {
#ifdef MADV_POPULATE_WRITE
  if (madvise(base, size, MADV_POPULATE_WRITE) == 0) return;
#endif
  for (size_t off = 0; off < size; off += 4096) base[off] = 0;
}

// THP set to "never" accepts madvise but gives no huge pages: say so honestly.
static bool thpAllowed() {
  std::FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (f == nullptr) return false;
  char line[128] = {0};
  bool ok = std::fgets(line, sizeof line, f) != nullptr && std::strstr(line, "[never]") == nullptr;
  std::fclose(f);
  return ok;
}

std::shared_ptr<PoolMemory> allocatePoolMemory(size_t bytes) {
  auto mem = std::make_shared<PoolMemory>();
  mem->size = bytes;
  std::string reason;
  void* cudaPtr = cudaBackendHostAlloc(bytes, &reason);
  if (cudaPtr != nullptr) {
    mem->base = static_cast<uint8_t*>(cudaPtr);
    mem->cudaHost = true;
    mem->pinned = true;
    mem->detail = "cudaHostAlloc(portable), page-locked by the CUDA driver";
    mem->locked.store(bytes);
    mem->ready.store(bytes);
    mem->warm.store(true, std::memory_order_release);
    return mem;
  }
  std::string detail;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  if (p != MAP_FAILED) {
    mem->hugePages = true;
    detail = "mmap(MAP_HUGETLB) reserved huge pages";
  } else {
    p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      throw std::runtime_error(std::string("mmap of ") + std::to_string(bytes) +
                               " bytes failed: " + std::strerror(errno));
    }
    if (thpAllowed() && madvise(p, bytes, MADV_HUGEPAGE) == 0) {
      mem->hugePages = true;
      detail = "mmap + madvise(MADV_HUGEPAGE) (transparent huge pages, best effort)";
    } else {
      detail = "mmap, 4 KiB pages (transparent huge pages off or refused)";
    }
  }
  mem->base = static_cast<uint8_t*>(p);
  if (!reason.empty()) detail += "; no cudaHostAlloc: " + reason;
  mem->detail = detail;
  return mem;
}

void warmPoolMemory(PoolMemory& mem, size_t step, size_t upTo) {
  if (mem.warm.load(std::memory_order_acquire)) return;
  size_t end = std::min(upTo, mem.size);
  size_t off = mem.ready.load();
  while (off < end && !mem.stop.load(std::memory_order_relaxed)) {
    size_t len = std::min(step, end - off);
    if (mem.lockErrno.load() == 0 && mlock(mem.base + off, len) == 0) {
      mem.locked.fetch_add(len);
    } else {
      if (mem.lockErrno.load() == 0) mem.lockErrno.store(errno);
      populate(mem.base + off, len);
    }
    off += len;
    mem.ready.store(off, std::memory_order_release);
  }
  if (off < mem.size) return;  // stopped (the pool is closing), or only the first part asked for
  size_t locked = mem.locked.load();
  int err = mem.lockErrno.load();
  if (err == 0) {
    mem.pinned = true;
    mem.lockDetail = "mlock ok (page-locked)";
  } else {
    mem.lockDetail = std::string("mlock refused (") + std::strerror(err) + ") after " + std::to_string(locked) +
                     " of " + std::to_string(mem.size) + " bytes: the rest populated but swappable";
  }
  mem.warm.store(true, std::memory_order_release);
}

ExtentAllocator::ExtentAllocator(size_t capacity) : capacity_(capacity / kGranule * kGranule) {}

void ExtentAllocator::grow(size_t bytes) {
  size_t to = std::min(bytes, capacity_) / kGranule * kGranule;
  if (to <= ready_) return;
  size_t from = ready_;
  ready_ = to;
  if (!free_.empty()) {
    auto last = std::prev(free_.end());
    if (last->first + last->second == from) {
      last->second += to - from;
      return;
    }
  }
  free_.emplace(from, to - from);
}

int64_t ExtentAllocator::allocate(size_t bytes) {
  if (bytes == 0 || bytes > capacity_) return -1;
  size_t need = (bytes + kGranule - 1) / kGranule * kGranule;
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < need) continue;
    size_t off = it->first;
    size_t rest = it->second - need;
    free_.erase(it);
    if (rest > 0) free_.emplace(off + need, rest);
    live_.emplace(off, need);
    used_ += need;
    return static_cast<int64_t>(off);
  }
  return -1;
}

int ExtentAllocator::release(size_t offset) {
  auto live = live_.find(offset);
  if (live == live_.end()) return -1;
  size_t off = live->first;
  size_t len = live->second;
  live_.erase(live);
  used_ -= len;
  auto next = free_.lower_bound(off);
  if (next != free_.end() && off + len == next->first) {
    len += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == off) {
      prev->second += len;
      return 0;
    }
  }
  free_.emplace(off, len);
  return 0;
}

}  // namespace kvtier
