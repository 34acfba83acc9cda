// XXH64 (seed 0), the checksum of every Valkey value and segment. The same
// function as @node-rs/xxhash's xxh64 that src/tiers/checksum.ts uses:
// test/native/xxh64.test.ts compares the two on random lengths and on
// random piece boundaries. Here so that segment checksums are computed on
// the I/O thread that moves the bytes, and streaming (Xxh64) so that each
// piece is hashed as it is sent or lands, while it is still in cache and
// while the server works on the previous piece, instead of in one pass
// that leaves the connection idle.
#pragma once
#include <cstddef>
#include <cstdint>

namespace kvtier {

// Feed pieces of any size with update(); digest() equals xxh64() of their
// concatenation.
class Xxh64 {
 public:
  Xxh64();
  void update(const uint8_t* p, size_t len);
  uint64_t digest() const;

 private:
  uint64_t v_[4];
  uint64_t total_ = 0;
  uint8_t carry_[32];  // bytes of an unfinished 32-byte stripe
  size_t carried_ = 0;
};

uint64_t xxh64(const uint8_t* data, size_t len);

// 16 lowercase hex digits, zero-padded, into out[0..16): checksum.ts's form.
void xxh64Hex(uint64_t h, char* out);

}  // namespace kvtier
