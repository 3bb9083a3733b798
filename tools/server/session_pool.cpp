// session_pool.cpp: a mutex and a condition variable around the free list.
#include "session_pool.h"

namespace effort::server {

SessionPool::SessionPool(const Model& model, const SessionOptions& options, int parallel, int queue_limit)
    : queue_limit_(queue_limit) {
  for (int i = 0; i < parallel; ++i) {
    sessions_.push_back(model.new_session(options));
    free_.push_back(parallel - 1 - i);  // taken from the back: session 0 first
  }
}

SessionPool::Lease::~Lease() {
  if (pool_) pool_->release(index_);
}

Session& SessionPool::Lease::session() const { return pool_->sessions_[std::size_t(index_)]; }

SessionPool::Acquired SessionPool::acquire() {
  std::unique_lock lock(mutex_);
  if (shutting_down_) return {std::nullopt, Refusal::shutting_down};
  if (free_.empty()) {
    if (queued_ >= queue_limit_) return {std::nullopt, Refusal::queue_full};
    ++queued_;
    freed_.wait(lock, [&] { return !free_.empty() || shutting_down_; });
    --queued_;
    if (shutting_down_) return {std::nullopt, Refusal::shutting_down};
  }
  const int index = free_.back();
  free_.pop_back();
  return {Lease(this, index), Refusal::queue_full};
}

void SessionPool::release(int index) {
  {
    std::lock_guard lock(mutex_);
    free_.push_back(index);
  }
  freed_.notify_one();
}

void SessionPool::shut_down() {
  {
    std::lock_guard lock(mutex_);
    shutting_down_ = true;
  }
  freed_.notify_all();
}

SessionPool::Status SessionPool::status() const {
  std::lock_guard lock(mutex_);
  return {int(free_.size()), int(sessions_.size() - free_.size()), queued_};
}

}  // namespace effort::server
