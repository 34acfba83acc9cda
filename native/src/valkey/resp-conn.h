// One TCP connection to a Valkey node, driven by one I/O thread, every call
// bounded by a deadline. Writes go out with writev straight from the
// caller's memory (a pinned slab); a bulk reply lands straight in the
// caller's destination: the `$<len>\r\n` line is parsed from a small read
// buffer, whatever of the bulk is already in that buffer is copied, and the
// rest is recv()d into place. No intermediate buffer for the payload.
//
// Any I/O error, timeout or protocol surprise leaves the connection closed:
// its state on the wire is unknown, so the next job reconnects.
//
// With a TLS context the same calls go through a TlsSession (tls.h): the
// reply still lands in place, decrypted straight into the destination.
#pragma once
#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <memory>
#include <string>

#include "tls.h"
#include "../checksum.h"

namespace kvtier {

using Clock = std::chrono::steady_clock;

// Bytes of a segment sent or received per syscall when it is also hashed:
// small enough to stay in L2 between the kernel's copy and the hash.
constexpr size_t kHashPiece = 256 * 1024;

struct NodeAddress {
  std::string host;  // numeric IPv4/IPv6 or a name getaddrinfo resolves
  int port = 6379;
  std::string username;  // empty: AUTH <password> only
  std::string password;  // empty: no AUTH
  int db = 0;
  std::shared_ptr<TlsContext> tls;  // null: plain TCP
};

// What one reply was.
enum class ReplyKind { Status, Error, Integer, Bulk, Nil, TooLong };

struct Reply {
  ReplyKind kind = ReplyKind::Nil;
  int64_t integer = 0;   // Integer; Bulk: its length
  std::string text;      // Status/Error text (errors start with their code, e.g. "MOVED 123 h:p")
};

class RespConn {
 public:
  RespConn() = default;
  RespConn(const RespConn&) = delete;
  RespConn& operator=(const RespConn&) = delete;
  ~RespConn() { close(); }

  // I/O thread: false when closed, or shut down by shutdownNow() (then closed here).
  bool isOpen() {
    if (shut_.exchange(false)) close();
    return fd_ >= 0;
  }
  // Connects, sets TCP_NODELAY, authenticates and selects the db.
  // false + *error on failure (the connection stays closed).
  bool open(const NodeAddress& addr, Clock::time_point deadline, std::string* error);
  void close();
  // Whether the last failure was a deadline passing (a hung server), not a
  // broken connection (a restarted one).
  bool timedOut() const { return timedOut_; }
  // Any thread: wakes an I/O thread blocked in poll() on this connection
  // (its call fails), and makes the next job reconnect.
  void shutdownNow();

  // Writes every iovec; false + *error (connection closed) on failure.
  bool writeAll(struct iovec* iov, int count, Clock::time_point deadline, std::string* error);
  // Reads one reply. A bulk reply of exactly `expect` bytes (or, with
  // expect < 0, at most `cap`) is stored in dest; any other bulk is read and
  // discarded and reported as TooLong with its length in `integer`. With
  // `hash`, a stored bulk is fed to it piece by piece as it lands.
  bool readReply(Reply* out, uint8_t* dest, size_t cap, int64_t expect, Clock::time_point deadline,
                 std::string* error, PayloadSum* hash = nullptr);

 private:
  // More bytes into rbuf_, at most `most` per recv.
  bool fill(Clock::time_point deadline, std::string* error, size_t most = kFillBytes);
  bool readLine(std::string* line, Clock::time_point deadline, std::string* error);
  bool readExact(uint8_t* dest, size_t n, Clock::time_point deadline, std::string* error, PayloadSum* hash = nullptr);
  bool skip(size_t n, Clock::time_point deadline, std::string* error);
  bool wait(short events, Clock::time_point deadline, std::string* error);
  bool fail(std::string* error, const std::string& why);
  // One recv()/writev() over the socket or the TLS session: > 0 bytes, 0 the
  // peer closed (reads), -1 with *events to poll for, or *events 0 and *error.
  ssize_t recvSome(uint8_t* dest, size_t n, short* events, std::string* error);
  ssize_t sendSome(struct iovec* iov, int count, short* events, std::string* error);
  bool handshake(const NodeAddress& addr, Clock::time_point deadline, std::string* error);

  int fd_ = -1;
  std::unique_ptr<TlsSession> tls_;
  std::mutex fdMu_;  // fd_ changes vs shutdownNow() from the JS thread
  std::atomic<bool> shut_{false};
  bool timedOut_ = false;
  static constexpr size_t kReadBuf = 64 * 1024;
  // Bytes one fill() asks for. A reply line is read through rbuf_, and what
  // came with it of a bulk value is copied out into place: asking for 64 KiB
  // copied 6% of every 1 MiB segment twice (perf: 3% of the machine during
  // a Valkey hit). 4 KiB still holds hundreds of pipelined +OK replies.
  static constexpr size_t kFillBytes = 4 * 1024;
  uint8_t rbuf_[kReadBuf];
  size_t rpos_ = 0, rend_ = 0;
};

}  // namespace kvtier
