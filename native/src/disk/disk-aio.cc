// Linux native AIO for chunk payloads (see disk-aio.h).
#include "disk-aio.h"

#include <linux/aio_abi.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace kvtier {
namespace {

// One AIO context per I/O thread, created on its first use and destroyed
// with the thread (the tier's ThreadPool joins its threads on close).
class ThreadAio {
 public:
  ThreadAio() {
    if (syscall(SYS_io_setup, static_cast<unsigned>(kAioDepth), &ctx_) != 0) ctx_ = 0;
  }
  ~ThreadAio() {
    if (ctx_ != 0) syscall(SYS_io_destroy, ctx_);
  }
  aio_context_t get() const { return ctx_; }

 private:
  aio_context_t ctx_ = 0;
};

thread_local ThreadAio threadAio;

}  // namespace

AioResult aioPieces(int fd, uint8_t* data, size_t len, uint64_t offset, size_t piece, bool write,
                    const std::function<void(const uint8_t*, size_t)>& onPiece) {
  AioResult out;
  const aio_context_t ctx = threadAio.get();
  if (ctx == 0 || len == 0) return out;
  const size_t count = (len + piece - 1) / piece;
  std::vector<struct iocb> cbs(count);
  std::vector<int64_t> res(count, 0);
  std::vector<bool> landed(count, false);
  size_t submitted = 0, inFlight = 0, next = 0;  // next: the first piece not yet handed to onPiece (reads)
  int err = 0;
  bool stop = false;  // an error or a short piece: submit nothing more, wait for what is in flight
  auto reap = [&](long min) {
    struct io_event ev[kAioDepth];
    long n;
    do {
      n = syscall(SYS_io_getevents, ctx, min, static_cast<long>(kAioDepth), ev, nullptr);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      // Only EFAULT/EINVAL, impossible with this context and array: give up
      // waiting (io_destroy at thread exit still waits for what is in flight).
      err = err != 0 ? err : errno;
      return false;
    }
    for (long i = 0; i < n; ++i) {
      const size_t k = static_cast<size_t>(ev[i].data);
      res[k] = ev[i].res;
      landed[k] = true;
      --inFlight;
    }
    return true;
  };
  while (true) {
    while (!stop && submitted < count && inFlight < kAioDepth) {
      const size_t k = submitted;
      const size_t o = k * piece;
      const size_t n = std::min(piece, len - o);
      if (write) onPiece(data + o, n);
      struct iocb& cb = cbs[k];
      std::memset(&cb, 0, sizeof cb);
      cb.aio_data = k;
      cb.aio_lio_opcode = write ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
      cb.aio_fildes = static_cast<uint32_t>(fd);
      cb.aio_buf = reinterpret_cast<uint64_t>(data + o);
      cb.aio_nbytes = n;
      cb.aio_offset = static_cast<int64_t>(offset + o);
      struct iocb* p = &cb;
      long r;
      do {
        r = syscall(SYS_io_submit, ctx, 1L, &p);
      } while (r < 0 && errno == EINTR);
      if (r != 1) {
        const int e = r < 0 ? errno : EAGAIN;
        // Refused before anything ran (a filesystem without AIO for this fd,
        // no AIO resources): nothing moved, so the caller goes synchronous.
        if (submitted == 0) return out;
        err = e;
        stop = true;
        break;
      }
      ++submitted;
      ++inFlight;
    }
    // Hand landed reads over in file order, while later pieces are still moving.
    while (next < submitted && landed[next]) {
      const size_t o = next * piece;
      const size_t n = std::min(piece, len - o);
      if (res[next] < 0) {
        err = err != 0 ? err : static_cast<int>(-res[next]);
        stop = true;
        break;
      }
      if (static_cast<size_t>(res[next]) != n) stop = true;  // end of file: a short file
      if (stop) break;
      if (!write) onPiece(data + o, n);
      ++next;
    }
    if (inFlight == 0 && (stop || submitted == count)) break;
    if (!reap(1)) break;
  }
  out.ran = true;
  if (err != 0) {
    out.bytes = -err;
    return out;
  }
  out.bytes = static_cast<int64_t>(std::min(len, next * piece));
  return out;
}

}  // namespace kvtier
