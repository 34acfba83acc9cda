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

// Why a region was not opened: `code` is one of src/errors.ts (KVT_FORBIDDEN
// for what the peer may not name, KVT_REGION_UNAVAILABLE for what is not
// there or too small), `message` names the path and the reason.
struct RegionError {
  std::string code;
  std::string message;
};

// Opens `path`, which must lie beneath the directory `baseDir` (e.g.
// /dev/shm), without following a symlink in any component below it, and
// only if it is a regular file owned by `ownerUid` (the connecting peer's
// uid). Returns nullptr and fills `error` otherwise; nothing stays mapped.
std::shared_ptr<RegionMapping> openShmRegion(const std::string& baseDir, const std::string& path, size_t size,
                                             uint32_t ownerUid, RegionError* error);
// No owner check is possible for a CUDA IPC handle (docs/architecture.md).
std::shared_ptr<RegionMapping> openCudaIpcRegion(const uint8_t* handle, size_t size, int device,
                                                 std::string* error);

}  // namespace kvtier
