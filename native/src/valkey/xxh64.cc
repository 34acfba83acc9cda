// XXH64 as specified in xxhash's doc/xxhash_spec.md (seed 0), streaming.
#include "xxh64.h"

#include <algorithm>
#include <cstring>

namespace kvtier {
namespace {

constexpr uint64_t P1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t P2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t P3 = 0x165667B19E3779F9ULL;
constexpr uint64_t P4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t P5 = 0x27D4EB2F165667C5ULL;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t read64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;  // little-endian hosts only (x86-64, aarch64)
}
inline uint32_t read32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t round(uint64_t acc, uint64_t lane) {
  acc += lane * P2;
  acc = rotl(acc, 31);
  return acc * P1;
}
inline uint64_t merge(uint64_t acc, uint64_t v) {
  acc ^= round(0, v);
  return acc * P1 + P4;
}
// Whole 32-byte stripes of [p, p + len); returns the bytes consumed.
inline size_t stripes(uint64_t* v, const uint8_t* p, size_t len) {
  const uint8_t* start = p;
  uint64_t v1 = v[0], v2 = v[1], v3 = v[2], v4 = v[3];
  for (; len >= 32; len -= 32, p += 32) {
    v1 = round(v1, read64(p));
    v2 = round(v2, read64(p + 8));
    v3 = round(v3, read64(p + 16));
    v4 = round(v4, read64(p + 24));
  }
  v[0] = v1, v[1] = v2, v[2] = v3, v[3] = v4;
  return static_cast<size_t>(p - start);
}

}  // namespace

Xxh64::Xxh64() : v_{P1 + P2, P2, 0, 0 - P1} {}

void Xxh64::update(const uint8_t* p, size_t len) {
  total_ += len;
  if (carried_ > 0) {
    size_t take = std::min(len, sizeof carry_ - carried_);
    std::memcpy(carry_ + carried_, p, take);
    carried_ += take;
    p += take;
    len -= take;
    if (carried_ < sizeof carry_) return;
    stripes(v_, carry_, sizeof carry_);
    carried_ = 0;
  }
  size_t done = stripes(v_, p, len);
  carried_ = len - done;
  std::memcpy(carry_, p + done, carried_);
}

uint64_t Xxh64::digest() const {
  uint64_t h;
  if (total_ >= 32) {
    h = rotl(v_[0], 1) + rotl(v_[1], 7) + rotl(v_[2], 12) + rotl(v_[3], 18);
    for (uint64_t v : v_) h = merge(h, v);
  } else {
    h = P5;
  }
  h += total_;
  const uint8_t* p = carry_;
  const uint8_t* end = carry_ + carried_;
  while (p + 8 <= end) {
    h ^= round(0, read64(p));
    h = rotl(h, 27) * P1 + P4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= static_cast<uint64_t>(read32(p)) * P1;
    h = rotl(h, 23) * P2 + P3;
    p += 4;
  }
  while (p < end) {
    h ^= (*p) * P5;
    h = rotl(h, 11) * P1;
    ++p;
  }
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

uint64_t xxh64(const uint8_t* p, size_t len) {
  Xxh64 h;
  h.update(p, len);
  return h.digest();
}

void xxh64Hex(uint64_t h, char* out) {
  static const char kDigits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out[i] = kDigits[h & 0xf];
    h >>= 4;
  }
}

}  // namespace kvtier
