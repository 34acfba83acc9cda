// Batched gather/scatter over a flat segment list. TS computes the segments
// (native/layout-plan.ts); this file trusts none of them: every segment is
// checked against its region's mapped size and its buffer's length on the JS
// thread, before any byte moves, and a bad one fails the whole batch with a
// code. Segment record (5 float64s, integers < 2^53):
//   [regionIndex, regionOffset, bufferIndex, bufferOffset, length]
// gather: region -> buffer; scatter: buffer -> region. Execution splits the
// segments into <=1 MiB pieces claimed by up to copyThreadCount() threads,
// or runs them (as <=64 KiB pieces, one per thread block) in one kernel
// launch when the regions are CUDA IPC memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cuda-backend.h"
#include "pool.h"
#include "region.h"

namespace kvtier {

struct CopyError {
  std::string code;  // empty: success; else a src/errors.ts code
  std::string message;
};

struct CopyBatch {
  bool scatter = false;
  std::vector<std::shared_ptr<RegionMapping>> regions;
  std::vector<std::shared_ptr<PoolMemory>> pools;  // pool memory the buffers live in
  std::vector<CopyPiece> pieces;
  size_t totalBytes = 0;
  bool cuda = false;
  int device = 0;
};

struct BufferView {
  uint8_t* data;
  size_t length;
};

// Validates and expands the segment list into batch->pieces. On failure the
// returned error has a code and nothing was copied.
CopyError planCopy(CopyBatch* batch, const std::vector<BufferView>& buffers, const double* segs,
                   size_t segCount);

// Block ids of one job (one chunk buffer); kSkipBlock marks a block a
// scatter leaves alone.
struct BlockIds {
  const uint32_t* ids;
  size_t count;
};
constexpr uint32_t kSkipBlock = 0xffffffffu;

// The same batch from block ids: planes are [regionIndex, offset,
// blockStride, blockBytes] x planeCount (float64s, integers < 2^53), the
// buffer of job j holds its blocks plane by plane. Every plane is checked to
// end inside its region for ids below numBlocks, every id against
// numBlocks, every buffer against its job's size; native/layout-plan.ts
// computes the same segments (segments()) and gives the friendlier errors.
CopyError planBlocks(CopyBatch* batch, const std::vector<BufferView>& buffers, const std::vector<BlockIds>& jobs,
                     const double* planes, size_t planeCount, uint64_t numBlocks);

// Runs the batch off the JS thread; `done` is called exactly once, from a copy
// thread, after every piece finished or the batch failed.
void runCopy(std::shared_ptr<CopyBatch> batch, std::function<void(const CopyError&)> done);

}  // namespace kvtier
