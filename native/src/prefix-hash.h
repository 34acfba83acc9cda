// The prefix hash chain (src/chunking/prefix-hash.ts) in C++: the lookup hot
// path hashes every chunk of a prompt (512 KiB for 128K tokens), and one
// SHA-256 call per chunk from JavaScript costs about three times what the
// hashing itself does. SHA-256 comes from the OpenSSL that Node exports, so
// it uses the CPU's SHA extensions and adds no dependency.
#pragma once
#include <cstddef>
#include <cstdint>

namespace kvtier {

// h_i = SHA-256(h_{i-1} || SHA-256(tokens of chunk i)); chunk i is bytes
// [i*chunkBytes, min((i+1)*chunkBytes, tokenBytes)). Writes count*32 bytes.
// The caller has checked every bound.
void chainHashes(const uint8_t* prev, const uint8_t* tokens, size_t tokenBytes, size_t chunkBytes, size_t count,
                 uint8_t* out);

}  // namespace kvtier
