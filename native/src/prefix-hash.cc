#include "prefix-hash.h"

#include <algorithm>
#include <cstring>
#include <mutex>

#include <sys/mman.h>

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
// distinct prefixes). An anonymous mapping, not malloc: its pages cost RSS
// only as slots fill, and a dropped table goes back to the system (the
// daemon's malloc settings, tuneMalloc, would keep a 32 MiB calloc on the
// heap, touched and never trimmed).
constexpr size_t kDefaultMemoBytes = 32u << 20;
constexpr size_t kSlotHead = 32 + 32 + 8;  // parent, child, token byte count (0: empty)

class ChainMemo {
 public:

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
        // With a slot, the slot's copy of the tokens is what gets hashed, so
        // the stored step is (these bytes -> their hash) even if the
        // caller's bytes change meanwhile (out overlapping tokens, a shared
        // buffer).
        const uint8_t* hashed = chunk;
        if (slot != nullptr) hashed = static_cast<uint8_t*>(std::memcpy(slot + kSlotHead, chunk, len));
        sha256(hashed, len, pair + 32);
        sha256(pair, sizeof pair, h);
        if (slot != nullptr) {
          std::memcpy(slot, pair, 32);
          std::memcpy(slot + 32, h, 32);
          store64(slot + 64, len);
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
    if (chunkBytes > budget_) return false;  // also keeps the sizes below from wrapping
    const size_t slotBytes = (kSlotHead + chunkBytes + 63) & ~size_t{63};
    if (slotBytes > budget_) return false;
    size_t slots = 1;  // a power of two; one slot is allowed (tests force every step into it)
    while (slots <= budget_ / (2 * slotBytes)) slots *= 2;
    void* table = mmap(nullptr, slots * slotBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (table == MAP_FAILED) return false;
    table_ = static_cast<uint8_t*>(table);
    slots_ = slots;
    slotBytes_ = slotBytes;
    return true;
  }

  void drop() {
    if (table_ != nullptr) munmap(table_, slots_ * slotBytes_);
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

// Never destroyed: no exit-time free under a thread still hashing.
ChainMemo& memo() {
  static ChainMemo* m = new ChainMemo();
  return *m;
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
