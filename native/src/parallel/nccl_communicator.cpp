// NCCL collectives for the GPUs of one tensor-parallel group, all driven by this process: the
// communicators are created together (ncclCommInitAll) and each is then used only by its rank's
// thread, on that thread's current stream. Messages that fit the peer all-reduce's staging buffer
// (every message of a short query) go through that one kernel instead (parallel/peer_all_reduce.h),
// which a CUDA graph may capture; NCCL takes the rest and is never captured. Abort() may come from
// any thread (the rank that failed): it releases peer kernels still waiting, aborts every NCCL
// communicator, which cancels collectives still waiting on the GPU, and makes later calls throw
// CommAbortedError until Rebuild().
#ifdef QWEN3_WITH_NCCL

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <nccl.h>

#include <atomic>
#include <mutex>
#include <string>

#include "common/error.h"
#include "kernels/aten_types.h"
#include "parallel/communicator.h"
#include "parallel/peer_all_reduce.h"

namespace qwen3 {

namespace {

void CheckNccl(ncclResult_t result, const char* what) {
  if (result != ncclSuccess) {
    throw Error(ErrorCode::kDeviceFailed,
                std::string("NCCL ") + what + " failed: " + ncclGetErrorString(result));
  }
}

ncclDataType_t ToNcclType(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return ncclFloat32;
    case at::kHalf:
      return ncclFloat16;
    case at::kBFloat16:
      return ncclBfloat16;
    default:
      throw Error(ErrorCode::kInternal, "all-reduce of an unsupported dtype");
  }
}

// `t` where it is 16-byte aligned, else a fresh copy of it (the caching allocator's blocks are
// 512-byte aligned). The peer kernels need 16-byte vectors, and whether a tensor is aligned can
// differ between ranks (a view on one, a fresh tensor on another); if that chose between the peer
// kernel and NCCL, the ranks would wait for each other in different collectives until the peer
// timeout. So misaligned tensors are copied, and the choice depends on shapes alone.
at::Tensor Aligned(const at::Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 ? t : t.clone();
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(int rank, int world, int device, const PeerAllReduce* peer)
      : rank_(rank), world_(world), device_(device), peer_(peer) {}

  int rank() const noexcept override { return rank_; }
  int world_size() const noexcept override { return world_; }

  void AllReduceSum(at::Tensor& tensor) override {
    CheckTensor(tensor);
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device_).stream();
    // The peer kernel writes fp32, so only an fp32 tensor can be summed by it in place.
    if (tensor.scalar_type() == at::kFloat) {
      at::Tensor input = PeerInput(tensor);
      if (input.defined()) {
        LaunchPeer(input, input, stream);
        if (!input.is_same(tensor)) tensor.copy_(input);
        return;
      }
    }
    const ncclDataType_t type = ToNcclType(tensor.scalar_type());
    RefuseCapture(stream);
    std::lock_guard<std::mutex> lock(mu_);
    if (comm_ == nullptr) throw CommAbortedError("NCCL communicator aborted: another rank failed");
    CheckNccl(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(),
                            static_cast<size_t>(tensor.numel()), type, ncclSum, comm_, stream),
              "all-reduce");
  }

  at::Tensor AllReduceSumAsFloat(const at::Tensor& partial) override {
    CheckTensor(partial);
    const at::Tensor input = PeerInput(partial);
    if (!input.defined()) return Communicator::AllReduceSumAsFloat(partial);
    at::Tensor sum = at::empty(partial.sizes(), partial.options().dtype(at::kFloat));
    LaunchPeer(input, sum, c10::cuda::getCurrentCUDAStream(device_).stream());
    return sum;
  }

  int64_t capturable_bytes() const noexcept override {
    return peer_ != nullptr ? peer_->half_bytes() : 0;
  }

  void ThrowIfCollectivesFailed() override {
    if (peer_ != nullptr && peer_->timed_out()) {
      const uint64_t ms = peer_->group(rank_).timeout_ns / 1000000;
      throw Error(
          ErrorCode::kDeviceFailed,
          "an all-reduce on cuda:" + std::to_string(device_) + " waited more than " +
              (ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms") +
              " for a peer GPU that never arrived");
    }
  }

  void Barrier() override {
    at::Tensor token =
        at::ones({1}, at::TensorOptions()
                          .dtype(at::kFloat)
                          .device(at::kCUDA, static_cast<c10::DeviceIndex>(device_)));
    AllReduceSum(token);
    c10::cuda::getCurrentCUDAStream(device_).synchronize();
  }

  void CheckTensor(const at::Tensor& tensor) const {
    TORCH_CHECK(tensor.is_cuda() && tensor.device().index() == device_ && tensor.is_contiguous(),
                "all-reduce needs a contiguous tensor on cuda:", device_);
  }

  // What the peer kernel sums for `input` (Aligned(input)) where it takes the message: the kernel
  // exists and the message fits a staging half. Otherwise an undefined tensor: NCCL takes it. The
  // decision depends on the size alone, so every rank takes the same path.
  at::Tensor PeerInput(const at::Tensor& input) const {
    if (peer_ == nullptr) return {};
    at::Tensor aligned = Aligned(input);
    return kernels::PeerAllReduceFits(peer_->group(rank_), aligned.data_ptr(),
                                      kernels::ElementTypeOf(aligned.scalar_type()),
                                      aligned.numel())
               ? aligned
               : at::Tensor();
  }

  // Sums `input` into `out` (fp32) with the peer kernel; `input` comes from PeerInput.
  void LaunchPeer(const at::Tensor& input, at::Tensor& out, cudaStream_t stream) {
    ThrowIfAborted();
    CheckLaunch(kernels::PeerAllReduceToFloat(peer_->group(rank_), input.data_ptr(),
                                              kernels::ElementTypeOf(input.scalar_type()),
                                              out.data_ptr<float>(), input.numel(), stream));
  }

  at::Tensor AllReduceAddRmsNorm(const at::Tensor& partial, at::Tensor& residual,
                                 const at::Tensor& weight, double eps,
                                 at::ScalarType out_dtype) override {
    CheckTensor(partial);
    if (peer_ == nullptr || partial.dim() != 2 || !residual.is_contiguous() ||
        residual.scalar_type() != at::kFloat || residual.sizes() != partial.sizes() ||
        residual.device() != partial.device() || weight.scalar_type() != at::kFloat ||
        !weight.is_contiguous() || weight.device() != partial.device() ||
        weight.numel() != partial.size(1)) {
      return {};
    }
    const kernels::ElementType type = kernels::ElementTypeOf(partial.scalar_type());
    const kernels::PeerGroup& group = peer_->group(rank_);
    const at::Tensor input = Aligned(partial);
    const at::Tensor norm = Aligned(weight);
    at::Tensor stream_rows = Aligned(residual);  // written back below when it is a copy
    if (!kernels::PeerAllReduceAddRmsNormFits(group, input.data_ptr(), type,
                                              stream_rows.data_ptr<float>(), norm.data_ptr<float>(),
                                              partial.size(0), partial.size(1))) {
      return {};
    }
    at::Tensor out = at::empty(partial.sizes(), partial.options().dtype(out_dtype));
    ThrowIfAborted();
    CheckLaunch(kernels::PeerAllReduceAddRmsNorm(
        group, input.data_ptr(), type, stream_rows.data_ptr<float>(), norm.data_ptr<float>(),
        static_cast<float>(eps), out.data_ptr(), kernels::ElementTypeOf(out_dtype), partial.size(0),
        partial.size(1), c10::cuda::getCurrentCUDAStream(device_).stream()));
    if (!stream_rows.is_same(residual)) residual.copy_(stream_rows);
    return out;
  }

  void ThrowIfAborted() {
    std::lock_guard<std::mutex> lock(mu_);
    if (comm_ == nullptr) throw CommAbortedError("all-reduce aborted: another rank failed");
  }

  static void CheckLaunch(cudaError_t result) {
    if (result != cudaSuccess) {
      throw Error(ErrorCode::kDeviceFailed,
                  std::string("peer all-reduce launch failed: ") + cudaGetErrorString(result));
    }
  }

  // NCCL inside a CUDA graph would make ncclCommAbort wait for the graph's destruction, which the
  // failure protocol cannot wait for (model/cuda_graphs.h): a capture must not reach NCCL.
  static void RefuseCapture(cudaStream_t stream) {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &status) == cudaSuccess &&
        status == cudaStreamCaptureStatusNone) {
      return;
    }
    throw Error(ErrorCode::kInternal,
                "an all-reduce too large for the peer kernel was captured into a CUDA graph");
  }

  void Set(ncclComm_t comm) {
    std::lock_guard<std::mutex> lock(mu_);
    comm_ = comm;
  }

  // Detaches the communicator (nullptr if already gone); later collectives throw.
  ncclComm_t Take() {
    std::lock_guard<std::mutex> lock(mu_);
    ncclComm_t comm = comm_;
    comm_ = nullptr;
    return comm;
  }

 private:
  const int rank_;
  const int world_;
  const int device_;
  const PeerAllReduce* const peer_;  // owned by the group; null when NCCL carries everything
  std::mutex mu_;
  ncclComm_t comm_ = nullptr;
};

