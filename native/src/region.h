// A worker's KV memory mapped into the daemon: a POSIX shm file (open + mmap
// MAP_SHARED, the CPU stand-in for GPU memory) or a CUDA IPC handle. Owned by
// shared_ptr: the Region object drops its reference at close(), and copies in
// flight hold theirs, so the unmap waits for them instead of racing them.
// checkLive() is the per-batch guard: the shm file must still be linked and
// at least as large as the registered size (a shorter file would turn a read
// into SIGBUS or, within the last page, into silent zeros); the window after
// it is closed by sigbus-guard. mmap over pread/pwrite because random 32 KiB
// blocks copied 2-4x faster through the mapping (docs/native.md).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace kvtier {

enum class RegionKind { Shm, CudaIpc };

struct RegionMapping {
  RegionKind kind = RegionKind::Shm;
  int fd = -1;
  int device = 0;
  uint8_t* base = nullptr;
  size_t size = 0;
  std::string name;  // path, or "cuda-ipc:<device>", for messages
  ~RegionMapping();
  // Empty when the region can be copied from/to now, else why not.
  std::string checkLive() const;
};

// Both return nullptr and fill `error` when the region cannot be opened.
std::shared_ptr<RegionMapping> openShmRegion(const std::string& path, size_t size, std::string* error);
std::shared_ptr<RegionMapping> openCudaIpcRegion(const uint8_t* handle, size_t size, int device,
                                                 std::string* error);

}  // namespace kvtier
