// The checksums of kvtier's stored formats, from the system's xxhash.h
// (Debian: libxxhash-dev), header-only:
// - PayloadSum, XXH3-64 seed 0, of every chunk byte a tier stores: Valkey
//   format 2's segment and value sums, disk format 2's payload sum. XXH3
//   rather than xxh64: measured on the 2-core build VM, one core, 256 KiB
//   pieces of a 32 MiB buffer, about 19 GB/s against 11 for kvtier's own
//   xxh64 (which the Valkey tier used until format 2) and 5-6 for the
//   library's xxh64. On a machine whose cores the client shares with
//   valkey-server, each byte's hash is CPU the server does not get.
//   Streamed, so that the I/O thread hashes each piece as it is sent or
//   lands, while it is still in cache.
// - xxh64: the disk header's own sum (a few hundred bytes).
// src/tiers/checksum.ts computes both with @node-rs/xxhash, an independent
// implementation; test/native/checksum.test.ts holds the two to each other.
#pragma once
#include <cstddef>
#include <cstdint>

namespace kvtier {

// Feed pieces of any size with update(); digest() equals XXH3-64 of their
// concatenation.
class PayloadSum {
 public:
  PayloadSum();
  ~PayloadSum();
  PayloadSum(PayloadSum&& other) noexcept : state_(other.state_) { other.state_ = nullptr; }
  PayloadSum(const PayloadSum&) = delete;
  PayloadSum& operator=(const PayloadSum&) = delete;
  void update(const uint8_t* data, size_t len);
  uint64_t digest() const;

 private:
  void* state_;  // an XXH3_state_t (64-byte aligned, from XXH3_createState), so that xxhash.h stays out of this header
};

uint64_t xxh64(const uint8_t* data, size_t len);

// 16 lowercase hex digits, zero-padded, into out[0..16): checksum.ts's form.
void sumHex(uint64_t h, char* out);

}  // namespace kvtier
