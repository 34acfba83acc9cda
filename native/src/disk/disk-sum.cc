// XXH3-64 for the disk tier (see disk-sum.h), header-only from the system's
// xxhash.h (Debian: libxxhash-dev; CMakeLists.txt finds it).
#include "disk-sum.h"

#include <new>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kvtier {

PayloadSum::PayloadSum() : state_(XXH3_createState()) {
  if (state_ == nullptr) throw std::bad_alloc();
  XXH3_64bits_reset(static_cast<XXH3_state_t*>(state_));
}

PayloadSum::~PayloadSum() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

void PayloadSum::update(const uint8_t* data, size_t len) {
  if (len > 0) XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), data, len);
}

uint64_t PayloadSum::digest() const { return XXH3_64bits_digest(static_cast<const XXH3_state_t*>(state_)); }

}  // namespace kvtier
