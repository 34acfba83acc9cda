// The payload checksum of disk format 2 (docs/disk.md): XXH3-64, seed 0.
// XXH3 rather than the Valkey tier's xxh64: on the 2-core build VM xxh64 of
// every payload byte was most of the gap to plain O_DIRECT I/O, and XXH3 is
// memory-bound where xxh64 is compute-bound (measured 8-10 vs 5-6 GB/s on a
// 32 MiB buffer, one core). Streamed, so a chunk is hashed piece by piece as
// its bytes land or leave, while the piece is still in cache.
#pragma once
#include <cstddef>
#include <cstdint>

namespace kvtier {

class PayloadSum {
 public:
  PayloadSum();
  ~PayloadSum();
  PayloadSum(const PayloadSum&) = delete;
  PayloadSum& operator=(const PayloadSum&) = delete;
  void update(const uint8_t* data, size_t len);
  uint64_t digest() const;

 private:
  void* state_;  // an XXH3_state_t, so that xxhash.h stays out of this header
};

}  // namespace kvtier
