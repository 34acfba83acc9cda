// The CUDA seam. Everything CUDA goes through these functions; cuda/backend.cu
// implements them when nvcc was found at build time, cuda-stub.cc otherwise
// (and every stub reports "not compiled"). Plain pointers and numbers only, so
// the rest of the addon compiles without CUDA headers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace kvtier {

struct CopyPiece {
  uint8_t* dst;
  const uint8_t* src;
  size_t len;
};

bool cudaBackendCompiled();
// Number of usable devices; 0 with the reason filled when none.
int cudaBackendDeviceCount(std::string* reason);
// Portable, not write-combined pinned memory; nullptr (reason set) without a device.
void* cudaBackendHostAlloc(size_t bytes, std::string* reason);
void cudaBackendFreeHost(void* p);
// Opens a 64-byte cudaIpcMemHandle_t on `device`; nullptr with the reason on failure.
void* cudaBackendOpenIpc(const uint8_t* handle, int device, std::string* reason);
void cudaBackendCloseIpc(void* p, int device);
// True when the device can address `p` (device memory or pinned host memory).
bool cudaBackendDeviceAccessible(const void* p);
// Runs every piece as one batch and waits for it: staged through device
// memory ("staged", the default) or by one direct kernel launch ("kernel");
// KVTIER_CUDA_COPY or cudaBackendSetCopyMode chooses. scatter: the pieces'
// sources are host memory (else their destinations are). Returns an empty
// string on success, else the CUDA error.
std::string cudaBackendCopy(const CopyPiece* pieces, size_t count, int device, bool scatter);
// "staged" or "kernel" ("none" without CUDA).
const char* cudaBackendCopyMode();
// GPU time of every batch so far (CUDA events), for the benchmark.
double cudaBackendCopyGpuMs();
// Switches the mode for later batches; false for an unknown mode or without CUDA.
bool cudaBackendSetCopyMode(const std::string& mode);

// For the GPU tests only (a child process plays the worker): device memory
// with its IPC handle, and plain synchronous copies in and out of it.
void* cudaBackendTestAlloc(size_t bytes, int device, uint8_t* handleOut, std::string* reason);
std::string cudaBackendTestMemcpy(void* dst, const void* src, size_t len);
// The benchmark's reference: `iters` plain cudaMemcpyAsync calls of `len`
// bytes on one stream, timed with CUDA events; milliseconds, or -1 (reason set).
double cudaBackendTimeMemcpy(void* dst, const void* src, size_t len, int iters, std::string* reason);
void cudaBackendTestFree(void* p);

}  // namespace kvtier
