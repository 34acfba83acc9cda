// Blocking file operations of the disk tier, run on its own ThreadPool (never
// the JS thread). A chunk file is one 4 KiB header block, then the payload
// padded to whole 4 KiB blocks, so with O_DIRECT every transfer is aligned:
//
//   [ header 4096 ][ payload bulk: floor(len/4096) blocks ][ tail block, zero padded ]
//    bounce buffer   straight from/to the caller's slab     bounce buffer
//
// The payload moves in one pwritev/preadv (with the tail block; a read takes
// the header in the same call), hashed with XXH3-64 (../checksum.h) in a pass
// of its own; a write sends the header, which holds the sum, last.
// O_DIRECT is used only where asked for
// and the slab address is 4 KiB aligned (pool slabs are); otherwise the same
// I/O goes through the page cache. A write goes to a temporary name and is
// renamed into place only when every byte is written, so a final name always
// names a complete file; the header format itself belongs to TypeScript
// (src/tiers/disk-format.ts): here we only fill in the two checksum fields.
#pragma once
#include <cstddef>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "../copy.h"

namespace kvtier {

constexpr size_t kDiskBlock = 4096;

struct DiskWrite {
  std::string tmpPath;
  std::string finalPath;
  std::vector<uint8_t> header;  // kDiskBlock bytes
  const uint8_t* data = nullptr;
  size_t length = 0;
  size_t sumOffset = 0;        // 16 hex digits of XXH3-64(payload) go here
  size_t headerSumOffset = 0;  // then 16 hex digits of xxh64(header[0, headerSumOffset))
  bool direct = false;
  bool sync = false;
  bool usedDirect = false;  // out
  // sumChunkWrite runs beside writeChunkFile, on another thread: it sets
  // `summed` (and `sumError`) when it is done with the payload and the header.
  std::mutex sumMu;
  std::condition_variable sumCv;
  bool summed = false;
  CopyError sumError;
};

struct DiskRead {
  std::string path;
  uint8_t* data = nullptr;
  size_t length = 0;
  bool direct = false;
  bool dropCache = false;  // posix_fadvise(DONTNEED) first, for a cold buffered read
  // out
  bool usedDirect = false;
  uint64_t fileSize = 0;
  bool complete = false;  // the file had every byte (else: torn or truncated)
  std::vector<uint8_t> header;
  uint64_t sum = 0;
};

struct DiskScanEntry {
  std::string path;
  uint64_t size = 0;
  double mtimeMs = 0;
  std::vector<uint8_t> head;  // the first bytes of the file (fewer when it is shorter)
};

// A chunk's checksum work is split from its I/O so that the two run on
// different threads (binding.cc): an I/O thread only moves bytes, as the
// plain reference does, and the device's queue stays as deep as the thread
// count while the previous chunk is hashed.
//   write: sumChunkWrite (XXH3 of the payload, header checksums) beside
//          writeChunkFile (payload, then waits for the sums, header, rename);
//          writeChunkFile returns only once sumChunkWrite is done with the slab
//   read:  readChunkFile (header, payload, tail) ─► sumChunkRead (XXH3 of what landed)
// Errors carry code KVT_DISK_IO and a message "<ERRNO>: <what> <path>: <strerror>".
CopyError sumChunkWrite(DiskWrite& w);
CopyError writeChunkFile(DiskWrite& w);
CopyError readChunkFile(DiskRead& r);
void sumChunkRead(DiskRead& r);
// Plain I/O at an offset of one file: the bench's reference.
CopyError writePlain(const std::string& path, const uint8_t* data, size_t length, uint64_t offset, bool direct);
CopyError readPlain(const std::string& path, uint8_t* data, size_t length, uint64_t offset, bool direct, bool dropCache);
// Every regular file in `root`'s immediate subdirectories, with its first `headBytes` bytes.
CopyError scanChunkDir(const std::string& root, size_t headBytes, std::vector<DiskScanEntry>* out);
// Unlinks each path; the number that existed.
size_t removeFiles(const std::vector<std::string>& paths);
// Creates, writes, reads back and unlinks a 4 KiB file in `dir` (O_DIRECT when
// asked). "" when it worked, else why not.
std::string probeDir(const std::string& dir, bool direct);
// An exclusive flock on `path` (created), with our pid written into it; the
// fd, or -1 with `why` set (`heldBy` is the pid in the file when it is held).
int lockFile(const std::string& path, std::string* why, long* heldBy);

}  // namespace kvtier
