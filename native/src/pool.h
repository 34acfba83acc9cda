// Pinned host pool: one big allocation made at create, carved by an extent
// allocator. Why extents rather than fixed slabs: chunk sizes differ between
// namespaces (10 MiB for a 70B TP8 rank, 32 MiB for 8B), so one slab size
// would waste a third of the pool; address-ordered first fit with coalescing
// over 4 KiB granules keeps fragmentation low when most requests share a size,
// and the free/used maps make a double free or a foreign offset a checked
// error instead of corruption. The memory itself is refcounted (PoolMemory):
// the JS ArrayBuffer over it and the Pool each hold a reference, so close()
// and the GC may come in either order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace kvtier {

struct PoolMemory {
  uint8_t* base = nullptr;
  size_t size = 0;
  bool cudaHost = false;  // cudaHostAlloc'd (free with cudaFreeHost)
  bool pinned = false;
  bool hugePages = false;
  std::string detail;
  ~PoolMemory();
};

// Allocates the backing memory: cudaHostAlloc when a device exists, else
// mmap + madvise(MADV_HUGEPAGE) + mlock (or populate when mlock is refused).
// Throws std::runtime_error when even plain mmap fails.
std::shared_ptr<PoolMemory> allocatePoolMemory(size_t bytes);

class ExtentAllocator {
 public:
  static constexpr size_t kGranule = 4096;
  explicit ExtentAllocator(size_t capacity);
  // Offset of a new extent of at least `bytes`, or -1 when no extent fits.
  int64_t allocate(size_t bytes);
  // 0 on success; -1 when `offset` is not the start of a live extent.
  int release(size_t offset);
  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }
  size_t liveCount() const { return live_.size(); }

 private:
  size_t capacity_;
  size_t used_ = 0;
  std::map<size_t, size_t> free_;  // offset -> length, address ordered
  std::map<size_t, size_t> live_;  // offset -> length
};

}  // namespace kvtier
