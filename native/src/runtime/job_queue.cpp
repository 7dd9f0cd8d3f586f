#include "runtime/job_queue.h"

#include <utility>

#include "common/sync.h"

namespace qwen3 {

void JobQueue::Push(JobPtr job) {
  std::lock_guard<std::mutex> lock(mu_);
  if (failure_) throw *failure_;
  if (closed_) throw Error(ErrorCode::kEngineDisposed, "the engine has been disposed");
  jobs_.push_back(std::move(job));
  UpdateReady();
  cv_.notify_one();
}

JobPtr JobQueue::Pop(std::chrono::microseconds spin) {
  SpinFor(spin, [&] { return ready_.load(std::memory_order_acquire); });
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !jobs_.empty() || closed_ || failure_.has_value(); });
  if (jobs_.empty()) return nullptr;
  JobPtr job = std::move(jobs_.front());
  jobs_.pop_front();
  UpdateReady();
  return job;
}

void JobQueue::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  UpdateReady();
  cv_.notify_all();
}

std::deque<JobPtr> JobQueue::Fail(const Error& error) {
  std::lock_guard<std::mutex> lock(mu_);
  failure_ = error;
  std::deque<JobPtr> jobs;
  jobs.swap(jobs_);
  UpdateReady();
  cv_.notify_all();
  return jobs;
}

void JobQueue::UpdateReady() {
  ready_.store(!jobs_.empty() || closed_ || failure_.has_value(), std::memory_order_release);
}

void JobSlot::Publish(JobPtr job) {
  std::lock_guard<std::mutex> lock(mu_);
  job_ = std::move(job);
  generation_.fetch_add(1, std::memory_order_release);
  cv_.notify_all();
}

JobPtr JobSlot::Wait(uint64_t* seen, std::chrono::microseconds spin) {
  SpinFor(spin, [&] { return generation_.load(std::memory_order_acquire) != *seen; });
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return generation_ != *seen; });
  *seen = generation_;
  return job_;
}

}  // namespace qwen3
