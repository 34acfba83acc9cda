// Pinned host pool: one big allocation made at create, carved by an extent
// allocator. Why extents rather than fixed slabs: chunk sizes differ between
// namespaces (10 MiB for a 70B TP8 rank, 32 MiB for 8B), so one slab size
// would waste a third of the pool; address-ordered first fit with coalescing
// over 4 KiB granules keeps fragmentation low when most requests share a size,
// and the free/used maps make a double free or a foreign offset a checked
// error instead of corruption. The memory itself is refcounted (PoolMemory):
// the JS ArrayBuffer over it and the Pool each hold a reference, so close()
// and the GC may come in either order.
//
// Warming: allocatePoolMemory only maps the arena (fast at any size);
// warmPoolMemory then mlocks (or, refused, populates) it step by step on a
// worker thread, publishing `ready`: the extent allocator hands out only
// [0, ready), so a slab is never carved from pages not yet faulted in. Until
// the whole arena is ready the daemon already serves; stores that find no
// ready room are skipped and counted.
#pragma once
#include <atomic>
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
  bool hugePages = false;
  std::string detail;      // how it was mapped; set before warming starts
  std::string lockDetail;  // what mlock did; written by warming, read once `warm`
  // Written by the warming thread, read by the JS thread.
  std::atomic<size_t> ready{0};   // bytes [0, ready) are faulted in (and locked when lockedAll)
  std::atomic<size_t> locked{0};  // bytes mlock'd (or page-locked by CUDA)
  std::atomic<bool> warm{false};  // warming finished; `pinned` and `detail` are final
  std::atomic<bool> stop{false};  // close(): the warming thread gives up at its next step
  std::atomic<int> lockErrno{0};  // mlock's first refusal (errno), 0: none
  bool pinned = false;            // every byte page-locked; read once `warm`
  ~PoolMemory();
};

// Maps the backing memory: cudaHostAlloc when a device exists (page-locked
// and ready at once), else mmap (MAP_HUGETLB, else madvise(MADV_HUGEPAGE))
// with nothing faulted in yet. Throws std::runtime_error when mmap fails.
std::shared_ptr<PoolMemory> allocatePoolMemory(size_t bytes);

// Faults in and mlocks `mem` in steps of `step` bytes, advancing mem.ready
// until it reaches `upTo` (or the end); where mlock is refused the rest is
// populated unlocked and lockDetail says so. Runs off the JS thread (or on
// it, for the first step); returns early when mem.stop is set.
void warmPoolMemory(PoolMemory& mem, size_t step, size_t upTo);

class ExtentAllocator {
 public:
  static constexpr size_t kGranule = 4096;
  // Nothing is free until grow(): capacity is what the arena will hold.
  explicit ExtentAllocator(size_t capacity);
  // Makes [ready(), min(bytes, capacity)) free (rounded down to granules).
  void grow(size_t bytes);
  size_t ready() const { return ready_; }
  // Offset of a new extent of at least `bytes`, or -1 when no extent fits.
  int64_t allocate(size_t bytes);
  // 0 on success; -1 when `offset` is not the start of a live extent.
  int release(size_t offset);
  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }
  size_t liveCount() const { return live_.size(); }

 private:
  size_t capacity_;
  size_t ready_ = 0;
  size_t used_ = 0;
  std::map<size_t, size_t> free_;  // offset -> length, address ordered
  std::map<size_t, size_t> live_;  // offset -> length
};

}  // namespace kvtier
