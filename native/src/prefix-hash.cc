#include "prefix-hash.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>

// SHA256_* come from the OpenSSL bundled in the node binary (Node ships its
// headers); they are resolved when the addon loads. The low-level calls, not
// the one-shot SHA256(): in OpenSSL 3 that one fetches the algorithm through
// EVP on every call, which costs more than hashing a 1 KiB chunk.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace {
void sha256(const uint8_t* data, size_t len, uint8_t* out) {
  SHA256_CTX ctx;
  SHA256_Init(&ctx);
  SHA256_Update(&ctx, data, len);
  SHA256_Final(out, &ctx);
}

// Default budget: 32 MiB holds 16384 steps of 256-token chunks (4M tokens of
// distinct prefixes). calloc'd: pages cost RSS only once slots fill.
constexpr size_t kDefaultMemoBytes = 32u << 20;
constexpr size_t kSlotHead = 32 + 32 + 8;  // parent, child, token byte count (0: empty)
constexpr size_t kMinSlots = 64;

class ChainMemo {
 public:
  ~ChainMemo() { std::free(table_); }

  void setBudget(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    budget_ = bytes;
    drop();
  }

  kvtier::ChainMemoStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return {slots_ * slotBytes_, slots_, hits_, misses_};
  }

  void chain(const uint8_t* prev, const uint8_t* tokens, size_t tokenBytes, size_t chunkBytes, size_t count,
             uint8_t* out) {
    std::lock_guard<std::mutex> lock(mu_);
    const bool memo = fit(chunkBytes);
    uint8_t pair[64];
    std::memcpy(pair, prev, 32);
    for (size_t i = 0; i < count; i++) {
      const size_t start = i * chunkBytes;
      const size_t len = std::min(chunkBytes, tokenBytes - start);
      const uint8_t* chunk = tokens + start;
      uint8_t* h = out + i * 32;
      uint8_t* slot = memo ? slotOf(pair, chunk, len) : nullptr;
      if (slot != nullptr && load64(slot + 64) == len && std::memcmp(slot, pair, 32) == 0 &&
          std::memcmp(slot + kSlotHead, chunk, len) == 0) {
        std::memcpy(h, slot + 32, 32);
        hits_++;
      } else {
        sha256(chunk, len, pair + 32);
        sha256(pair, sizeof pair, h);
        if (slot != nullptr) {
          std::memcpy(slot, pair, 32);
          std::memcpy(slot + 32, h, 32);
          store64(slot + 64, len);
          std::memcpy(slot + kSlotHead, chunk, len);
        }
        misses_++;
      }
      std::memcpy(pair, h, 32);
    }
  }

 private:
  static uint64_t load64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
  }
  static void store64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }

  // The slot of step (parent, chunk): XXH3 of the tokens seeded by the
  // parent, so the continuations of one prefix spread over the table. Only
  // a placement: a slot's content is compared byte for byte before use.
  uint8_t* slotOf(const uint8_t* parent, const uint8_t* chunk, size_t len) const {
    const uint64_t i = XXH3_64bits_withSeed(chunk, len, load64(parent)) & (slots_ - 1);
    return table_ + i * slotBytes_;
  }

  // A table for chunkBytes-byte chunks, made on first use or when the chunk
  // size grows (tests hash several sizes in one process; a daemon, one).
  bool fit(size_t chunkBytes) {
    if (table_ != nullptr && chunkBytes <= slotBytes_ - kSlotHead) return true;
    drop();
    const size_t slotBytes = (kSlotHead + chunkBytes + 63) & ~size_t{63};
    size_t slots = kMinSlots;
    while (slots * 2 * slotBytes <= budget_) slots *= 2;
    if (budget_ == 0 || slots * slotBytes > budget_) return false;
    table_ = static_cast<uint8_t*>(std::calloc(slots, slotBytes));
    if (table_ == nullptr) return false;
    slots_ = slots;
    slotBytes_ = slotBytes;
    return true;
  }

  void drop() {
    std::free(table_);
    table_ = nullptr;
    slots_ = 0;
    slotBytes_ = 0;
  }

  std::mutex mu_;
  size_t budget_ = kDefaultMemoBytes;
  uint8_t* table_ = nullptr;
  size_t slots_ = 0;
  size_t slotBytes_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

ChainMemo& memo() {
  static ChainMemo m;
  return m;
}
}  // namespace

namespace kvtier {

void chainHashes(const uint8_t* prev, const uint8_t* tokens, size_t tokenBytes, size_t chunkBytes, size_t count,
                 uint8_t* out) {
  memo().chain(prev, tokens, tokenBytes, chunkBytes, count, out);
}

void setChainMemoBytes(size_t bytes) { memo().setBudget(bytes); }

ChainMemoStats chainMemoStats() { return memo().stats(); }

}  // namespace kvtier
