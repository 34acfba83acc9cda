// Fixed-size task queue (see thread-pool.h).
#include "thread-pool.h"

#include <algorithm>

namespace kvtier {

ThreadPool::ThreadPool(size_t n) {
  for (size_t i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::submit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void ThreadPool::loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

namespace {

ThreadPool& pool() {
  // Never destroyed: the threads end with the process, so process.exit()
  // during a copy cannot deadlock in a static destructor.
  static ThreadPool* instance = new ThreadPool(std::clamp<size_t>(std::thread::hardware_concurrency(), 2, 4));
  return *instance;
}

}  // namespace

size_t copyThreadCount() { return pool().size(); }
void submitCopyTask(std::function<void()> task) { pool().submit(std::move(task)); }

}  // namespace kvtier
