// Opening, checking and unmapping regions (see region.h).
#include "region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "cuda-backend.h"
#include "constants.h"

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

namespace {

// Closes a descriptor on every early return of the walk.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  int release() {
    int f = fd;
    fd = -1;
    return f;
  }
};

bool fail(RegionError* error, const char* code, const std::string& message) {
  error->code = code;
  error->message = message;
  return false;
}

std::string sysError(const std::string& path, const char* what, int err) {
  return path + ": " + what + ": " + std::strerror(err);
}

// Walks `rel` one component at a time from the open directory `dir`, each
// directory opened with O_NOFOLLOW|O_DIRECTORY, so a symlink anywhere below
// the base fails the walk (O_NOFOLLOW on a whole path would guard only its
// last component). The last component is checked with fstatat before it is
// opened (a device node is never opened, opening one can have effects) and
// again with fstat after (the same inode, or the file was swapped between).
bool openBeneath(int dir, const std::string& path, const std::string& rel, uint32_t ownerUid, int* out,
                 RegionError* error) {
  Fd cur(dir);
  // Every component is checked before the first is opened.
  for (size_t at = 0;;) {
    size_t slash = rel.find('/', at);
    std::string part = rel.substr(at, slash == std::string::npos ? std::string::npos : slash - at);
    if (part.empty() || part == "." || part == "..") {
      return fail(error, codes::kForbidden, path + ": expected a path without empty, '.' or '..' components");
    }
    if (slash == std::string::npos) break;
    at = slash + 1;
  }
  size_t at = 0;
  for (;;) {
    size_t slash = rel.find('/', at);
    std::string part = rel.substr(at, slash == std::string::npos ? std::string::npos : slash - at);
    if (slash == std::string::npos) {
      struct stat before;
      if (fstatat(cur.fd, part.c_str(), &before, AT_SYMLINK_NOFOLLOW) != 0) {
        return fail(error, codes::kRegionUnavailable, sysError(path, "cannot open", errno));
      }
      if (S_ISLNK(before.st_mode)) return fail(error, codes::kForbidden, path + ": is a symlink; refusing to follow it");
      if (!S_ISREG(before.st_mode)) {
        return fail(error, codes::kForbidden, path + ": expected a regular shm file, got another kind of file");
      }
      if (before.st_uid != ownerUid) {
        return fail(error, codes::kForbidden,
                    path + ": owned by uid " + std::to_string(before.st_uid) + ", the connecting process runs as uid " +
                        std::to_string(ownerUid) + "; the daemon maps only files the client owns");
      }
      Fd file(openat(cur.fd, part.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
      if (file.fd < 0) {
        return fail(error, errno == ELOOP ? codes::kForbidden : codes::kRegionUnavailable,
                    sysError(path, "cannot open", errno));
      }
      struct stat after;
      if (fstat(file.fd, &after) != 0) return fail(error, codes::kRegionUnavailable, sysError(path, "fstat failed", errno));
      if (after.st_dev != before.st_dev || after.st_ino != before.st_ino || !S_ISREG(after.st_mode) ||
          after.st_uid != ownerUid) {
        return fail(error, codes::kForbidden, path + ": the file changed while it was being opened");
      }
      *out = file.release();
      return true;
    }
    int next = openat(cur.fd, part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      int err = errno;
      // ELOOP: the component is a symlink; ENOTDIR: a file (or a symlink, on
      // some kernels) where a directory was named.
      bool forbidden = err == ELOOP || err == ENOTDIR;
      return fail(error, forbidden ? codes::kForbidden : codes::kRegionUnavailable,
                  path + ": component '" + part + "' " +
                      (forbidden ? "is not a directory (a symlink is never followed)" : std::string("cannot be opened: ") +
                                                                                            std::strerror(err)));
    }
    Fd opened(next);
    std::swap(cur.fd, opened.fd);
    at = slash + 1;
  }
}

}  // namespace

std::shared_ptr<RegionMapping> openShmRegion(const std::string& baseDir, const std::string& path, size_t size,
                                             uint32_t ownerUid, RegionError* error) {
  std::string prefix = baseDir.empty() || baseDir.back() != '/' ? baseDir + "/" : baseDir;
  if (path.compare(0, prefix.size(), prefix) != 0 || path.size() == prefix.size()) {
    fail(error, codes::kForbidden, path + ": expected a file inside " + baseDir);
    return nullptr;
  }
  // The base itself is trusted (a system directory such as /dev/shm); only
  // its last component is guarded against being a symlink.
  int dir = open(baseDir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir < 0) {
    fail(error, codes::kRegionUnavailable, sysError(baseDir, "cannot open the shm directory", errno));
    return nullptr;
  }
  int fd = -1;
  if (!openBeneath(dir, path, path.substr(prefix.size()), ownerUid, &fd, error)) return nullptr;
  auto r = std::make_shared<RegionMapping>();
  r->name = path;
  r->size = size;
  r->fd = fd;
  struct stat st;
  if (fstat(r->fd, &st) != 0) {
    fail(error, codes::kRegionUnavailable, sysError(path, "fstat failed", errno));
    return nullptr;
  }
  if (static_cast<uint64_t>(st.st_size) < size) {
    fail(error, codes::kRegionUnavailable,
         path + ": expected at least " + std::to_string(size) + " bytes for size_bytes, got a file of " +
             std::to_string(st.st_size));
    return nullptr;
  }
  // MAP_POPULATE: fault the page tables in now, not 4 KiB at a time inside copies.
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, 0);
  if (p == MAP_FAILED) {
    fail(error, codes::kRegionUnavailable, sysError(path, "mmap failed", errno));
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
