// Non-temporal copy (see stream-copy.h): SSE2, which every x86-64 has;
// elsewhere plain memcpy.
#include "stream-copy.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

namespace kvtier {

#if defined(__x86_64__)

void streamCopy(void* dst, const void* src, size_t len) {
  auto* d = static_cast<uint8_t*>(dst);
  auto* s = static_cast<const uint8_t*>(src);
  // Plain stores up to a cache-line aligned destination (so each step fills
  // one write-combining line), then 64 bytes per step, then the tail.
  const size_t head = std::min(len, static_cast<size_t>((64 - (reinterpret_cast<uintptr_t>(d) & 63)) & 63));
  std::memcpy(d, s, head);
  d += head;
  s += head;
  len -= head;
  const size_t body = len & ~static_cast<size_t>(63);
  for (size_t i = 0; i < body; i += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 32));
    const __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 48), e);
  }
  std::memcpy(d + body, s + body, len - body);
}

void streamFence() { _mm_sfence(); }

#else

void streamCopy(void* dst, const void* src, size_t len) { std::memcpy(dst, src, len); }
void streamFence() {}

#endif

}  // namespace kvtier
