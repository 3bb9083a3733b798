// session_pool.h: the server's sessions on one shared Model. A request takes a free session
// (a lease) and gives it back when its answer is done; while every session is busy, up to
// `queue_limit` requests wait their turn, and any more are turned away at once.
#pragma once
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "effort/effort.h"

namespace effort::server {

class SessionPool {
 public:
  SessionPool(const Model& model, const SessionOptions& options, int parallel, int queue_limit);

  // A session held by one request; returned to the pool when destroyed.
  class Lease {
   public:
    Lease(Lease&& other) noexcept : pool_(std::exchange(other.pool_, nullptr)), index_(other.index_) {}
    Lease(const Lease&) = delete;
    ~Lease();
    Session& session() const;

   private:
    friend class SessionPool;
    Lease(SessionPool* pool, int index) : pool_(pool), index_(index) {}
    SessionPool* pool_;
    int index_;
  };

  enum class Refusal { queue_full, shutting_down };
  // A free session, after waiting in the queue if needed; the refusal when the queue is full or
  // the server is stopping.
  struct Acquired {
    std::optional<Lease> lease;
    Refusal refusal = Refusal::queue_full;
  };
  Acquired acquire();
  // Wakes every waiting request with Refusal::shutting_down and refuses new ones.
  void shut_down();

  struct Status {
    int idle = 0, busy = 0, queued = 0;
  };
  Status status() const;
  // Positions each session's KV cache holds (the same for all).
  int context_length() const { return sessions_.front().context_length(); }

 private:
  void release(int index);

  mutable std::mutex mutex_;
  std::condition_variable freed_;
  std::vector<Session> sessions_;
  std::vector<int> free_;  // indices into sessions_
  int queue_limit_;
  int queued_ = 0;
  bool shutting_down_ = false;
};

}  // namespace effort::server
