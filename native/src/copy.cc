// Copy planning from block ids and the CPU/CUDA execution of a batch (see copy.h).
#include "copy.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>

#include "sigbus-guard.h"
#include "stream-copy.h"
#include "thread-pool.h"
#include "constants.h"

namespace kvtier {

static constexpr size_t kPieceMax = 1 << 20;
// One CUDA thread block copies one piece: small pieces spread a merged
// multi-MiB segment over many SMs.
static constexpr size_t kCudaPieceMax = 64 << 10;
static constexpr size_t kBytesPerThread = 256 << 10;
// Batches at least this large copy with stores that bypass the cache
// (stream-copy.h): several times a core's L2. Up to the L3's size a
// memcpy'd batch could still be partly in L3 for whoever reads it next (a
// Store's hash and Valkey send); 8 MiB keeps a single 10 MiB chunk's
// scatter on the faster path, which the TTFT bench measured (benchmarks.md).
// A smaller batch stays on memcpy and in cache.
static constexpr uint64_t kStreamBatchBytes = 8 << 20;
static constexpr double kMaxExact = 9007199254740991.0;  // 2^53 - 1

// A round trip through uint64_t tests integrality: std::floor is a libm call
// on baseline x86-64 (no SSE4.1).
static bool asIndex(double v, uint64_t* out) {
  if (!(v >= 0 && v <= kMaxExact)) return false;
  uint64_t u = static_cast<uint64_t>(v);
  if (static_cast<double>(u) != v) return false;
  *out = u;
  return true;
}

// One segment: bounds-checked against its region and buffer, then cut into
// pieces. expandBlocks only makes segments inside both; this re-check is the
// last line before pointers are formed.
static CopyError emitSegment(CopyBatch* batch, const std::vector<BufferView>& buffers, size_t i, uint64_t ri,
                             uint64_t roff, uint64_t bi, uint64_t boff, uint64_t len) {
  const RegionMapping& region = *batch->regions[ri];
  const BufferView& buf = buffers[bi];
  if (len == 0 || len > region.size || roff > region.size - len || len > buf.length || boff > buf.length - len) {
    return {codes::kBadRequest, "segment " + std::to_string(i) + ": region bytes [" + std::to_string(roff) + ", +" +
                                   std::to_string(len) + ") or buffer bytes [" + std::to_string(boff) +
                                   ", +" + std::to_string(len) + ") out of bounds"};
  }
  uint8_t* rp = region.base + roff;
  uint8_t* bp = buf.data + boff;
  size_t chunk = batch->cuda ? kCudaPieceMax : kPieceMax;
  for (uint64_t done = 0; done < len; done += chunk) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(chunk, len - done));
    if (batch->scatter) {
      batch->pieces.push_back({rp + done, bp + done, n});
    } else {
      batch->pieces.push_back({bp + done, rp + done, n});
    }
  }
  batch->totalBytes += len;
  return {"", ""};
}

