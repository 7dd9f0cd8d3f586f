// NCCL collectives for the GPUs of one tensor-parallel group, all driven by this process: the
// communicators are created together (ncclCommInitAll) and each is then used only by its rank's
// thread, on that thread's current stream. Abort() may come from any thread (the rank that
// failed): it aborts every communicator, which cancels collectives still waiting on the GPU, and
// makes later calls throw CommAbortedError until Rebuild().
#ifdef QWEN3_WITH_NCCL

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <nccl.h>

#include <atomic>
#include <mutex>
#include <string>

#include "common/error.h"
#include "parallel/communicator.h"

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

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(int rank, int world, int device) : rank_(rank), world_(world), device_(device) {}

  int rank() const noexcept override { return rank_; }
  int world_size() const noexcept override { return world_; }

  void AllReduceSum(at::Tensor& tensor) override {
    TORCH_CHECK(tensor.is_cuda() && tensor.device().index() == device_ && tensor.is_contiguous(),
                "NCCL all-reduce needs a contiguous tensor on cuda:", device_);
    const ncclDataType_t type = ToNcclType(tensor.scalar_type());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device_).stream();
    std::lock_guard<std::mutex> lock(mu_);
    if (comm_ == nullptr) throw CommAbortedError("NCCL communicator aborted: another rank failed");
    CheckNccl(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(),
                            static_cast<size_t>(tensor.numel()), type, ncclSum, comm_, stream),
              "all-reduce");
  }

  void Barrier() override {
    at::Tensor token =
        at::ones({1}, at::TensorOptions()
                          .dtype(at::kFloat)
                          .device(at::kCUDA, static_cast<c10::DeviceIndex>(device_)));
    AllReduceSum(token);
    c10::cuda::getCurrentCUDAStream(device_).synchronize();
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
  std::mutex mu_;
  ncclComm_t comm_ = nullptr;
};

class NcclGroup final : public CommunicatorGroup {
 public:
  explicit NcclGroup(std::vector<int> devices) : devices_(std::move(devices)) {
    const int world = static_cast<int>(devices_.size());
    for (int r = 0; r < world; ++r) {
      comms_.push_back(std::make_unique<NcclCommunicator>(r, world, devices_[r]));
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

  std::vector<int> devices_;
  std::vector<std::unique_ptr<NcclCommunicator>> comms_;
  std::mutex abort_mu_;
  std::atomic<bool> aborted_{false};
};

}  // namespace

std::unique_ptr<CommunicatorGroup> MakeNcclGroup(const std::vector<int>& device_ids) {
  return std::make_unique<NcclGroup>(device_ids);
}

}  // namespace qwen3

#endif  // QWEN3_WITH_NCCL
