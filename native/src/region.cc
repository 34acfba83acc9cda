// Opening, checking and unmapping regions (see region.h).
#include "region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cuda-backend.h"

namespace kvtier {

RegionMapping::~RegionMapping() {
  if (kind == RegionKind::CudaIpc) {
    if (base != nullptr) cudaBackendCloseIpc(base, device);
    return;
  }
  if (base != nullptr) munmap(base, size);
  if (fd >= 0) close(fd);
}

std::string RegionMapping::checkLive() const {
  if (kind != RegionKind::Shm) return "";
  struct stat st;
  if (fstat(fd, &st) != 0) return name + ": fstat failed: " + std::strerror(errno);
  if (st.st_nlink == 0) return name + ": the region file was removed by its owner";
  if (static_cast<uint64_t>(st.st_size) < size) {
    return name + ": the region file shrank to " + std::to_string(st.st_size) +
           " bytes, registered as " + std::to_string(size);
  }
  return "";
}

std::shared_ptr<RegionMapping> openShmRegion(const std::string& path, size_t size, std::string* error) {
  auto r = std::make_shared<RegionMapping>();
  r->name = path;
  r->size = size;
  r->fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (r->fd < 0) {
    *error = path + ": cannot open: " + std::strerror(errno);
    return nullptr;
  }
  struct stat st;
  if (fstat(r->fd, &st) != 0) {
    *error = path + ": fstat failed: " + std::strerror(errno);
    return nullptr;
  }
  if (!S_ISREG(st.st_mode)) {
    *error = path + ": expected a regular shm file, got another kind of file";
    return nullptr;
  }
  if (static_cast<uint64_t>(st.st_size) < size) {
    *error = path + ": expected at least " + std::to_string(size) + " bytes for size_bytes, got a file of " +
             std::to_string(st.st_size);
    return nullptr;
  }
  // MAP_POPULATE: fault the page tables in now, not 4 KiB at a time inside copies.
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, 0);
  if (p == MAP_FAILED) {
    *error = path + ": mmap failed: " + std::strerror(errno);
    return nullptr;
  }
  r->base = static_cast<uint8_t*>(p);
  return r;
}

std::shared_ptr<RegionMapping> openCudaIpcRegion(const uint8_t* handle, size_t size, int device,
                                                 std::string* error) {
  void* p = cudaBackendOpenIpc(handle, device, error);
  if (p == nullptr) return nullptr;
  auto r = std::make_shared<RegionMapping>();
  r->kind = RegionKind::CudaIpc;
  r->device = device;
  r->base = static_cast<uint8_t*>(p);
  r->size = size;
  r->name = "cuda-ipc:" + std::to_string(device);
  return r;
}

}  // namespace kvtier