// Validates planes, block ids and buffer sizes, then calls
// emit(index, regionIndex, regionOffset, bufferIndex, bufferOffset, length)
// for every segment: the blocks of each job, plane by plane, a run of blocks
// contiguous on both sides (MLA with consecutive ids) as one segment.
template <typename Emit>
static CopyError expandBlocks(const CopyBatch& batch, const std::vector<BufferView>& buffers,
                              const std::vector<BlockIds>& jobs, const double* planes, size_t planeCount,
                              uint64_t numBlocks, Emit&& emit) {
  if (jobs.size() != buffers.size()) {
    return {codes::kBadRequest, "expected one block id array per buffer, got " + std::to_string(jobs.size()) +
                                   " for " + std::to_string(buffers.size())};
  }
  if (planeCount == 0 || numBlocks == 0) return {codes::kBadLayout, "expected at least one plane and one block"};
  struct Plane {
    uint64_t region, offset, stride, bytes;
  };
  std::vector<Plane> ps(planeCount);
  uint64_t slot = 0;
  for (size_t p = 0; p < planeCount; ++p) {
    const double* d = planes + p * 4;
    Plane& q = ps[p];
    if (!asIndex(d[0], &q.region) || !asIndex(d[1], &q.offset) || !asIndex(d[2], &q.stride) ||
        !asIndex(d[3], &q.bytes) || q.bytes == 0) {
      return {codes::kBadLayout, "plane " + std::to_string(p) + ": expected positive block bytes and non-negative integers below 2^53"};
    }
    if (q.region >= batch.regions.size()) {
      return {codes::kBadLayout, "plane " + std::to_string(p) + ": expected region index below " +
                                    std::to_string(batch.regions.size()) + ", got " + std::to_string(q.region)};
    }
    // The last block must end inside the region; every id below numBlocks then does.
    // Checked in an order that cannot overflow.
    const uint64_t size = batch.regions[q.region]->size;
    const uint64_t last = numBlocks - 1;
    if (q.offset > size || q.bytes > size - q.offset ||
        (q.stride != 0 && last > (size - q.offset - q.bytes) / q.stride)) {
      return {codes::kBadLayout, "plane " + std::to_string(p) + ": block " + std::to_string(last) +
                                    " would end outside region " + batch.regions[q.region]->name + " of " +
                                    std::to_string(size) + " bytes"};
    }
    slot += q.bytes;
  }
  size_t seg = 0;
  for (size_t j = 0; j < jobs.size(); ++j) {
    const uint32_t* ids = jobs[j].ids;
    const size_t n = jobs[j].count;
    if (n == 0 || n > buffers[j].length / slot) {
      return {codes::kBadBlockId, "job " + std::to_string(j) + ": " + std::to_string(n) +
                                      " blocks do not fit its buffer of " + std::to_string(buffers[j].length) + " bytes"};
    }
    for (size_t k = 0; k < n; ++k) {
      if (ids[k] == kSkipBlock ? !batch.scatter : ids[k] >= numBlocks) {
        return {codes::kBadBlockId, "job " + std::to_string(j) + " block " + std::to_string(k) +
                                        ": expected a block id below " + std::to_string(numBlocks) + ", got " +
                                        std::to_string(ids[k])};
      }
    }
    uint64_t planeBase = 0;
    for (const Plane& q : ps) {
      uint64_t runR = 0, runB = 0, runLen = 0;
      for (size_t k = 0; k <= n; ++k) {
        const bool block = k < n && ids[k] != kSkipBlock;
        const uint64_t roff = block ? q.offset + ids[k] * q.stride : 0;
        const uint64_t boff = planeBase + k * q.bytes;
        if (block && runLen > 0 && runR + runLen == roff && runB + runLen == boff) {
          runLen += q.bytes;
          continue;
        }
        if (runLen > 0) {
          CopyError e = emit(seg++, q.region, runR, j, runB, runLen);
          if (!e.code.empty()) return e;
          runLen = 0;
        }
        if (block) {
          runR = roff;
          runB = boff;
          runLen = q.bytes;
        }
      }
      planeBase += n * q.bytes;
    }
  }
  return {"", ""};
}

CopyError planBlocks(CopyBatch* batch, const std::vector<BufferView>& buffers, const std::vector<BlockIds>& jobs,
                     const double* planes, size_t planeCount, uint64_t numBlocks) {
  batch->pieces.clear();
  batch->totalBytes = 0;
  bool anyCuda = false, anyShm = false;
  for (const auto& r : batch->regions) (r->kind == RegionKind::CudaIpc ? anyCuda : anyShm) = true;
  if (anyCuda && anyShm) {
    return {codes::kBadRequest, "one copy batch cannot mix CUDA IPC regions and shm regions"};
  }
  for (const auto& r : batch->regions) {
    if (anyCuda && r->device != batch->regions[0]->device) {
      return {codes::kBadRequest, "one copy batch cannot span CUDA devices " + std::to_string(batch->regions[0]->device) +
                                     " and " + std::to_string(r->device)};
    }
  }
  batch->cuda = anyCuda;
  size_t expected = 0;
  for (const auto& j : jobs) expected += j.count * planeCount;
  batch->pieces.reserve(expected);
  CopyError e = expandBlocks(*batch, buffers, jobs, planes, planeCount, numBlocks,
                             [&](size_t i, uint64_t ri, uint64_t roff, uint64_t bi, uint64_t boff, uint64_t len) {
                               return emitSegment(batch, buffers, i, ri, roff, bi, boff, len);
                             });
  if (!e.code.empty()) return e;
  if (batch->cuda) {
    for (size_t i = 0; i < buffers.size(); ++i) {
      if (!cudaBackendDeviceAccessible(buffers[i].data)) {
        return {codes::kBadRequest, "buffer " + std::to_string(i) +
                                       ": expected pinned pool memory for a CUDA region copy, got pageable memory"};
      }
    }
  }
  return {"", ""};
}

