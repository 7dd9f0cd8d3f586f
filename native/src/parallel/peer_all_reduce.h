// The host side of the one-shot peer all-reduce (kernels/peer_all_reduce.h) for the GPUs of one
// tensor-parallel group: peer access between every pair, each rank's staging buffer and signals,
// and the host-mapped abort and timed-out words. The NCCL group owns one and sends the messages
// that fit through it; NCCL takes the rest. CUDA builds only.
#pragma once

#ifdef QWEN3_WITH_CUDA

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/peer_all_reduce.h"

namespace qwen3 {

class PeerAllReduce {
 public:
  // Enables peer access between every pair of `devices` and allocates each rank's buffers
  // (2 x half_bytes of staging, and the fused kernel's mailboxes: kPeerMailboxes x world x
  // kMailboxSlotBytes). Returns nullptr and says why in *why when some pair of devices
  // cannot reach each other's memory (then NCCL carries every all-reduce). Throws on CUDA errors.
  // timeout_ns: how long a launch waits for a peer before it gives up (tests shorten it).
  static std::unique_ptr<PeerAllReduce> Create(const std::vector<int>& devices, int64_t half_bytes,
                                               std::string* why,
                                               uint64_t timeout_ns = kernels::kPeerTimeoutNs);
  ~PeerAllReduce();
  PeerAllReduce(const PeerAllReduce&) = delete;
  PeerAllReduce& operator=(const PeerAllReduce&) = delete;

  const kernels::PeerGroup& group(int rank) const { return groups_.at(static_cast<size_t>(rank)); }
  int64_t half_bytes() const noexcept { return half_bytes_; }

  // Makes every waiting and later launch give up (results undefined) until Reset(). Thread-safe.
  void Abort() noexcept;
  // Whether a launch gave up after waiting its timeout for a peer.
  bool timed_out() const noexcept;
  // A mailbox slot holds any message the fused kernel takes: kPeerFusedMaxRows rows of up to
  // 5461 fp32 or 10922 bf16 values (Qwen3-Embedding-8B's hidden size is 4096).
  static constexpr int64_t kMailboxSlotBytes = int64_t{1} << 20;

  // Zeroes every rank's signals, empties its mailboxes and clears the abort and timed-out words.
  // Call only while no launch is in flight on any rank (after an abort, once every rank's stream
  // has drained).
  void Reset();

 private:
  PeerAllReduce() = default;
  void Free() noexcept;
  int64_t MailboxBytes() const noexcept {
    return kernels::kPeerMailboxes * static_cast<int64_t>(devices_.size()) * kMailboxSlotBytes;
  }

  std::vector<int> devices_;
  int64_t half_bytes_ = 0;
  std::vector<void*> staging_;
  std::vector<kernels::PeerSignals*> signals_;
  std::vector<void*> mailboxes_;
  int32_t* words_ = nullptr;  // host-mapped: [0] abort, [1] timed out
  std::vector<kernels::PeerGroup> groups_;
};

}  // namespace qwen3

#endif  // QWEN3_WITH_CUDA
