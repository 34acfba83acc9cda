// CUDA implementation of the seam in src/cuda-backend.h. One copy stream per
// device and one submission per batch, in one of two ways (KVTIER_CUDA_COPY):
//  - kernel (default): each thread block walks the piece table (in device
//    memory, uploaded with one cudaMemcpyAsync) and copies its pieces with
//    16-byte loads when both ends are aligned. Pinned host memory from
//    cudaHostAlloc is device-addressable under unified addressing, so the
//    same kernel gathers GPU blocks straight into the host pool and back.
//  - memcpy-batch: one cudaMemcpyBatchAsync, run by the copy engines. It
//    uses no SMs, which matters beside a busy worker: kernels from two
//    processes' contexts time-slice the SMs, copy engines run beside them.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "../src/cuda-backend.h"

namespace kvtier {

namespace {

struct DeviceState {
  cudaStream_t stream = nullptr;
  CopyPiece* table = nullptr;
  size_t tableCap = 0;
  std::vector<void*> dsts;
  std::vector<const void*> srcs;
  std::vector<size_t> sizes;
};

// -1: not read yet; then 0 (kernel) or 1 (memcpy-batch).
std::atomic<int> gCopyMode{-1};

bool useMemcpyBatch() {
  int m = gCopyMode.load(std::memory_order_relaxed);
  if (m < 0) {
    const char* v = std::getenv("KVTIER_CUDA_COPY");
    m = v != nullptr && std::strcmp(v, "memcpy-batch") == 0 ? 1 : 0;
    gCopyMode.store(m);
  }
  return m == 1;
}

std::mutex gMu;
std::vector<DeviceState> gDevices;

std::string errText(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

__global__ void copyPieces(const CopyPiece* pieces, size_t count) {
  for (size_t i = blockIdx.x; i < count; i += gridDim.x) {
    uint8_t* dst = pieces[i].dst;
    const uint8_t* src = pieces[i].src;
    size_t len = pieces[i].len;
    if (((reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src) | len) & 15) == 0) {
      auto* __restrict__ d = reinterpret_cast<uint4*>(dst);
      const auto* __restrict__ s = reinterpret_cast<const uint4*>(src);
      const size_t n = len / 16, step = blockDim.x;
      size_t k = threadIdx.x;
      // Four loads in flight per thread before the stores: one side of the
      // copy is host memory across PCIe, where latency, not width, limits.
      for (; k + 3 * step < n; k += 4 * step) {
        uint4 a = s[k], b = s[k + step], c = s[k + 2 * step], e = s[k + 3 * step];
        d[k] = a;
        d[k + step] = b;
        d[k + 2 * step] = c;
        d[k + 3 * step] = e;
      }
      for (; k < n; k += step) d[k] = s[k];
    } else {
      for (size_t k = threadIdx.x; k < len; k += blockDim.x) dst[k] = src[k];
    }
  }
}

}  // namespace

bool cudaBackendCompiled() { return true; }

const char* cudaBackendCopyMode() { return useMemcpyBatch() ? "memcpy-batch" : "kernel"; }

bool cudaBackendSetCopyMode(const std::string& mode) {
  if (mode != "kernel" && mode != "memcpy-batch") return false;
  gCopyMode.store(mode == "memcpy-batch" ? 1 : 0);
  return true;
}

int cudaBackendDeviceCount(std::string* reason) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (reason) *reason = "CUDA compiled in, but no usable device: " + errText(e);
    cudaGetLastError();
    return 0;
  }
  if (n == 0 && reason) *reason = "CUDA compiled in, but cudaGetDeviceCount reports 0 devices";
  return n;
}

void* cudaBackendHostAlloc(size_t bytes, std::string* reason) {
  if (cudaBackendDeviceCount(reason) == 0) return nullptr;
  void* p = nullptr;
  cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocPortable);
  if (e != cudaSuccess) {
    if (reason) *reason = "cudaHostAlloc failed: " + errText(e);
    cudaGetLastError();
    return nullptr;
  }
  return p;
}

void cudaBackendFreeHost(void* p) { cudaFreeHost(p); }

void* cudaBackendOpenIpc(const uint8_t* handle, int device, std::string* reason) {
  if (cudaBackendDeviceCount(reason) <= device) {
    if (reason && reason->empty()) *reason = "device_index " + std::to_string(device) + " does not exist";
    return nullptr;
  }
  cudaIpcMemHandle_t h;
  static_assert(sizeof(h) == 64, "cudaIpcMemHandle_t is 64 bytes");
  std::memcpy(&h, handle, sizeof(h));
  void* p = nullptr;
  cudaSetDevice(device);
  cudaError_t e = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
  if (e != cudaSuccess) {
    if (reason) *reason = "cudaIpcOpenMemHandle failed: " + errText(e);
    cudaGetLastError();
    return nullptr;
  }
  return p;
}

