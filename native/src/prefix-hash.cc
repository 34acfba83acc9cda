#include "prefix-hash.h"

#include <algorithm>
#include <cstring>

// SHA256_* come from the OpenSSL bundled in the node binary (Node ships its
// headers); they are resolved when the addon loads. The low-level calls, not
// the one-shot SHA256(): in OpenSSL 3 that one fetches the algorithm through
// EVP on every call, which costs more than hashing a 1 KiB chunk.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

namespace {
void sha256(const uint8_t* data, size_t len, uint8_t* out) {
  SHA256_CTX ctx;
  SHA256_Init(&ctx);
  SHA256_Update(&ctx, data, len);
  SHA256_Final(out, &ctx);
}
}  // namespace

namespace kvtier {

void chainHashes(const uint8_t* prev, const uint8_t* tokens, size_t tokenBytes, size_t chunkBytes, size_t count,
                 uint8_t* out) {
  uint8_t pair[64];
  std::memcpy(pair, prev, 32);
  for (size_t i = 0; i < count; i++) {
    const size_t start = i * chunkBytes;
    const size_t len = std::min(chunkBytes, tokenBytes - start);
    sha256(tokens + start, len, pair + 32);
    sha256(pair, sizeof pair, out + i * 32);
    std::memcpy(pair, out + i * 32, 32);
  }
}

}  // namespace kvtier
