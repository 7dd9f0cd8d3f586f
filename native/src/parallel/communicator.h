// Collectives for tensor parallelism, and the only way model code talks to other ranks.
//
// A CommunicatorGroup owns the communicators of one tensor-parallel group (one per rank). Each
// rank's thread uses only its own Communicator; any thread may Abort() the group, which makes every
// pending and later collective of every rank throw CommAbortedError instead of waiting for a rank
// that will never arrive. Once every rank has left its collectives, Rebuild() makes the group
// usable again.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
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
  // Sums `partial` (contiguous, any floating dtype) over all ranks and returns the sum in fp32, so
  // bf16 partials round once (on the caller's side, when it rounds the sum). The default converts
  // to fp32 and calls AllReduceSum; a communicator may do both in one step. An fp32 `partial` may
  // be summed in place: the caller must not read it afterwards.
  virtual at::Tensor AllReduceSumAsFloat(const at::Tensor& partial);
  // The all-reduce of a row-parallel layer's partial sums fused with the residual add and RMSNorm
  // after it: residual (fp32 [rows, width], contiguous) += the sum of every rank's `partial`
  // ([rows, width], contiguous), and the result is RMSNorm(residual) * weight (fp32 [width]) in
  // `out`, as AddRmsNorm(residual, AllReduceSumAsFloat(partial), weight, eps, out) computes it.
  // Returns an undefined tensor, having done nothing, where this communicator does not fuse them
  // (the default); every rank then gets the same answer for the same shapes.
  virtual at::Tensor AllReduceAddRmsNorm(const at::Tensor& partial, at::Tensor& residual,
                                         const at::Tensor& weight, double eps, at::ScalarType out);
  // Returns once every rank has called Barrier (on CUDA: once this rank's stream got there).
  virtual void Barrier() = 0;
  // The largest all-reduce, in bytes of the tensor passed in, that may be captured into a CUDA
  // graph: every rank's graph then replays with no host step between the ranks (0: none).
  virtual int64_t capturable_bytes() const noexcept { return 0; }
  // Throws if a collective that ran on the device before the caller's last synchronisation
  // failed there (a peer never arrived). For errors that only the device sees.
  virtual void ThrowIfCollectivesFailed() {}
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
// driven by one thread per device. With `peer_all_reduce`, and when every pair of the devices has
// peer access, small all-reduces use the one-shot peer kernel (parallel/peer_all_reduce.h) and may
// be captured into CUDA graphs. *note (if given) says which path all-reduces take, and why.
// peer_timeout_ns: how long the peer kernel waits for a peer (0: its default, 30 s).
std::unique_ptr<CommunicatorGroup> MakeNcclGroup(const std::vector<int>& device_ids,
                                                 bool peer_all_reduce = true,
                                                 std::string* note = nullptr,
                                                 uint64_t peer_timeout_ns = 0);
#endif

}  // namespace qwen3
