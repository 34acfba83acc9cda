// RESP2 over a non-blocking TCP socket with poll() deadlines (see resp-conn.h).
#include "resp-conn.h"

#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace kvtier {
namespace {

int msUntil(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left, 1 << 30));
}

short pollFor(TlsWant want) { return want == TlsWant::Read ? POLLIN : want == TlsWant::Write ? POLLOUT : 0; }

std::string bulk(const std::string& s) { return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n"; }

}  // namespace

bool RespConn::fail(std::string* error, const std::string& why) {
  *error = why;
  close();
  return false;
}

void RespConn::close() {
  std::lock_guard<std::mutex> lock(fdMu_);
  tls_.reset();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  rpos_ = rend_ = 0;
}

void RespConn::shutdownNow() {
  std::lock_guard<std::mutex> lock(fdMu_);
  if (fd_ >= 0) {
    shut_ = true;
    ::shutdown(fd_, SHUT_RDWR);
  }
}

bool RespConn::wait(short events, Clock::time_point deadline, std::string* error) {
  for (;;) {
    int ms = msUntil(deadline);
    struct pollfd p = {fd_, events, 0};
    int r = ms == 0 ? 0 : ::poll(&p, 1, ms);
    if (r > 0) return true;
    if (r == 0) {
      timedOut_ = true;
      return fail(error, "timed out");
    }
    if (errno != EINTR) return fail(error, std::string("poll: ") + std::strerror(errno));
  }
}

bool RespConn::open(const NodeAddress& addr, Clock::time_point deadline, std::string* error) {
  close();
  timedOut_ = false;
  struct addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* res = nullptr;
  std::string port = std::to_string(addr.port);
  int rc = ::getaddrinfo(addr.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    *error = "cannot resolve " + addr.host + ": " + gai_strerror(rc);
    return false;
  }
  std::string last = "no address";
  for (struct addrinfo* ai = res; ai != nullptr && fd_ < 0; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = std::string("socket: ") + std::strerror(errno);
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(fdMu_);
      fd_ = fd;
    }
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last = std::string("connect: ") + std::strerror(errno);
        close();
        continue;
      }
      if (!wait(POLLOUT, deadline, &last)) continue;
      int soerr = 0;
      socklen_t len = sizeof soerr;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
      if (soerr != 0) {
        last = std::string("connect: ") + std::strerror(soerr);
        close();
        continue;
      }
    }
  }
  ::freeaddrinfo(res);
  if (fd_ < 0) {
    *error = addr.host + ":" + port + ": " + last;
    return false;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // Large kernel buffers keep a 1 MiB segment moving without a poll per 64 KiB.
  int big = 4 << 20;
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  if (addr.tls && !handshake(addr, deadline, error)) return false;

  std::string setup;
  int replies = 0;
  if (!addr.password.empty()) {
    setup += addr.username.empty() ? "*2\r\n" + bulk("AUTH") + bulk(addr.password)
                                   : "*3\r\n" + bulk("AUTH") + bulk(addr.username) + bulk(addr.password);
    ++replies;
  }
  if (addr.db != 0) {
    setup += "*2\r\n" + bulk("SELECT") + bulk(std::to_string(addr.db));
    ++replies;
  }
  if (replies == 0) return true;
  struct iovec iov = {setup.data(), setup.size()};
  if (!writeAll(&iov, 1, deadline, error)) return false;
  for (int i = 0; i < replies; ++i) {
    Reply r;
    if (!readReply(&r, nullptr, 0, -1, deadline, error)) return false;
    if (r.kind == ReplyKind::Error) return fail(error, r.text);
  }
  return true;
}

bool RespConn::handshake(const NodeAddress& addr, Clock::time_point deadline, std::string* error) {
  std::string why;
  tls_ = TlsSession::create(addr.tls, fd_, addr.host, &why);
  if (!tls_) return fail(error, why);
  for (;;) {
    TlsWant want = TlsWant::None;
    int r = tls_->handshake(&want, &why);
    if (r == 1) return true;
    if (r < 0) return fail(error, why);
    if (!wait(want == TlsWant::Write ? POLLOUT : POLLIN, deadline, error)) return false;
  }
}

ssize_t RespConn::recvSome(uint8_t* dest, size_t n, short* events, std::string* error) {
  if (tls_) {
    TlsWant want = TlsWant::None;
    ssize_t r = tls_->read(dest, n, &want, error);
    *events = r < 0 ? pollFor(want) : 0;
    return r;
  }
  for (;;) {
    ssize_t r = ::recv(fd_, dest, n, 0);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    *events = errno == EAGAIN || errno == EWOULDBLOCK ? POLLIN : 0;
    if (*events == 0) *error = std::string("read: ") + std::strerror(errno);
    return -1;
  }
}

ssize_t RespConn::sendSome(struct iovec* iov, int count, short* events, std::string* error) {
  if (tls_) {
    TlsWant want = TlsWant::None;
    ssize_t r = tls_->writev(iov, count, &want, error);
    *events = r < 0 ? pollFor(want) : 0;
    return r;
  }
  for (;;) {
    ssize_t r = ::writev(fd_, iov, count);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    *events = errno == EAGAIN || errno == EWOULDBLOCK ? POLLOUT : 0;
    if (*events == 0) *error = std::string("write: ") + std::strerror(errno);
    return -1;
  }
}