CopyError listSegments(const CopyBatch& batch, const std::vector<BufferView>& buffers,
                       const std::vector<BlockIds>& jobs, const double* planes, size_t planeCount,
                       uint64_t numBlocks, std::vector<double>* out) {
  out->clear();
  return expandBlocks(batch, buffers, jobs, planes, planeCount, numBlocks,
                      [&](size_t, uint64_t ri, uint64_t roff, uint64_t bi, uint64_t boff, uint64_t len) {
                        out->insert(out->end(), {static_cast<double>(ri), static_cast<double>(roff),
                                                 static_cast<double>(bi), static_cast<double>(boff),
                                                 static_cast<double>(len)});
                        return CopyError{"", ""};
                      });
}

namespace {

struct CpuRun {
  std::shared_ptr<CopyBatch> batch;
  std::function<void(const CopyError&)> done;
  std::atomic<size_t> next{0};
  // Pieces claimed per fetch_add: about 256 KiB of them, so threads sharing
  // the counter do not trade its cache line once per 32 KiB block.
  size_t claim = 1;
  bool stream = false;  // non-temporal stores (kStreamBatchBytes)
  std::atomic<size_t> tasksLeft{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  CopyError error;

  void fail(CopyError e) {
    std::lock_guard<std::mutex> lock(mu);
    if (error.code.empty()) error = std::move(e);
    failed.store(true);
  }
};

bool copyClaimedPieces(void* ctx) {
  auto* run = static_cast<CpuRun*>(ctx);
  if (run->failed.load(std::memory_order_relaxed)) return false;
  const auto& pieces = run->batch->pieces;
  size_t first = run->next.fetch_add(run->claim, std::memory_order_relaxed);
  if (first >= pieces.size()) return false;
  size_t end = std::min(pieces.size(), first + run->claim);
  if (run->stream) {
    for (size_t i = first; i < end; ++i) streamCopy(pieces[i].dst, pieces[i].src, pieces[i].len);
  } else {
    for (size_t i = first; i < end; ++i) std::memcpy(pieces[i].dst, pieces[i].src, pieces[i].len);
  }
  return true;
}

void cpuTask(const std::shared_ptr<CpuRun>& run) {
  for (const auto& r : run->batch->regions) {
    std::string why = r->checkLive();
    if (!why.empty()) {
      run->fail({codes::kRegionUnavailable, why});
      break;
    }
  }
  if (!run->failed.load() && !runGuarded(copyClaimedPieces, run.get())) {
    run->fail({codes::kRegionUnavailable,
               "a region became unreadable during the copy (SIGBUS: its file was truncated)"});
  }
  // Non-temporal stores are weakly ordered: drain this thread's before the
  // last task's done() can tell JS the bytes are there (or, after a SIGBUS
  // mid-piece, before the slab can be released and reused).
  if (run->stream) streamFence();
  if (run->tasksLeft.fetch_sub(1) == 1) {
    CopyError result;
    {
      std::lock_guard<std::mutex> lock(run->mu);
      result = run->error;
    }
    run->done(result);
  }
}

}  // namespace

void runCopy(std::shared_ptr<CopyBatch> batch, std::function<void(const CopyError&)> done) {
  installSigbusGuard();
  if (batch->cuda) {
    submitCopyTask([batch, done = std::move(done)] {
      std::string err = cudaBackendCopy(batch->pieces.data(), batch->pieces.size(), batch->device, batch->scatter);
      done(err.empty() ? CopyError{"", ""} : CopyError{codes::kNative, "CUDA copy failed: " + err});
    });
    return;
  }
  auto run = std::make_shared<CpuRun>();
  run->batch = std::move(batch);
  run->done = std::move(done);
  size_t wanted = (run->batch->totalBytes + kBytesPerThread - 1) / kBytesPerThread;
  size_t tasks = std::clamp<size_t>(std::min(wanted, run->batch->pieces.size()), 1, copyThreadCount());
  const size_t count = run->batch->pieces.size();
  const size_t avg = std::max<size_t>(1, run->batch->totalBytes / std::max<size_t>(1, count));
  run->claim = std::clamp<size_t>((256 << 10) / avg, 1, std::max<size_t>(1, count / (tasks * 4)));
  run->stream = run->batch->totalBytes >= kStreamBatchBytes;
  run->tasksLeft.store(tasks);
  for (size_t t = 0; t < tasks; ++t) submitCopyTask([run] { cpuTask(run); });
}

}  // namespace kvtier
