// Batched gather/scatter from block ids. A registration's planes (where
// block b of each layer's K or V lives in which region) come from
// native/layout-plan.ts, which also gives the friendly errors; nothing here
// trusts them: every plane is checked to end inside its region for every id
// below numBlocks, every id and every buffer size is checked, on the JS
// thread, before any byte moves, and a bad one fails the whole batch with a
// code. gather: region -> buffer; scatter: buffer -> region. Execution splits
// the segments into <=1 MiB pieces claimed by up to copyThreadCount()
// threads, or runs them (as <=64 KiB pieces) on the CUDA backend when the
// regions are CUDA IPC memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "constants.h"
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

// Block ids of one job (one chunk buffer); kSkipBlock marks a block a
// scatter leaves alone.
struct BlockIds {
  const uint32_t* ids;
  size_t count;
};

// Validates and expands jobs into batch->pieces. planes are [regionIndex,
// offset, blockStride, blockBytes] x planeCount (float64s, integers < 2^53);
// buffer j (job j) holds its blocks plane by plane. On failure the returned
// error has a code and nothing was copied.
CopyError planBlocks(CopyBatch* batch, const std::vector<BufferView>& buffers, const std::vector<BlockIds>& jobs,
                     const double* planes, size_t planeCount, uint64_t numBlocks);

// For tests: the segments planBlocks would copy, as [regionIndex,
// regionOffset, bufferIndex, bufferOffset, length] records.
CopyError listSegments(const CopyBatch& batch, const std::vector<BufferView>& buffers,
                       const std::vector<BlockIds>& jobs, const double* planes, size_t planeCount,
                       uint64_t numBlocks, std::vector<double>* out);

// Runs the batch off the JS thread; `done` is called exactly once, from a copy
// thread, after every piece finished or the batch failed.
void runCopy(std::shared_ptr<CopyBatch> batch, std::function<void(const CopyError&)> done);

}  // namespace kvtier
