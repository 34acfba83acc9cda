// The CPU copy threads: a fixed handful (2-4) of std::threads fed from one
// queue. Separate from libuv's pool so that a burst of copies never starves
// fs/dns work and vice versa. Started on first use, never joined (they end with the process).
// The disk tier runs its blocking file I/O on a ThreadPool of its own (sized
// by disk_io_threads), so a slow disk never holds up a gather or scatter.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kvtier {

class ThreadPool {
 public:
  explicit ThreadPool(size_t n);
  // Runs what is queued, then joins.
  ~ThreadPool();
  size_t size() const { return threads_.size(); }
  void submit(std::function<void()> task);

 private:
  void loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
};

size_t copyThreadCount();
void submitCopyTask(std::function<void()> task);

}  // namespace kvtier
