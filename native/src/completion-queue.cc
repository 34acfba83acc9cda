// Batched promise settlement (see completion-queue.h).
#include "completion-queue.h"

#include <memory>

namespace kvtier {

CompletionQueue::CompletionQueue(Napi::Env env) {
  tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                        "kvtier-copy-done", 0, 1);
  tsfn_.Unref(env);
}

void CompletionQueue::started(Napi::Env env) {
  if (inflight_++ == 0) tsfn_.Ref(env);
  std::lock_guard<std::mutex> lock(mu_);
  ++running_;
}

void CompletionQueue::waitForThreads() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_.wait(lock, [this] { return running_ == 0; });
}

void CompletionQueue::finished(PendingCopy* p) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_.push_back(p);
    if (!wakePending_) wake = wakePending_ = true;
  }
  // Queue size 0 = unbounded, so this never blocks; it fails only while the
  // environment is being torn down, and then the pending copy is leaked on
  // purpose (its JS objects are going away with the environment).
  if (wake) tsfn_.NonBlockingCall(this, drain);
  std::lock_guard<std::mutex> lock(mu_);
  if (--running_ == 0) idle_.notify_all();
}

void CompletionQueue::drain(Napi::Env env, Napi::Function, CompletionQueue* self) {
  std::vector<PendingCopy*> batch;
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    batch.swap(self->done_);
    self->wakePending_ = false;
  }
  if (env == nullptr) return;
  for (PendingCopy* raw : batch) {
    std::unique_ptr<PendingCopy> p(raw);
    Napi::HandleScope scope(env);
    if (p->result.code.empty()) {
      p->deferred.Resolve(p->value ? p->value(env) : env.Undefined());
    } else {
      Napi::Error e = Napi::Error::New(env, p->result.message);
      e.Value().Set("code", Napi::String::New(env, p->result.code));
      p->deferred.Reject(e.Value());
    }
  }
  self->inflight_ -= batch.size();
  if (self->inflight_ == 0) self->tsfn_.Unref(env);
}

}  // namespace kvtier
