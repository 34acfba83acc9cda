// Chunk payloads through Linux native AIO (io_submit, no liburing needed)
// on O_DIRECT files: up to kAioDepth pieces in flight per I/O thread, so
// the device sees a deep queue while the thread hashes. Each piece is handed
// to onPiece in file order: before it is submitted (a write: its bytes are
// then in cache for the transfer) or once it has landed (a read: verified
// while the later pieces are still in flight).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

namespace kvtier {

constexpr size_t kAioDepth = 16;

struct AioResult {
  bool ran = false;   // false: AIO is not available here (nothing was moved); use synchronous I/O
  int64_t bytes = 0;  // bytes moved in file order up to the first short piece, or -errno
};

AioResult aioPieces(int fd, uint8_t* data, size_t len, uint64_t offset, size_t piece, bool write,
                    const std::function<void(const uint8_t*, size_t)>& onPiece);

}  // namespace kvtier