void cudaBackendCloseIpc(void* p, int device) {
  cudaSetDevice(device);
  cudaIpcCloseMemHandle(p);
}

bool cudaBackendDeviceAccessible(const void* p) {
  cudaPointerAttributes attr;
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attr.type == cudaMemoryTypeHost || attr.type == cudaMemoryTypeDevice ||
         attr.type == cudaMemoryTypeManaged;
}

std::string cudaBackendCopy(const CopyPiece* pieces, size_t count, int device) {
  if (count == 0) return "";
  std::lock_guard<std::mutex> lock(gMu);
  if (gDevices.size() <= static_cast<size_t>(device)) gDevices.resize(device + 1);
  DeviceState& st = gDevices[device];
  cudaError_t e = cudaSetDevice(device);
  if (e == cudaSuccess && st.stream == nullptr) e = cudaStreamCreateWithFlags(&st.stream, cudaStreamNonBlocking);
  if (e == cudaSuccess && useMemcpyBatch()) {
    st.dsts.resize(count);
    st.srcs.resize(count);
    st.sizes.resize(count);
    for (size_t i = 0; i < count; ++i) {
      st.dsts[i] = pieces[i].dst;
      st.srcs[i] = pieces[i].src;
      st.sizes[i] = pieces[i].len;
    }
    cudaMemcpyAttributes attr{};
    attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
    attr.flags = cudaMemcpyFlagPreferOverlapWithCompute;
    size_t attrIdx = 0;
    e = cudaMemcpyBatchAsync(st.dsts.data(), st.srcs.data(), st.sizes.data(), count, &attr, &attrIdx, 1, st.stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(st.stream);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return errText(e);
    }
    return "";
  }
  if (e == cudaSuccess && st.tableCap < count) {
    if (st.table != nullptr) cudaFree(st.table);
    st.table = nullptr;
    st.tableCap = 0;
    e = cudaMalloc(&st.table, count * sizeof(CopyPiece));
    if (e == cudaSuccess) st.tableCap = count;
  }
  if (e == cudaSuccess) {
    e = cudaMemcpyAsync(st.table, pieces, count * sizeof(CopyPiece), cudaMemcpyHostToDevice, st.stream);
  }
  if (e == cudaSuccess) {
    unsigned blocks = static_cast<unsigned>(count < 1024 ? count : 1024);
    copyPieces<<<blocks, 256, 0, st.stream>>>(st.table, count);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) e = cudaStreamSynchronize(st.stream);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return errText(e);
  }
  return "";
}

void* cudaBackendTestAlloc(size_t bytes, int device, uint8_t* handleOut, std::string* reason) {
  void* p = nullptr;
  cudaError_t e = cudaSetDevice(device);
  if (e == cudaSuccess) e = cudaMalloc(&p, bytes);
  cudaIpcMemHandle_t h;
  if (e == cudaSuccess) e = cudaIpcGetMemHandle(&h, p);
  if (e != cudaSuccess) {
    if (reason) *reason = errText(e);
    cudaGetLastError();
    if (p != nullptr) cudaFree(p);
    return nullptr;
  }
  std::memcpy(handleOut, &h, sizeof(h));
  return p;
}

std::string cudaBackendTestMemcpy(void* dst, const void* src, size_t len) {
  cudaError_t e = cudaMemcpy(dst, src, len, cudaMemcpyDefault);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return errText(e);
  }
  return "";
}

void cudaBackendTestFree(void* p) { cudaFree(p); }

double cudaBackendTimeMemcpy(void* dst, const void* src, size_t len, int iters, std::string* reason) {
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  float ms = -1;
  cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (e == cudaSuccess) e = cudaEventCreate(&start);
  if (e == cudaSuccess) e = cudaEventCreate(&stop);
  if (e == cudaSuccess) e = cudaMemcpyAsync(dst, src, len, cudaMemcpyDefault, stream);  // warm-up
  if (e == cudaSuccess) e = cudaEventRecord(start, stream);
  for (int i = 0; e == cudaSuccess && i < iters; ++i) e = cudaMemcpyAsync(dst, src, len, cudaMemcpyDefault, stream);
  if (e == cudaSuccess) e = cudaEventRecord(stop, stream);
  if (e == cudaSuccess) e = cudaEventSynchronize(stop);
  if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, start, stop);
  if (e != cudaSuccess) {
    if (reason) *reason = errText(e);
    cudaGetLastError();
    ms = -1;
  }
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  if (stream) cudaStreamDestroy(stream);
  return ms;
}

}  // namespace kvtier
