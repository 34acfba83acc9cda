// Chunk files on disk (see disk-file.h).
#include "disk-file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <memory>

#include "../constants.h"
#include "../checksum.h"

namespace kvtier {
namespace {

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using Aligned = std::unique_ptr<uint8_t, FreeDeleter>;

Aligned alignedBlock(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, kDiskBlock, bytes) != 0) return Aligned(nullptr);
  std::memset(p, 0, bytes);
  return Aligned(static_cast<uint8_t*>(p));
}

CopyError sysError(const std::string& what, const std::string& path, int err) {
  const char* name = strerrorname_np(err);
  return {codes::kDiskIo, std::string(name ? name : "EIO") + ": " + what + " " + path + ": " + std::strerror(err)};
}

CopyError ok() { return {"", ""}; }

bool aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % kDiskBlock == 0; }

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_;
};

// Moves every byte of iov (partial transfers continued); bytes moved, or -errno.
// A read that meets end of file returns what it got.
int64_t fullIo(int fd, struct iovec* iov, int count, uint64_t offset, bool write) {
  int64_t total = 0;
  int first = 0;
  while (first < count) {
    ssize_t n = write ? pwritev(fd, iov + first, count - first, static_cast<off_t>(offset))
                      : preadv(fd, iov + first, count - first, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return total;  // end of file (reads); a write making no progress
    total += n;
    offset += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (first < count && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (first < count) {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return total;
}

// Opens with O_DIRECT when asked and possible; falls back to buffered only
// for EINVAL (a filesystem without O_DIRECT); *used says which it got.
// Linux creates an O_CREAT file before it checks O_DIRECT, so the refused
// open leaves the file behind: with O_EXCL it is ours (it did not exist, or
// the open would have been EEXIST) and is removed before the second try.
int openMaybeDirect(const std::string& path, int flags, bool direct, bool* used) {
  *used = false;
  if (direct) {
    int fd = ::open(path.c_str(), flags | O_DIRECT | O_CLOEXEC, 0644);
    if (fd >= 0 || errno != EINVAL) {
      *used = fd >= 0;
      return fd;
    }
    if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) ::unlink(path.c_str());
  }
  return ::open(path.c_str(), flags | O_CLOEXEC, 0644);
}

}  // namespace

// A chunk moves in one vectored call each way, as the bench's reference does:
// one large O_DIRECT pwritev/preadv is split by the block layer into
// max_sectors_kb requests that are all in flight at once, so the device gets
// the whole chunk as its queue. Measured on the build VM (docs/disk.md,
// "Where a store's time went"): 1 MiB pieces through AIO and a fallocate
// before the write were the two costs that put the tier under the reference;
// the create, the header write, the close and the rename were not.
namespace {

bool headerFits(const DiskWrite& w) {
  return w.header.size() == kDiskBlock && w.sumOffset + 16 <= kDiskBlock && w.headerSumOffset + 16 <= kDiskBlock;
}

// Blocks until sumChunkWrite has finished with the payload (or at once when
// it already has): the write may neither use the header before its sums are
// in nor settle while the sum thread still reads the caller's slab.
CopyError awaitSum(DiskWrite& w) {
  std::unique_lock<std::mutex> lock(w.sumMu);
  w.sumCv.wait(lock, [&w] { return w.summed; });
  return w.sumError;
}

struct AwaitSumOnExit {
  DiskWrite& w;
  ~AwaitSumOnExit() { awaitSum(w); }
};

}  // namespace

CopyError sumChunkWrite(DiskWrite& w) {
  CopyError err = ok();
  if (!headerFits(w)) {
    err = {codes::kBadRequest, "expected a 4096-byte header with both checksum fields inside it"};
  } else {
    PayloadSum sum;
    sum.update(w.data, w.length);
    char hex[16];
    sumHex(sum.digest(), hex);
    std::memcpy(w.header.data() + w.sumOffset, hex, 16);
    sumHex(xxh64(w.header.data(), w.headerSumOffset), hex);
    std::memcpy(w.header.data() + w.headerSumOffset, hex, 16);
  }
  {
    std::lock_guard<std::mutex> lock(w.sumMu);
    w.summed = true;
    w.sumError = err;
  }
  w.sumCv.notify_all();
  return err;
}

CopyError writeChunkFile(DiskWrite& w) {
  AwaitSumOnExit settledAfterSum{w};
  if (!headerFits(w)) return {codes::kBadRequest, "expected a 4096-byte header with both checksum fields inside it"};
  Aligned head = alignedBlock(kDiskBlock);
  Aligned tail = alignedBlock(kDiskBlock);
  if (!head || !tail) return {codes::kNative, "out of memory for disk bounce buffers"};
  const size_t bulk = w.length / kDiskBlock * kDiskBlock;
  const size_t rest = w.length - bulk;
  if (rest > 0) std::memcpy(tail.get(), w.data + bulk, rest);
  const bool direct = w.direct && (bulk == 0 || aligned(w.data));
  bool used = false;
  Fd fd(openMaybeDirect(w.tmpPath, O_WRONLY | O_CREAT | O_EXCL, direct, &used));
  if (fd.get() < 0) return sysError("open", w.tmpPath, errno);
  w.usedDirect = used;
  // The payload and the tail block in one pwritev, while sumChunkWrite
  // hashes the same bytes on a sum thread; the header, which holds the sum,
  // last. The file is renamed into place only after all of it.
  struct iovec body[2];
  int parts = 0;
  if (bulk > 0) body[parts++] = {const_cast<uint8_t*>(w.data), bulk};
  if (rest > 0) body[parts++] = {tail.get(), kDiskBlock};
  const size_t bodyBytes = bulk + (rest > 0 ? kDiskBlock : 0);
  int err = 0;
  if (parts > 0) {
    int64_t got = fullIo(fd.get(), body, parts, kDiskBlock, true);
    // A short write that made no progress is a full disk (fullIo stops there).
    err = got < 0 ? static_cast<int>(-got) : static_cast<size_t>(got) != bodyBytes ? ENOSPC : 0;
  }
  if (err == 0) {
    CopyError summed = awaitSum(w);
    if (!summed.code.empty()) {
      ::unlink(w.tmpPath.c_str());
      return summed;
    }
    std::memcpy(head.get(), w.header.data(), kDiskBlock);
    struct iovec iov = {head.get(), kDiskBlock};
    int64_t got = fullIo(fd.get(), &iov, 1, 0, true);
    err = got < 0 ? static_cast<int>(-got) : static_cast<size_t>(got) != kDiskBlock ? ENOSPC : 0;
  }
  if (err == 0 && w.sync && fdatasync(fd.get()) != 0) err = errno;
  if (err == 0 && ::close(fd.release()) != 0) err = errno;
  if (err == 0 && ::rename(w.tmpPath.c_str(), w.finalPath.c_str()) != 0) {
    err = errno;
    ::unlink(w.tmpPath.c_str());
    return sysError("rename to", w.finalPath, err);
  }
  if (err != 0) {
    ::unlink(w.tmpPath.c_str());
    return sysError("write", w.tmpPath, err);
  }
  return ok();
}

CopyError readChunkFile(DiskRead& r) {
  Aligned head = alignedBlock(kDiskBlock);
  Aligned tail = alignedBlock(kDiskBlock);
  if (!head || !tail) return {codes::kNative, "out of memory for disk bounce buffers"};
  const size_t bulk = r.length / kDiskBlock * kDiskBlock;
  const size_t rest = r.length - bulk;
  const bool direct = r.direct && (bulk == 0 || aligned(r.data));
  bool used = false;
  Fd fd(openMaybeDirect(r.path, O_RDONLY, direct, &used));
  if (fd.get() < 0) return sysError("open", r.path, errno);
  r.usedDirect = used;
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return sysError("stat", r.path, errno);
  r.fileSize = static_cast<uint64_t>(st.st_size);
  const size_t want = kDiskBlock + bulk + (rest > 0 ? kDiskBlock : 0);
  if (r.fileSize != want) return ok();  // torn or truncated: not complete
  if (!used && r.dropCache) posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  // Header, payload and tail block in one preadv from offset 0: the header
  // costs no round trip of its own before the payload.
  struct iovec iov[3];
  int count = 0;
  iov[count++] = {head.get(), kDiskBlock};
  if (bulk > 0) iov[count++] = {r.data, bulk};
  if (rest > 0) iov[count++] = {tail.get(), kDiskBlock};
  int64_t got = fullIo(fd.get(), iov, count, 0, false);
  if (got < 0) return sysError("read", r.path, static_cast<int>(-got));
  if (static_cast<size_t>(got) != want) return ok();  // shrank under us
  if (rest > 0) std::memcpy(r.data + bulk, tail.get(), rest);
  r.header.assign(head.get(), head.get() + kDiskBlock);
  r.complete = true;
  return ok();
}

void sumChunkRead(DiskRead& r) {
  if (!r.complete) return;
  PayloadSum sum;
  sum.update(r.data, r.length);
  r.sum = sum.digest();
}

CopyError writePlain(const std::string& path, const uint8_t* data, size_t length, uint64_t offset, bool direct) {
  bool used = false;
  Fd fd(openMaybeDirect(path, O_WRONLY | O_CREAT, direct && aligned(data), &used));
  if (fd.get() < 0) return sysError("open", path, errno);
  struct iovec iov = {const_cast<uint8_t*>(data), length};
  int64_t got = fullIo(fd.get(), &iov, 1, offset, true);
  if (got < 0) return sysError("write", path, static_cast<int>(-got));
  if (static_cast<size_t>(got) != length) return sysError("write", path, ENOSPC);
  return ok();
}

CopyError readPlain(const std::string& path, uint8_t* data, size_t length, uint64_t offset, bool direct, bool dropCache) {
  bool used = false;
  Fd fd(openMaybeDirect(path, O_RDONLY, direct && aligned(data), &used));
  if (fd.get() < 0) return sysError("open", path, errno);
  if (!used && dropCache) posix_fadvise(fd.get(), static_cast<off_t>(offset), static_cast<off_t>(length), POSIX_FADV_DONTNEED);
  struct iovec iov = {data, length};
  int64_t got = fullIo(fd.get(), &iov, 1, offset, false);
  if (got < 0) return sysError("read", path, static_cast<int>(-got));
  if (static_cast<size_t>(got) != length) return sysError("read", path, EIO);
  return ok();
}

CopyError scanChunkDir(const std::string& root, size_t headBytes, std::vector<DiskScanEntry>* out) {
  DIR* top = opendir(root.c_str());
  if (top == nullptr) return sysError("opendir", root, errno);
  std::vector<std::string> subdirs;
  while (struct dirent* e = readdir(top)) {
    if (e->d_name[0] == '.') continue;
    if (e->d_type == DT_DIR || e->d_type == DT_UNKNOWN) subdirs.push_back(root + "/" + e->d_name);
  }
  closedir(top);
  for (const std::string& dir : subdirs) {
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) continue;  // a plain file at the top (the lock file)
    while (struct dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      DiskScanEntry entry;
      entry.path = dir + "/" + e->d_name;
      Fd fd(::open(entry.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
      struct stat st;
      if (fd.get() < 0 || fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd.get() < 0 && errno == ELOOP) out->push_back(std::move(entry));  // a symlink: reported, size 0
        continue;
      }
      entry.size = static_cast<uint64_t>(st.st_size);
      entry.mtimeMs = static_cast<double>(st.st_mtim.tv_sec) * 1e3 + static_cast<double>(st.st_mtim.tv_nsec) / 1e6;
      entry.head.resize(headBytes);
      struct iovec iov = {entry.head.data(), headBytes};
      int64_t got = fullIo(fd.get(), &iov, 1, 0, false);
      entry.head.resize(got > 0 ? static_cast<size_t>(got) : 0);
      out->push_back(std::move(entry));
    }
    closedir(d);
  }
  return ok();
}

size_t removeFiles(const std::vector<std::string>& paths) {
  size_t n = 0;
  for (const auto& p : paths) {
    if (::unlink(p.c_str()) == 0) ++n;
  }
  return n;
}

std::string probeDir(const std::string& dir, bool direct) {
  std::string path = dir + "/.kvtier-probe-" + std::to_string(getpid());
  int flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | (direct ? O_DIRECT : 0);
  int fd = ::open(path.c_str(), flags, 0600);
  if (fd < 0) {
    int err = errno;
    // The refused O_DIRECT open has created the file all the same (see openMaybeDirect).
    if (direct && err == EINVAL) ::unlink(path.c_str());
    if (direct && err == EINVAL) return "the filesystem refuses O_DIRECT (open: EINVAL); set disk_direct_io: false";
    return std::string("cannot create a file there: ") + (strerrorname_np(err) ? strerrorname_np(err) : "") + " " + std::strerror(err);
  }
  Aligned block = alignedBlock(kDiskBlock);
  std::memset(block.get(), 0x5a, kDiskBlock);
  std::string why;
  ssize_t w = pwrite(fd, block.get(), kDiskBlock, 0);
  if (w != static_cast<ssize_t>(kDiskBlock)) {
    why = std::string("a ") + (direct ? "O_DIRECT " : "") + "write failed: " + (w < 0 ? std::strerror(errno) : "short write");
  } else {
    std::memset(block.get(), 0, kDiskBlock);
    ssize_t r = pread(fd, block.get(), kDiskBlock, 0);
    if (r != static_cast<ssize_t>(kDiskBlock) || block.get()[kDiskBlock - 1] != 0x5a) {
      why = std::string("a ") + (direct ? "O_DIRECT " : "") + "read back failed: " + (r < 0 ? std::strerror(errno) : "wrong bytes");
    }
  }
  ::close(fd);
  ::unlink(path.c_str());
  return why;
}

int lockFile(const std::string& path, std::string* why, long* heldBy) {
  *heldBy = 0;
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    *why = std::string("cannot open the lock file: ") + std::strerror(errno);
    return -1;
  }
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char buf[32] = {0};
    ssize_t n = pread(fd.get(), buf, sizeof buf - 1, 0);
    if (n > 0) *heldBy = std::strtol(buf, nullptr, 10);
    *why = err == EWOULDBLOCK ? "held by another process" : std::string("flock failed: ") + std::strerror(err);
    return -1;
  }
  std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(fd.get(), 0) != 0 || pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    *why = std::string("cannot write the lock file: ") + std::strerror(errno);
    return -1;
  }
  return fd.release();
}

}  // namespace kvtier
