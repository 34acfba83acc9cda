// The I/O threads and the two chunk jobs (see link.h).
#include "link.h"

#include <algorithm>
#include <thread>

#include "../checksum.h"
#include "../constants.h"

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

std::shared_ptr<ValkeyLink> ValkeyLink::start(NodeAddress addr, int connections, int connectTimeoutMs,
                                              size_t pipelineBytes) {
  std::shared_ptr<ValkeyLink> link(new ValkeyLink(std::move(addr), connectTimeoutMs, std::max<size_t>(1, pipelineBytes)));
  size_t n = static_cast<size_t>(std::max(1, connections));
  for (size_t i = 0; i < n; ++i) link->conns_.push_back(std::make_unique<RespConn>());
  // Detached: each thread holds the link, so the link outlives its threads,
  // and a thread blocked on a hung server never blocks the JS thread's close.
  for (size_t i = 0; i < n; ++i) std::thread([link, i] { link->loop(i); }).detach();
  return link;
}

void ValkeyLink::fail(std::unique_ptr<ValkeyJob> job, const std::string& message) {
  job->code = codes::kValkeyUnavailable;
  job->message = message;
  auto done = std::move(job->done);
  done(job.release());
}

void ValkeyLink::submit(std::unique_ptr<ValkeyJob> job) {
  // Parts of about pipelineBytes_; a job without segments (a lone manifest
  // read) is one part.
  std::vector<JobPart> parts;
  const size_t n = job->segments.size();
  size_t begin = 0;
  do {
    size_t end = begin, bytes = 0;
    while (end < n && (end == begin || bytes + job->segments[end].length <= pipelineBytes_)) bytes += job->segments[end++].length;
    parts.push_back({job.get(), begin, end, begin == 0, Clock::time_point{}});
    begin = end;
  } while (begin < n);
  job->partsLeft = parts.size();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!closed_) {
      job.release();  // owned by its parts until the last one finishes
      const auto now = Clock::now();
      for (auto& p : parts) {
        p.queued = now;
        queue_.push_back(p);
      }
      if (parts.size() == 1) cv_.notify_one();
      else cv_.notify_all();
      return;
    }
  }
  fail(std::move(job), "the native Valkey link is closed");
}

void ValkeyLink::close() {
  std::deque<JobPart> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    dropped.swap(queue_);
    // A thread in poll() on a hung server wakes now instead of at its deadline.
    for (auto& c : conns_) c->shutdownNow();
  }
  cv_.notify_all();
  RespConn none;
  for (auto& part : dropped) finishPart(none, part, false, codes::kValkeyUnavailable, "the native Valkey link is closed");
}

size_t ValkeyLink::abort(const std::string& why) {
  std::deque<JobPart> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    dropped.swap(queue_);
    for (auto& c : conns_) c->shutdownNow();
  }
  RespConn none;
  for (auto& part : dropped) finishPart(none, part, false, codes::kValkeyUnavailable, why);
  return dropped.size();
}

LinkStats ValkeyLink::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void ValkeyLink::loop(size_t index) {
  RespConn& conn = *conns_[index];
  for (;;) {
    JobPart part;
    Clock::time_point started;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return closed_ || !queue_.empty(); });
      if (closed_) break;
      part = queue_.front();
      queue_.pop_front();
      started = Clock::now();
      stats_.parts++;
      stats_.waitNs += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(started - part.queued).count());
    }
    std::string code, message;
    bool ok = run(conn, part, started + part.job->timeout, &code, &message);
    finishPart(conn, part, ok, std::move(code), std::move(message), &started);
  }
  conn.close();
}

// The first failure of a job is the one reported; the last part to finish
// writes the manifest of a write that fully succeeded, then settles the job.
// A part a connection ran (started set) adds its busy time before the job
// settles, so a caller that reads the stats after its job sees all of it.
void ValkeyLink::finishPart(RespConn& conn, const JobPart& part, bool ok, std::string code, std::string message,
                            const Clock::time_point* started) {
  auto addBusy = [&] {
    if (started != nullptr)
      stats_.busyNs +=
          static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - *started).count());
  };
  ValkeyJob* job = part.job;
  bool last;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ok && job->code.empty()) {
      job->code = std::move(code);
      job->message = std::move(message);
    }
    last = --job->partsLeft == 0;
    if (!last) addBusy();
  }
  if (!last) return;
  std::unique_ptr<ValkeyJob> owned(job);
  if (owned->write && owned->code.empty() && !owned->manifestKey.empty()) {
    std::string c, m;
    if (!writeManifest(conn, *owned, &c, &m)) {
      owned->code = std::move(c);
      owned->message = std::move(m);
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    addBusy();
    stats_.jobs++;
    if (!owned->code.empty()) {
      stats_.failures++;
    } else {
      for (auto& s : owned->segments) {
        if (owned->write) stats_.bytesOut += s.length;
        else if (s.got > 0) stats_.bytesIn += static_cast<uint64_t>(s.got);
      }
    }
  }
  auto done = std::move(owned->done);
  done(owned.release());
}

