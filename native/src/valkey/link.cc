// The I/O threads and the two chunk jobs (see link.h).
#include "link.h"

#include <algorithm>
#include <thread>

#include "xxh64.h"

namespace kvtier {
namespace {

// "*N\r\n$3\r\nSET\r\n$<klen>\r\n<key>\r\n$<vlen>\r\n": what precedes a value.
std::string setHead(const std::string& key, size_t valueLen, int64_t ttl) {
  std::string s = ttl > 0 ? "*5\r\n" : "*3\r\n";
  s += "$3\r\nSET\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n$" + std::to_string(valueLen) + "\r\n";
  return s;
}

// What follows a value: CRLF, then EX <ttl> when it expires.
std::string setTail(int64_t ttl) {
  if (ttl <= 0) return "\r\n";
  std::string t = std::to_string(ttl);
  return "\r\n$2\r\nEX\r\n$" + std::to_string(t.size()) + "\r\n" + t + "\r\n";
}

std::string getCommand(const std::string& key) {
  return "*2\r\n$3\r\nGET\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n";
}

}  // namespace

std::shared_ptr<ValkeyLink> ValkeyLink::start(NodeAddress addr, int connections, int connectTimeoutMs) {
  std::shared_ptr<ValkeyLink> link(new ValkeyLink(std::move(addr), connectTimeoutMs));
  size_t n = static_cast<size_t>(std::max(1, connections));
  for (size_t i = 0; i < n; ++i) link->conns_.push_back(std::make_unique<RespConn>());
  // Detached: each thread holds the link, so the link outlives its threads,
  // and a thread blocked on a hung server never blocks the JS thread's close.
  for (size_t i = 0; i < n; ++i) std::thread([link, i] { link->loop(i); }).detach();
  return link;
}

void ValkeyLink::submit(std::unique_ptr<ValkeyJob> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!closed_) {
      queue_.push_back(std::move(job));
      cv_.notify_one();
      return;
    }
  }
  job->code = "KVT_VALKEY_UNAVAILABLE";
  job->message = "the native Valkey link is closed";
  auto done = std::move(job->done);
  done(job.release());
}

void ValkeyLink::close() {
  std::deque<std::unique_ptr<ValkeyJob>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    dropped.swap(queue_);
    // A thread in poll() on a hung server wakes now instead of at its deadline.
    for (auto& c : conns_) c->shutdownNow();
  }
  cv_.notify_all();
  for (auto& job : dropped) {
    job->code = "KVT_VALKEY_UNAVAILABLE";
    job->message = "the native Valkey link is closed";
    auto done = std::move(job->done);
    done(job.release());
  }
}

LinkStats ValkeyLink::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void ValkeyLink::loop(size_t index) {
  RespConn& conn = *conns_[index];
  for (;;) {
    std::unique_ptr<ValkeyJob> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return closed_ || !queue_.empty(); });
      if (closed_) break;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    run(conn, *job);
    auto done = std::move(job->done);
    done(job.release());
  }
  conn.close();
}

void ValkeyLink::run(RespConn& conn, ValkeyJob& job) {
  std::string error;
  bool reconnected = false;
  if (!conn.isOpen()) {
    auto connectBy = std::min(job.deadline, Clock::now() + std::chrono::milliseconds(connectTimeoutMs_));
    if (!conn.open(addr_, connectBy, &error)) {
      job.code = error.find("WRONGPASS") != std::string::npos || error.find("NOAUTH") != std::string::npos ||
                         error.find("NOPERM") != std::string::npos
                     ? "KVT_VALKEY_AUTH"
                     : "KVT_VALKEY_UNAVAILABLE";
      job.message = addr_.host + ":" + std::to_string(addr_.port) + ": " + error;
      std::lock_guard<std::mutex> lock(mu_);
      stats_.failures++;
      return;
    }
    reconnected = true;
  }
  const bool ok = job.write ? runWrite(conn, job, &error) : runRead(conn, job, &error);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.jobs++;
  if (reconnected) stats_.reconnects++;
  if (!ok) {
    stats_.failures++;
    if (job.code.empty()) {
      job.code = "KVT_VALKEY_UNAVAILABLE";
      job.message = addr_.host + ":" + std::to_string(addr_.port) + ": " + error;
    }
    return;
  }
  for (auto& s : job.segments) {
    if (job.write) stats_.bytesOut += s.length;
    else if (s.got > 0) stats_.bytesIn += static_cast<uint64_t>(s.got);
  }
}

