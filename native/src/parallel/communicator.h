// Collectives for tensor parallelism, and the only way model code talks to other ranks.
//
// A CommunicatorGroup owns the communicators of one tensor-parallel group (one per rank). Each
// rank's thread uses only its own Communicator; any thread may Abort() the group, which makes every
// pending and later collective of every rank throw CommAbortedError instead of waiting for a rank
// that will never arrive. Once every rank has left its collectives, Rebuild() makes the group
// usable again.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

namespace qwen3 {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const noexcept = 0;
  virtual int world_size() const noexcept = 0;
  // Sums `tensor` over all ranks, in place; every rank ends with the same values. The tensor must
  // be contiguous and live on this rank's device. On CUDA the reduction is enqueued on the current
  // stream and the call returns before it completes.
  virtual void AllReduceSum(at::Tensor& tensor) = 0;
  // Returns once every rank has called Barrier (on CUDA: once this rank's stream got there).
  virtual void Barrier() = 0;
};

class CommunicatorGroup {
 public:
  virtual ~CommunicatorGroup() = default;
  virtual int world_size() const noexcept = 0;
  virtual Communicator& rank(int r) = 0;
  // Thread-safe and idempotent.
  virtual void Abort() noexcept = 0;
  virtual bool aborted() const noexcept = 0;
  // Call only while no rank is inside a collective. Throws on failure (the group stays aborted).
  virtual void Rebuild() = 0;
};

// World size 1: collectives are no-ops.
std::unique_ptr<CommunicatorGroup> MakeSoloGroup();

// Ranks are threads of this process on the CPU (shared buffers and a barrier).
std::unique_ptr<CommunicatorGroup> MakeInProcessGroup(int world_size);

#ifdef QWEN3_WITH_NCCL
// One NCCL communicator per CUDA device, created together by this process (ncclCommInitAll) and
// driven by one thread per device.
std::unique_ptr<CommunicatorGroup> MakeNcclGroup(const std::vector<int>& device_ids);
#endif

}  // namespace qwen3
