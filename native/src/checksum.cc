#include "checksum.h"

#include <new>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kvtier {

PayloadSum::PayloadSum() : state_(XXH3_createState()) {
  if (state_ == nullptr) throw std::bad_alloc();
  XXH3_64bits_reset(static_cast<XXH3_state_t*>(state_));
}

PayloadSum::~PayloadSum() {
  if (state_ != nullptr) XXH3_freeState(static_cast<XXH3_state_t*>(state_));
}

void PayloadSum::update(const uint8_t* data, size_t len) {
  if (len > 0) XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), data, len);
}

uint64_t PayloadSum::digest() const { return XXH3_64bits_digest(static_cast<const XXH3_state_t*>(state_)); }

uint64_t xxh64(const uint8_t* data, size_t len) { return XXH64(data, len, 0); }

void sumHex(uint64_t h, char* out) {
  static const char kDigits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out[i] = kDigits[h & 0xf];
    h >>= 4;
  }
}

}  // namespace kvtier
