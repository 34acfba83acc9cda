// The prefix hash chain (src/chunking/prefix-hash.ts) in C++: the lookup hot
// path hashes every chunk of a prompt (512 KiB for 128K tokens), and one
// SHA-256 call per chunk from JavaScript costs about three times what the
// hashing itself does. SHA-256 comes from the OpenSSL that Node exports, so
// it uses the CPU's SHA extensions and adds no dependency.
//
// Even with SHA extensions, hashing a 128K-token prompt took ~300 us of a
// ~600 us warm Lookup on the 2-core build VM. Most Lookups that hit ask
// about chunks this process hashed before (when they were stored, or at an
// earlier Lookup), so chainHashes keeps a memo of chain steps: the step
// (h_{i-1}, tokens of chunk i) -> h_i, found by comparing the parent hash
// and every token byte (memcmp, an order of magnitude cheaper than SHA-256),
// never by trusting a shorter hash. A memo answer is therefore the SHA-256
// result itself; a miss hashes as before. It is direct-mapped and bounded:
// a slot's newer step replaces the older one.
#pragma once
#include <cstddef>
#include <cstdint>

namespace kvtier {

// h_i = SHA-256(h_{i-1} || SHA-256(tokens of chunk i)); chunk i is bytes
// [i*chunkBytes, min((i+1)*chunkBytes, tokenBytes)). Writes count*32 bytes.
// The caller has checked every bound. Thread-safe (the memo has a lock).
void chainHashes(const uint8_t* prev, const uint8_t* tokens, size_t tokenBytes, size_t chunkBytes, size_t count,
                 uint8_t* out);

// Sizes the memo to at most `bytes` (0: off), dropping what it held.
void setChainMemoBytes(size_t bytes);

struct ChainMemoStats {
  size_t bytes;  // the table's size for the chunk size last hashed (0: off, or nothing hashed yet)
  size_t slots;
  uint64_t hits;
  uint64_t misses;  // steps hashed (SHA-256), memo on or off
};
ChainMemoStats chainMemoStats();

}  // namespace kvtier
