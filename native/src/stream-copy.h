// A copy whose stores bypass the cache, for batches far larger than it.
//
// A plain memcpy of a 4 KiB block first reads each destination line into
// the cache (the store miss), then writes it back later: three passes over
// memory per byte. Non-temporal stores write the line without reading it.
// Measured on the build VM (AMD EPYC, 2 vCPUs), 1 GiB in 4 KiB pieces to
// scattered destinations: memcpy 5.0-5.4 GB/s, this 6.6-7.8 GB/s; 32 KiB
// pieces 7.8-10.1 against 12.8-14.6 GB/s. glibc switches to such stores
// only for single copies of several MiB, never for a batch of small ones.
//
// The bytes are not in the cache afterwards, so this is for batches whose
// total is well beyond it (copy.cc decides). streamFence() must run before
// another thread is told the copy is done.
#pragma once
#include <cstddef>

namespace kvtier {

void streamCopy(void* dst, const void* src, size_t len);
void streamFence();

}  // namespace kvtier
