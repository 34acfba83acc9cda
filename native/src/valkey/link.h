// A Valkey node's native data plane: `connections` RespConns, each driven by
// its own I/O thread, all pulling work from one queue, so a busy connection
// never holds back the others. A chunk's segments (one hash tag, so one node)
// are cut into parts of at most `pipelineBytes` each, pipelined on whichever
// connection takes the part: Valkey reads several MiB-sized values queued on
// one connection far more slowly than the same values spread over several
// (a 32 MiB chunk as one 32-segment pipeline ran at half the server's rate).
//
//   write job: SET every segment (pipelined, writev from the slab in
//              kHashPiece pieces, each hashed (XXH3-64, checksum.h) just after it is
//              sent), the sums patched into the manifest JS packed, then SET
//              the manifest: last, so a reader never sees a half-written
//              chunk.
//   read job:  GET the manifest (optional) and every segment, pipelined;
//              each segment lands in its place in the destination slab and
//              is hashed piece by piece as it lands. JS verifies the
//              manifest and compares the sums.
//
// One completion per job. Connection errors and timeouts fail the job with
// KVT_VALKEY_UNAVAILABLE and close that connection only; the next job on it
// reconnects. Every part runs under a deadline set when it starts (JS sizes
// the timeout); abort() fails what has not started and wakes what has, for
// a server the control plane (glide's PING) found hung or down.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "resp-conn.h"

namespace kvtier {

struct SegmentIo {
  std::string key;
  uint8_t* data = nullptr;  // write: source; read: destination
  size_t length = 0;        // write: bytes; read: expected bytes
  // Read results.
  int64_t got = -1;  // bytes landed; -1 nil (absent); -2 a value of another length
  uint64_t sum = 0;
};

struct ValkeyJob {
  bool write = false;
  std::vector<SegmentIo> segments;
  int64_t segmentTtl = 0;  // EX seconds; 0 none
  // write: manifest SET after the segments, with 16-hex-digit sums patched
  // in at sumOffsets[i] (segment i). read: optional GET into manifestBuf.
  std::string manifestKey;
  std::vector<uint8_t> manifest;  // write: the value; read: capacity, then the reply
  std::vector<uint32_t> sumOffsets;
  int64_t manifestTtl = 0;
  int64_t manifestGot = -1;  // read: bytes of the manifest reply; -1 nil; -2 too long
  // read: each GET is preceded by ASKING, for a retry at the node an ASK
  // redirect named (a slot being imported there).
  bool asking = false;
  // Time each part (and the manifest write) gets once it starts: a job
  // queued behind others does not spend its time waiting.
  std::chrono::milliseconds timeout{0};
  // Outcome.
  std::string code;  // empty ok; else a src/errors.ts code
  std::string message;
  std::function<void(ValkeyJob*)> done;  // on the I/O thread
  // Parts still running; the last one to finish writes the manifest (write
  // jobs, when every part succeeded) and calls done. Guarded by the link.
  size_t partsLeft = 0;
};

// Segments [begin, end) of a job; part 0 also carries a read's manifest GET.
struct JobPart {
  ValkeyJob* job;
  size_t begin, end;
  bool first;
  Clock::time_point queued;  // when submit() queued it
};

// Where a link's time goes, to tell a starved link from a saturated one:
// busyNs is the sum over connections of time spent running parts (the
// link's connections x wall time, when every connection is always busy);
// waitNs the sum over parts of time from submit to a connection taking it.
struct LinkStats {
  uint64_t jobs = 0, failures = 0, reconnects = 0, bytesOut = 0, bytesIn = 0;
  uint64_t parts = 0, busyNs = 0, waitNs = 0;
};

class ValkeyLink : public std::enable_shared_from_this<ValkeyLink> {
 public:
  static std::shared_ptr<ValkeyLink> start(NodeAddress addr, int connections, int connectTimeoutMs,
                                           size_t pipelineBytes);
  // Queues a job; done() runs on an I/O thread (at once, with an error, when closed).
  void submit(std::unique_ptr<ValkeyJob> job);
  // Fails queued jobs, wakes the threads; they exit after their current job.
  void close();
  // The server is down: fails every queued part and shuts down the sockets
  // of running ones (they fail at once; the next job reconnects).
  size_t abort(const std::string& why);
  LinkStats stats();

 private:
  ValkeyLink(NodeAddress addr, int connectTimeoutMs, size_t pipelineBytes)
      : addr_(std::move(addr)), connectTimeoutMs_(connectTimeoutMs), pipelineBytes_(pipelineBytes) {}
  void loop(size_t index);
  // Runs one part; false + *code/*message when it failed.
  bool run(RespConn& conn, const JobPart& part, Clock::time_point deadline, std::string* code, std::string* message);
  bool ensureOpen(RespConn& conn, Clock::time_point deadline, std::string* code, std::string* message);
  bool writeSegments(RespConn& conn, const JobPart& part, Clock::time_point deadline, std::string* code,
                     std::string* message);
  bool writeManifest(RespConn& conn, ValkeyJob& job, std::string* code, std::string* message);
  bool readSegments(RespConn& conn, const JobPart& part, Clock::time_point deadline, std::string* code,
                    std::string* message);
  void finishPart(RespConn& conn, const JobPart& part, bool ok, std::string code, std::string message,
                  const Clock::time_point* started = nullptr);
  void fail(std::unique_ptr<ValkeyJob> job, const std::string& message);

  const NodeAddress addr_;
  const int connectTimeoutMs_;
  const size_t pipelineBytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<JobPart> queue_;
  std::vector<std::unique_ptr<RespConn>> conns_;
  bool closed_ = false;
  LinkStats stats_;
};

}  // namespace kvtier
