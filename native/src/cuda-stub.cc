// CUDA seam for builds without nvcc (or KVTIER_CPU_ONLY=1): nothing is
// available and every call says why.
#include "cuda-backend.h"

namespace kvtier {

static const char* kWhy = "the addon was built without CUDA (nvcc not found or KVTIER_CPU_ONLY=1)";

bool cudaBackendCompiled() { return false; }
int cudaBackendDeviceCount(std::string* reason) {
  if (reason) *reason = kWhy;
  return 0;
}
void* cudaBackendHostAlloc(size_t, std::string* reason) {
  if (reason) *reason = kWhy;
  return nullptr;
}
void cudaBackendFreeHost(void*) {}
void* cudaBackendOpenIpc(const uint8_t*, int, std::string* reason) {
  if (reason) *reason = kWhy;
  return nullptr;
}
void cudaBackendCloseIpc(void*, int) {}
bool cudaBackendDeviceAccessible(const void*) { return false; }
std::string cudaBackendCopy(const CopyPiece*, size_t, int, bool) { return kWhy; }
double cudaBackendCopyGpuMs() { return 0; }
void* cudaBackendTestAlloc(size_t, int, uint8_t*, std::string* reason) {
  if (reason) *reason = kWhy;
  return nullptr;
}
std::string cudaBackendTestMemcpy(void*, const void*, size_t) { return kWhy; }
const char* cudaBackendCopyMode() { return "none"; }
bool cudaBackendSetCopyMode(const std::string&) { return false; }
double cudaBackendTimeMemcpy(void*, const void*, size_t, int, std::string* reason) {
  if (reason) *reason = kWhy;
  return -1;
}
void cudaBackendTestFree(void*) {}

}  // namespace kvtier
