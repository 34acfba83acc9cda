// Settles copy promises on the JS thread. One ThreadSafeFunction per addon
// instance, not one per batch: copy threads push finished batches onto a
// locked list and wake the JS thread at most once per drain, and the JS
// thread settles everything on the list in one callback. The function is
// ref'd only while batches are in flight, so an idle addon never keeps the
// process alive, and a pending copy always does. At environment teardown a
// cleanup hook waits until no copy thread can still touch the queue.
#pragma once
#include <napi.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <vector>

#include "copy.h"

namespace kvtier {

struct PendingCopy {
  Napi::Promise::Deferred deferred;
  Napi::ObjectReference keepBuffers;  // the Buffers stay alive until settled
  CopyError result;
  // What the promise resolves with (on the JS thread); undefined when empty.
  std::function<Napi::Value(Napi::Env)> value;
};

class CompletionQueue {
 public:
  explicit CompletionQueue(Napi::Env env);
  // JS thread: a batch is about to start.
  void started(Napi::Env env);
  // Any thread: the batch finished; `p` is settled and deleted on the JS thread.
  void finished(PendingCopy* p);
  // JS thread, environment teardown: blocks until every started batch has
  // called finished(); the promises themselves are dropped with the env.
  void waitForThreads();

 private:
  static void drain(Napi::Env env, Napi::Function, CompletionQueue* self);

  Napi::ThreadSafeFunction tsfn_;
  std::mutex mu_;
  std::vector<PendingCopy*> done_;
  bool wakePending_ = false;
  size_t inflight_ = 0;  // JS thread only: batches not yet settled
  size_t running_ = 0;   // under mu_: batches whose finished() has not returned
  std::condition_variable idle_;
};

}  // namespace kvtier