bool ValkeyLink::ensureOpen(RespConn& conn, Clock::time_point deadline, std::string* code, std::string* message) {
  if (conn.isOpen()) return true;
  std::string error;
  auto connectBy = std::min(deadline, Clock::now() + std::chrono::milliseconds(connectTimeoutMs_));
  if (!conn.open(addr_, connectBy, &error)) {
    const bool auth = error.find("WRONGPASS") != std::string::npos || error.find("NOAUTH") != std::string::npos ||
                      error.find("NOPERM") != std::string::npos;
    *code = auth ? codes::kValkeyAuth : codes::kValkeyUnavailable;
    *message = addr_.host + ":" + std::to_string(addr_.port) + ": " + error;
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  stats_.reconnects++;
  return true;
}

bool ValkeyLink::run(RespConn& conn, const JobPart& part, Clock::time_point deadline, std::string* code,
                     std::string* message) {
  {
    // A part of a job that already failed elsewhere is not worth its bytes.
    std::lock_guard<std::mutex> lock(mu_);
    if (!part.job->code.empty()) {
      *code = part.job->code;
      *message = part.job->message;
      return false;
    }
  }
  const bool reused = conn.isOpen();
  if (!ensureOpen(conn, deadline, code, message)) return false;
  auto once = [&] {
    return part.job->write ? writeSegments(conn, part, deadline, code, message)
                           : readSegments(conn, part, deadline, code, message);
  };
  if (once()) return true;
  // A connection that sat idle may have died with a restarted server: try
  // once more on a fresh one (SET and GET are idempotent). Not after a
  // timeout: a hung server would get twice its bound.
  if (!reused || conn.isOpen() || conn.timedOut() || *code != codes::kValkeyUnavailable) return false;
  if (!ensureOpen(conn, deadline, code, message)) return false;
  code->clear();
  message->clear();
  return once();
}

namespace {

bool ioFailed(const NodeAddress& a, const std::string& error, std::string* code, std::string* message) {
  *code = codes::kValkeyUnavailable;
  *message = a.host + ":" + std::to_string(a.port) + ": " + error;
  return false;
}

bool refused(const std::string& what, const Reply& r, std::string* code, std::string* message) {
  *code = codes::kValkeyRefused;
  *message = what + " refused: " + (r.kind == ReplyKind::Error ? r.text : "unexpected reply");
  return false;
}

}  // namespace

bool ValkeyLink::writeSegments(RespConn& conn, const JobPart& part, Clock::time_point deadline, std::string* code,
                               std::string* message) {
  ValkeyJob& job = *part.job;
  const size_t n = part.end - part.begin;
  if (n == 0) return true;
  const std::string tail = setTail(job.segmentTtl);
  std::string error;
  // The part goes out in writes of about kHashPiece payload bytes (several
  // small segments share one write, a large one is cut), and each write's
  // payload is hashed right after the kernel copied it (still in cache)
  // while the server reads it: the connection never waits for a hash, and
  // the last piece's hash overlaps the server's SET. Each part sums its own
  // segments: disjoint bytes of the manifest.
  std::vector<std::string> heads(n);
  std::vector<PayloadSum> sums(n);
  std::vector<struct iovec> iov;
  struct Piece {
    size_t k;
    const uint8_t* data;
    size_t len;
  };
  std::vector<Piece> pieces;
  size_t pending = 0;
  auto flush = [&]() {
    if (iov.empty()) return true;
    if (!conn.writeAll(iov.data(), static_cast<int>(iov.size()), deadline, &error)) return false;
    for (const Piece& p : pieces) sums[p.k].update(p.data, p.len);
    iov.clear();
    pieces.clear();
    pending = 0;
    return true;
  };
  for (size_t k = 0; k < n; ++k) {
    SegmentIo& s = job.segments[part.begin + k];
    heads[k] = setHead(s.key, s.length, job.segmentTtl);
    iov.push_back({heads[k].data(), heads[k].size()});
    size_t at = 0;
    while (at < s.length) {
      const size_t len = std::min(kHashPiece - pending, s.length - at);
      iov.push_back({s.data + at, len});
      pieces.push_back({k, s.data + at, len});
      pending += len;
      at += len;
      if (pending == kHashPiece && at < s.length && !flush()) return ioFailed(addr_, error, code, message);
    }
    iov.push_back({const_cast<char*>(tail.data()), tail.size()});
    if (pending >= kHashPiece && !flush()) return ioFailed(addr_, error, code, message);
  }
  if (!flush()) return ioFailed(addr_, error, code, message);
  for (size_t k = 0; k < n; ++k) {
    const size_t i = part.begin + k;
    SegmentIo& s = job.segments[i];
    s.sum = sums[k].digest();
    if (i < job.sumOffsets.size()) sumHex(s.sum, reinterpret_cast<char*>(job.manifest.data() + job.sumOffsets[i]));
  }
  bool ok = true;
  for (size_t k = 0; k < n; ++k) {
    Reply r;
    if (!conn.readReply(&r, nullptr, 0, -1, deadline, &error)) return ioFailed(addr_, error, code, message);
    // Every reply is read, so the connection stays in step: only this chunk failed (OOM, MOVED, ...).
    if (r.kind != ReplyKind::Status && ok) ok = refused("SET " + job.segments[part.begin + k].key, r, code, message);
  }
  return ok;
}

bool ValkeyLink::writeManifest(RespConn& conn, ValkeyJob& job, std::string* code, std::string* message) {
  const auto deadline = Clock::now() + job.timeout;
  if (!ensureOpen(conn, deadline, code, message)) return false;
  std::string head = setHead(job.manifestKey, job.manifest.size(), job.manifestTtl);
  std::string tail = setTail(job.manifestTtl);
  struct iovec m[3] = {{head.data(), head.size()}, {job.manifest.data(), job.manifest.size()}, {tail.data(), tail.size()}};
  std::string error;
  if (!conn.writeAll(m, 3, deadline, &error)) return ioFailed(addr_, error, code, message);
  Reply r;
  if (!conn.readReply(&r, nullptr, 0, -1, deadline, &error)) return ioFailed(addr_, error, code, message);
  if (r.kind != ReplyKind::Status) return refused("SET " + job.manifestKey, r, code, message);
  return true;
}

bool ValkeyLink::readSegments(RespConn& conn, const JobPart& part, Clock::time_point deadline, std::string* code,
                              std::string* message) {
  ValkeyJob& job = *part.job;
  std::string commands;
  const bool manifest = part.first && !job.manifestKey.empty();
  // ASKING lasts one command, so one before each GET.
  static const std::string kAsking = "*1\r\n$6\r\nASKING\r\n";
  const std::string& ask = job.asking ? kAsking : std::string();
  if (manifest) commands += ask + getCommand(job.manifestKey);
  for (size_t i = part.begin; i < part.end; ++i) commands += ask + getCommand(job.segments[i].key);
  std::string error;
  struct iovec iov = {commands.data(), commands.size()};
  if (!conn.writeAll(&iov, 1, deadline, &error)) return ioFailed(addr_, error, code, message);
  bool ok = true;
  // Each ASKING's reply; read so the connection stays in step.
  auto asked = [&]() {
    if (!job.asking) return true;
    Reply r;
    if (!conn.readReply(&r, nullptr, 0, -1, deadline, &error)) return ioFailed(addr_, error, code, message);
    if (r.kind != ReplyKind::Status && ok) ok = refused("ASKING", r, code, message);
    return true;
  };
  if (manifest) {
    if (!asked()) return false;
    Reply r;
    if (!conn.readReply(&r, job.manifest.data(), job.manifest.size(), -1, deadline, &error)) return ioFailed(addr_, error, code, message);
    if (r.kind == ReplyKind::Bulk) job.manifestGot = r.integer;
    else if (r.kind == ReplyKind::TooLong) job.manifestGot = -2;
    else if (r.kind == ReplyKind::Error) ok = refused("GET " + job.manifestKey, r, code, message);
  }
  for (size_t i = part.begin; i < part.end; ++i) {
    SegmentIo& s = job.segments[i];
    if (!asked()) return false;
    Reply r;
    PayloadSum h;  // fed as the bytes land (resp-conn.h)
    if (!conn.readReply(&r, s.data, s.length, static_cast<int64_t>(s.length), deadline, &error, &h)) return ioFailed(addr_, error, code, message);
    if (r.kind == ReplyKind::Bulk) {
      s.got = r.integer;
      s.sum = h.digest();
    } else if (r.kind == ReplyKind::TooLong) {
      s.got = -2;
    } else if (r.kind == ReplyKind::Error && ok) {
      ok = refused("GET " + s.key, r, code, message);
    }
  }
  return ok;
}

}  // namespace kvtier
