// XXH64 (seed 0), the checksum of every Valkey value and segment. The same
// function as @node-rs/xxhash's xxh64 that src/tiers/checksum.ts uses:
// test/native/valkey-link.test.ts compares the two on random lengths. Here so
// that segment checksums are computed on the I/O thread that moves the bytes.
#pragma once
#include <cstddef>
#include <cstdint>

namespace kvtier {

uint64_t xxh64(const uint8_t* data, size_t len);

// 16 lowercase hex digits, zero-padded, into out[0..16): checksum.ts's form.
void xxh64Hex(uint64_t h, char* out);

}  // namespace kvtier
