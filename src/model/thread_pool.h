// thread_pool.h: a fixed set of worker threads owned by a Session (never global).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace effort {

class ThreadPool {
 public:
  // num_threads counts the calling thread: 1 means no workers.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  // Runs fn(thread_index) once on each of the size() threads (the caller is thread 0) and
  // returns when all are done.
  void run_on_all(const std::function<void(int)>& fn);

  // Splits [0, n) into at most size() contiguous ranges whose boundaries are multiples of grain,
  // so that which thread computes an element never changes the element's value.
  // Runs on the calling thread alone when n <= grain.
  void parallel_for(std::size_t n, std::size_t grain,
                    const std::function<void(std::size_t begin, std::size_t end)>& fn);

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<unsigned> generation_{0};
  std::atomic<int> pending_{0};
  bool stopping_ = false;
};

}  // namespace effort