class NcclGroup final : public CommunicatorGroup {
 public:
  NcclGroup(std::vector<int> devices, bool peer, std::string* note, uint64_t peer_timeout_ns)
      : devices_(std::move(devices)) {
    const int world = static_cast<int>(devices_.size());
    std::string why = "turned off";
    if (peer) {
      peer_ =
          PeerAllReduce::Create(devices_, kPeerHalfBytes, &why,
                                peer_timeout_ns > 0 ? peer_timeout_ns : kernels::kPeerTimeoutNs);
    }
    if (note != nullptr) {
      *note = peer_ ? "small all-reduces go through the peer kernel, larger ones through NCCL"
                    : "every all-reduce goes through NCCL (peer kernel: " + why + ")";
    }
    for (int r = 0; r < world; ++r) {
      comms_.push_back(std::make_unique<NcclCommunicator>(r, world, devices_[r], peer_.get()));
    }
    Create();
  }

  ~NcclGroup() override {
    std::vector<ncclComm_t> comms;
    for (auto& c : comms_) comms.push_back(c->Take());
      // Finalize together (one thread drives the whole clique), then free.
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 14, 0)
    ncclGroupStart();
    for (ncclComm_t c : comms) {
      if (c != nullptr) ncclCommFinalize(c);
    }
    ncclGroupEnd();
#endif
    for (ncclComm_t c : comms) {
      if (c != nullptr) ncclCommDestroy(c);
    }
  }

  int world_size() const noexcept override { return static_cast<int>(devices_.size()); }
  Communicator& rank(int r) override { return *comms_.at(static_cast<size_t>(r)); }

  void Abort() noexcept override {
    std::lock_guard<std::mutex> lock(abort_mu_);
    if (aborted_.exchange(true)) return;
    if (peer_) peer_->Abort();
    for (auto& c : comms_) {
      ncclComm_t comm = c->Take();
      if (comm != nullptr) ncclCommAbort(comm);
    }
  }

  bool aborted() const noexcept override { return aborted_.load(); }

  void Rebuild() override {
    std::lock_guard<std::mutex> lock(abort_mu_);
    for (auto& c : comms_) {
      ncclComm_t comm = c->Take();
      if (comm != nullptr) ncclCommAbort(comm);
    }
    Create();
    if (peer_) peer_->Reset();
    aborted_.store(false);
  }

 private:
  void Create() {
    const int world = static_cast<int>(devices_.size());
    std::vector<ncclComm_t> comms(static_cast<size_t>(world), nullptr);
    CheckNccl(ncclCommInitAll(comms.data(), world, devices_.data()), "communicator init");
    try {
      WarmUp(comms);
    } catch (...) {
      for (ncclComm_t c : comms) ncclCommAbort(c);
      throw;
    }
    for (int r = 0; r < world; ++r) {
      comms_[static_cast<size_t>(r)]->Set(comms[static_cast<size_t>(r)]);
    }
  }

  // One all-reduce over every rank from this thread, so connections are set up now and not in
  // the middle of a batch (where setup could block a rank while a peer is failing).
  void WarmUp(const std::vector<ncclComm_t>& comms) {
    const int world = static_cast<int>(devices_.size());
    std::vector<at::Tensor> buffers;
    for (int r = 0; r < world; ++r) {
      const auto device = static_cast<c10::DeviceIndex>(devices_[static_cast<size_t>(r)]);
      c10::cuda::CUDAGuard guard(device);
      buffers.push_back(
          at::ones({1024}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, device)));
    }
    CheckNccl(ncclGroupStart(), "group start");
    for (int r = 0; r < world; ++r) {
      const auto device = static_cast<c10::DeviceIndex>(devices_[static_cast<size_t>(r)]);
      at::Tensor& b = buffers[static_cast<size_t>(r)];
      const ncclResult_t result = ncclAllReduce(
          b.data_ptr(), b.data_ptr(), static_cast<size_t>(b.numel()), ncclFloat32, ncclSum,
          comms[static_cast<size_t>(r)], c10::cuda::getCurrentCUDAStream(device).stream());
      if (result != ncclSuccess) {
        ncclGroupEnd();
        CheckNccl(result, "warm-up all-reduce");
      }
    }
    CheckNccl(ncclGroupEnd(), "warm-up all-reduce");
    for (int r = 0; r < world; ++r) {
      const auto device = static_cast<c10::DeviceIndex>(devices_[static_cast<size_t>(r)]);
      c10::cuda::CUDAGuard guard(device);
      const float value = buffers[static_cast<size_t>(r)][0].item<float>();
      if (value != static_cast<float>(world)) {
        throw Error(ErrorCode::kDeviceFailed, "NCCL warm-up all-reduce returned " +
                                                  std::to_string(value) + " instead of " +
                                                  std::to_string(world));
      }
    }
  }

  // Staging per rank for one message: 8 MiB holds the partial sums of 1638 tokens of a bf16
  // 4B model (hidden 2560), more than the largest CUDA graph bucket.
  static constexpr int64_t kPeerHalfBytes = int64_t{8} << 20;

  std::vector<int> devices_;
  std::unique_ptr<PeerAllReduce> peer_;  // before comms_, which point into it
  std::vector<std::unique_ptr<NcclCommunicator>> comms_;
  std::mutex abort_mu_;
  std::atomic<bool> aborted_{false};
};

}  // namespace

std::unique_ptr<CommunicatorGroup> MakeNcclGroup(const std::vector<int>& device_ids,
                                                 bool peer_all_reduce, std::string* note,
                                                 uint64_t peer_timeout_ns) {
  return std::make_unique<NcclGroup>(device_ids, peer_all_reduce, note, peer_timeout_ns);
}

}  // namespace qwen3

#endif  // QWEN3_WITH_NCCL
