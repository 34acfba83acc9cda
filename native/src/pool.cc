// Pool memory acquisition and the extent allocator (see pool.h for why).
#include "pool.h"

#include <sys/mman.h>

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
    return mem;
  }
  std::string detail;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
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
  if (mlock(p, bytes) == 0) {
    mem->pinned = true;
    detail += "; mlock ok (page-locked)";
  } else {
    detail += std::string("; mlock refused (") + std::strerror(errno) +
              "), pages populated but swappable";
    populate(mem->base, bytes);
  }
  if (!reason.empty()) detail += "; no cudaHostAlloc: " + reason;
  mem->detail = detail;
  return mem;
}

ExtentAllocator::ExtentAllocator(size_t capacity)
    : capacity_(capacity / kGranule * kGranule) {
  if (capacity_ > 0) free_.emplace(0, capacity_);
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