bool ValkeyLink::runWrite(RespConn& conn, ValkeyJob& job, std::string* error) {
  const size_t n = job.segments.size();
  for (size_t i = 0; i < n; ++i) {
    SegmentIo& s = job.segments[i];
    s.sum = xxh64(s.data, s.length);
    if (i < job.sumOffsets.size()) {
      const size_t at = job.sumOffsets[i];
      if (at + 16 > job.manifest.size()) {
        job.code = "KVT_BAD_REQUEST";
        job.message = "a checksum offset lies outside the manifest";
        return false;
      }
      xxh64Hex(s.sum, reinterpret_cast<char*>(job.manifest.data() + at));
    }
  }
  std::vector<std::string> heads(n);
  const std::string tail = setTail(job.segmentTtl);
  std::vector<struct iovec> iov;
  iov.reserve(n * 3);
  for (size_t i = 0; i < n; ++i) {
    heads[i] = setHead(job.segments[i].key, job.segments[i].length, job.segmentTtl);
    iov.push_back({heads[i].data(), heads[i].size()});
    iov.push_back({job.segments[i].data, job.segments[i].length});
    iov.push_back({const_cast<char*>(tail.data()), tail.size()});
  }
  if (n > 0 && !conn.writeAll(iov.data(), static_cast<int>(iov.size()), job.deadline, error)) return false;
  std::string refused;
  for (size_t i = 0; i < n; ++i) {
    Reply r;
    if (!conn.readReply(&r, nullptr, 0, -1, job.deadline, error)) return false;
    if (r.kind != ReplyKind::Status && refused.empty()) {
      refused = "SET " + job.segments[i].key + " refused: " + (r.kind == ReplyKind::Error ? r.text : "unexpected reply");
    }
  }
  if (!refused.empty()) {
    // The connection is still in step: only this chunk failed (OOM, MOVED, ...).
    job.code = "KVT_VALKEY_REFUSED";
    job.message = refused;
    return false;
  }
  if (job.manifestKey.empty()) return true;
  std::string head = setHead(job.manifestKey, job.manifest.size(), job.manifestTtl);
  std::string mtail = setTail(job.manifestTtl);
  struct iovec m[3] = {{head.data(), head.size()}, {job.manifest.data(), job.manifest.size()},
                       {mtail.data(), mtail.size()}};
  if (!conn.writeAll(m, 3, job.deadline, error)) return false;
  Reply r;
  if (!conn.readReply(&r, nullptr, 0, -1, job.deadline, error)) return false;
  if (r.kind != ReplyKind::Status) {
    job.code = "KVT_VALKEY_REFUSED";
    job.message = "SET " + job.manifestKey + " refused: " + (r.kind == ReplyKind::Error ? r.text : "unexpected reply");
    return false;
  }
  return true;
}

bool ValkeyLink::runRead(RespConn& conn, ValkeyJob& job, std::string* error) {
  std::string commands;
  const bool manifest = !job.manifestKey.empty();
  if (manifest) commands += getCommand(job.manifestKey);
  for (auto& s : job.segments) commands += getCommand(s.key);
  struct iovec iov = {commands.data(), commands.size()};
  if (!conn.writeAll(&iov, 1, job.deadline, error)) return false;
  std::string refused;
  if (manifest) {
    Reply r;
    if (!conn.readReply(&r, job.manifest.data(), job.manifest.size(), -1, job.deadline, error)) return false;
    if (r.kind == ReplyKind::Bulk) job.manifestGot = r.integer;
    else if (r.kind == ReplyKind::TooLong) job.manifestGot = -2;
    else if (r.kind == ReplyKind::Error) refused = "GET " + job.manifestKey + ": " + r.text;
  }
  for (auto& s : job.segments) {
    Reply r;
    if (!conn.readReply(&r, s.data, s.length, static_cast<int64_t>(s.length), job.deadline, error)) return false;
    if (r.kind == ReplyKind::Bulk) {
      s.got = r.integer;
      s.sum = xxh64(s.data, s.length);
    } else if (r.kind == ReplyKind::TooLong) {
      s.got = -2;
    } else if (r.kind == ReplyKind::Error && refused.empty()) {
      refused = "GET " + s.key + ": " + r.text;
    }
  }
  if (!refused.empty()) {
    job.code = "KVT_VALKEY_REFUSED";
    job.message = refused;
    return false;
  }
  return true;
}

}  // namespace kvtier
