#include "runtime/job_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace qwen3 {
namespace {

using std::chrono::microseconds;

JobPtr MakeJob(int32_t token) {
  auto job = std::make_shared<Job>();
  job->batch.token_ids = {token};
  return job;
}

TEST(JobQueueTest, ServesJobsInOrder) {
  JobQueue sut;
  for (int32_t i = 0; i < 3; ++i) sut.Push(MakeJob(i));
  for (int32_t i = 0; i < 3; ++i) EXPECT_EQ(sut.Pop(microseconds(0))->batch.token_ids[0], i);
}

TEST(JobQueueTest, CloseServesWhatIsQueuedThenEnds) {
  JobQueue sut;
  sut.Push(MakeJob(7));
  sut.Close();
  try {
    sut.Push(MakeJob(8));
    FAIL() << "a closed queue took a job";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kEngineDisposed);
  }
  EXPECT_EQ(sut.Pop(microseconds(0))->batch.token_ids[0], 7);
  EXPECT_EQ(sut.Pop(microseconds(0)), nullptr);
  EXPECT_EQ(sut.Pop(microseconds(100)), nullptr);  // and keeps answering at once
}

TEST(JobQueueTest, FailHandsBackTheWaitingJobsAndRefusesNewOnes) {
  JobQueue sut;
  sut.Push(MakeJob(1));
  sut.Push(MakeJob(2));
  const auto waiting = sut.Fail(Error(ErrorCode::kDeviceFailed, "no replica"));
  ASSERT_EQ(waiting.size(), 2u);
  EXPECT_EQ(waiting[0]->batch.token_ids[0], 1);
  EXPECT_EQ(waiting[1]->batch.token_ids[0], 2);
  try {
    sut.Push(MakeJob(3));
    FAIL() << "a failed queue took a job";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDeviceFailed);
    EXPECT_STREQ(e.what(), "no replica");
  }
  EXPECT_EQ(sut.Pop(microseconds(0)), nullptr);
}

// A sleeping and a spinning consumer both wake for a job pushed from another thread, and each job
// reaches exactly one of them.
TEST(JobQueueTest, WakesWaitingConsumersWhetherTheySpinOrSleep) {
  for (const auto spin : {microseconds(0), microseconds(20'000)}) {
    JobQueue sut;
    std::vector<int32_t> got[2];
    std::thread consumers[2];
    for (int c = 0; c < 2; ++c) {
      consumers[c] = std::thread([&, c] {
        while (JobPtr job = sut.Pop(spin)) got[c].push_back(job->batch.token_ids[0]);
      });
    }
    for (int32_t i = 0; i < 100; ++i) sut.Push(MakeJob(i));
    sut.Close();
    for (auto& t : consumers) t.join();
    std::vector<int32_t> all(got[0]);
    all.insert(all.end(), got[1].begin(), got[1].end());
    std::sort(all.begin(), all.end());
    ASSERT_EQ(all.size(), 100u) << "spin " << spin.count();
    for (int32_t i = 0; i < 100; ++i) EXPECT_EQ(all[static_cast<size_t>(i)], i);
  }
}

TEST(JobSlotTest, EveryPeerSeesEveryPublishedJobThenTheStop) {
  // Three spinning peers and a yielding publisher on a 2-core machine: few jobs, a short spin.
  for (const auto spin : {microseconds(0), microseconds(2'000)}) {
    JobSlot sut;
    constexpr int kPeers = 3;
    constexpr int32_t kJobs = 20;
    std::vector<int32_t> seen_by[kPeers];
    std::vector<std::thread> peers;
    std::atomic<int> done{0};
    for (int p = 0; p < kPeers; ++p) {
      peers.emplace_back([&, p] {
        uint64_t seen = 0;
        while (JobPtr job = sut.Wait(&seen, spin)) {
          seen_by[p].push_back(job->batch.token_ids[0]);
          done.fetch_add(1);
        }
      });
    }
    for (int32_t i = 0; i < kJobs; ++i) {
      sut.Publish(MakeJob(i));
      // As rank 0 does (its peers take part in the job's barrier): publish the next job only
      // after every peer took this one.
      while (done.load() < (i + 1) * kPeers) std::this_thread::yield();
    }
    sut.Publish(nullptr);
    for (auto& t : peers) t.join();
    for (int p = 0; p < kPeers; ++p) {
      ASSERT_EQ(seen_by[p].size(), static_cast<size_t>(kJobs)) << "peer " << p;
      for (int32_t i = 0; i < kJobs; ++i) EXPECT_EQ(seen_by[p][static_cast<size_t>(i)], i);
    }
  }
}

}  // namespace
}  // namespace qwen3