bool RespConn::writeAll(struct iovec* iov, int count, Clock::time_point deadline, std::string* error) {
  if (fd_ < 0) {
    *error = "not connected";
    return false;
  }
  while (count > 0) {
    short events = 0;
    ssize_t n = sendSome(iov, std::min(count, IOV_MAX), &events, error);
    if (n < 0) {
      if (events == 0) return fail(error, std::string(*error));
      if (!wait(events, deadline, error)) return false;
      continue;
    }
    size_t left = static_cast<size_t>(n);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0 && left > 0) {
      iov->iov_base = static_cast<uint8_t*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return true;
}

bool RespConn::fill(Clock::time_point deadline, std::string* error, size_t most) {
  if (rpos_ == rend_) rpos_ = rend_ = 0;
  if (rend_ == kReadBuf) {
    std::memmove(rbuf_, rbuf_ + rpos_, rend_ - rpos_);
    rend_ -= rpos_;
    rpos_ = 0;
    if (rend_ == kReadBuf) return fail(error, "reply line longer than the read buffer");
  }
  for (;;) {
    short events = 0;
    ssize_t n = recvSome(rbuf_ + rend_, std::min(most, kReadBuf - rend_), &events, error);
    if (n > 0) {
      rend_ += static_cast<size_t>(n);
      return true;
    }
    if (n == 0) return fail(error, "connection closed by the server");
    if (events == 0) return fail(error, std::string(*error));
    if (!wait(events, deadline, error)) return false;
  }
}

bool RespConn::readLine(std::string* line, Clock::time_point deadline, std::string* error) {
  for (;;) {
    auto* begin = rbuf_ + rpos_;
    auto* end = rbuf_ + rend_;
    auto* cr = static_cast<uint8_t*>(std::memchr(begin, '\r', end - begin));
    if (cr != nullptr && cr + 1 < end) {
      if (cr[1] != '\n') return fail(error, "malformed reply line");
      line->assign(reinterpret_cast<char*>(begin), cr - begin);
      rpos_ = (cr + 2) - rbuf_;
      return true;
    }
    if (!fill(deadline, error)) return false;
  }
}

bool RespConn::readExact(uint8_t* dest, size_t n, Clock::time_point deadline, std::string* error, PayloadSum* hash) {
  size_t have = std::min(n, rend_ - rpos_);
  std::memcpy(dest, rbuf_ + rpos_, have);
  rpos_ += have;
  if (hash != nullptr) hash->update(dest, have);
  size_t got = have;
  // The rest goes straight from the socket into place. When hashing, in
  // pieces small enough to still be in cache when hashed, and hashed while
  // the server keeps filling the socket buffer.
  while (got < n) {
    short events = 0;
    const size_t want = hash != nullptr ? std::min(n - got, kHashPiece) : n - got;
    ssize_t r = recvSome(dest + got, want, &events, error);
    if (r > 0) {
      if (hash != nullptr) hash->update(dest + got, static_cast<size_t>(r));
      got += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) return fail(error, "connection closed by the server");
    if (events == 0) return fail(error, std::string(*error));
    if (!wait(events, deadline, error)) return false;
  }
  return true;
}

bool RespConn::skip(size_t n, Clock::time_point deadline, std::string* error) {
  while (n > 0) {
    // A value being discarded: whole read buffers at a time.
    if (rpos_ == rend_ && !fill(deadline, error, kReadBuf)) return false;
    size_t take = std::min(n, rend_ - rpos_);
    rpos_ += take;
    n -= take;
  }
  return true;
}

bool RespConn::readReply(Reply* out, uint8_t* dest, size_t cap, int64_t expect, Clock::time_point deadline,
                         std::string* error, PayloadSum* hash) {
  std::string line;
  if (!readLine(&line, deadline, error)) return false;
  if (line.empty()) return fail(error, "empty reply line");
  const char type = line[0];
  std::string rest = line.substr(1);
  switch (type) {
    case '+':
      out->kind = ReplyKind::Status;
      out->text = std::move(rest);
      return true;
    case '-':
      out->kind = ReplyKind::Error;
      out->text = std::move(rest);
      return true;
    case ':':
      out->kind = ReplyKind::Integer;
      out->integer = std::strtoll(rest.c_str(), nullptr, 10);
      return true;
    case '$': {
      char* endp = nullptr;
      long long len = std::strtoll(rest.c_str(), &endp, 10);
      if (endp == rest.c_str() || *endp != '\0' || len < -1) return fail(error, "malformed bulk length");
      if (len == -1) {
        out->kind = ReplyKind::Nil;
        return true;
      }
      out->integer = len;
      const bool fits = expect >= 0 ? len == expect : static_cast<uint64_t>(len) <= cap;
      if (!fits || dest == nullptr) {
        out->kind = ReplyKind::TooLong;
        return skip(static_cast<size_t>(len) + 2, deadline, error);
      }
      out->kind = ReplyKind::Bulk;
      if (!readExact(dest, static_cast<size_t>(len), deadline, error, hash)) return false;
      uint8_t crlf[2];
      if (!readExact(crlf, 2, deadline, error)) return false;
      if (crlf[0] != '\r' || crlf[1] != '\n') return fail(error, "bulk reply not followed by CRLF");
      return true;
    }
    default:
      return fail(error, std::string("unexpected reply type '") + type + "'");
  }
}

}  // namespace kvtier
