#ifdef QWEN3_WITH_CUDA

#include "parallel/peer_all_reduce.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <string>

#include "common/error.h"

namespace qwen3 {

namespace {

void CheckCuda(cudaError_t result, const std::string& what) {
  if (result != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so later calls do not report it again
    throw Error(ErrorCode::kDeviceFailed,
                "peer all-reduce: " + what + ": " + cudaGetErrorString(result));
  }
}

// Restores the calling thread's current device on the way out.
class DeviceRestorer {
 public:
  DeviceRestorer() { cudaGetDevice(&device_); }
  ~DeviceRestorer() { cudaSetDevice(device_); }
  DeviceRestorer(const DeviceRestorer&) = delete;
  DeviceRestorer& operator=(const DeviceRestorer&) = delete;

 private:
  int device_ = 0;
};

}  // namespace

std::unique_ptr<PeerAllReduce> PeerAllReduce::Create(const std::vector<int>& devices,
                                                     int64_t half_bytes, std::string* why,
                                                     uint64_t timeout_ns) {
  const int world = static_cast<int>(devices.size());
  if (world < 2 || world > kernels::kPeerMaxRanks) {
    *why = "the kernel takes 2 to " + std::to_string(kernels::kPeerMaxRanks) + " GPUs";
    return nullptr;
  }
  DeviceRestorer restore;
  for (int i = 0; i < world; ++i) {
    for (int j = 0; j < world; ++j) {
      if (i == j) continue;
      int ok = 0;
      CheckCuda(cudaDeviceCanAccessPeer(&ok, devices[i], devices[j]), "cudaDeviceCanAccessPeer");
      if (ok == 0) {
        *why = "cuda:" + std::to_string(devices[i]) +
               " cannot access the memory of cuda:" + std::to_string(devices[j]);
        return nullptr;
      }
    }
  }
  std::unique_ptr<PeerAllReduce> self(new PeerAllReduce());
  self->devices_ = devices;
  self->half_bytes_ = half_bytes;
  try {
    for (int i = 0; i < world; ++i) {
      CheckCuda(cudaSetDevice(devices[i]), "cudaSetDevice");
      for (int j = 0; j < world; ++j) {
        if (i == j) continue;
        const cudaError_t result = cudaDeviceEnablePeerAccess(devices[j], 0);
        if (result == cudaErrorPeerAccessAlreadyEnabled) {
          cudaGetLastError();
        } else {
          CheckCuda(result, "enabling peer access from cuda:" + std::to_string(devices[i]));
        }
      }
      void* staging = nullptr;
      CheckCuda(cudaMalloc(&staging, static_cast<size_t>(2 * half_bytes)), "staging buffer");
      self->staging_.push_back(staging);
      void* signals = nullptr;
      CheckCuda(cudaMalloc(&signals, sizeof(kernels::PeerSignals)), "signals");
      self->signals_.push_back(static_cast<kernels::PeerSignals*>(signals));
      void* mailboxes = nullptr;
      CheckCuda(cudaMalloc(&mailboxes, static_cast<size_t>(self->MailboxBytes())), "mailboxes");
      self->mailboxes_.push_back(mailboxes);
    }
    void* words = nullptr;
    CheckCuda(
        cudaHostAlloc(&words, 2 * sizeof(int32_t), cudaHostAllocMapped | cudaHostAllocPortable),
        "host-mapped words");
    self->words_ = static_cast<int32_t*>(words);
    void* device_words = nullptr;
    CheckCuda(cudaHostGetDevicePointer(&device_words, words, 0), "host-mapped words");
    for (int r = 0; r < world; ++r) {
      kernels::PeerGroup g;
      g.rank = r;
      g.world = world;
      g.half_bytes = half_bytes;
      g.timeout_ns = timeout_ns;
      for (int k = 0; k < world; ++k) {
        g.staging[k] = self->staging_[static_cast<size_t>(k)];
        g.signals[k] = self->signals_[static_cast<size_t>(k)];
        g.mailbox[k] = self->mailboxes_[static_cast<size_t>(k)];
      }
      g.mailbox_slot_bytes = kMailboxSlotBytes;
      g.abort_word = static_cast<const volatile int32_t*>(device_words);
      g.timed_out_word = static_cast<volatile int32_t*>(device_words) + 1;
      self->groups_.push_back(g);
    }
    self->Reset();
  } catch (...) {
    self->Free();
    throw;
  }
  return self;
}

PeerAllReduce::~PeerAllReduce() { Free(); }

void PeerAllReduce::Free() noexcept {
  DeviceRestorer restore;
  // Entry i of each list lives on devices_[i]; a failed Create may have filled some lists further.
  const auto free_each = [this](auto& buffers) {
    for (size_t i = 0; i < buffers.size(); ++i) {
      cudaSetDevice(devices_[i]);
      cudaFree(buffers[i]);
    }
    buffers.clear();
  };
  free_each(staging_);
  free_each(signals_);
  free_each(mailboxes_);
  if (words_ != nullptr) cudaFreeHost(words_);
  words_ = nullptr;
}

void PeerAllReduce::Abort() noexcept {
  if (words_ == nullptr) return;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  static_cast<volatile int32_t*>(words_)[0] = 1;
}

bool PeerAllReduce::timed_out() const noexcept {
  return words_ != nullptr && static_cast<volatile int32_t*>(words_)[1] != 0;
}

void PeerAllReduce::Reset() {
  DeviceRestorer restore;
  // Launches released by an abort may still be finishing (they write their epochs on the way
  // out), on streams that do not wait for the memset's stream: let every device drain first.
  for (size_t i = 0; i < signals_.size(); ++i) {
    CheckCuda(cudaSetDevice(devices_[i]), "cudaSetDevice");
    CheckCuda(cudaDeviceSynchronize(), "draining before zeroing the signals");
  }
  for (size_t i = 0; i < signals_.size(); ++i) {
    CheckCuda(cudaSetDevice(devices_[i]), "cudaSetDevice");
    CheckCuda(cudaMemset(signals_[i], 0, sizeof(kernels::PeerSignals)), "zeroing the signals");
    CheckCuda(kernels::EmptyPeerMailboxes(mailboxes_[i], MailboxBytes(), nullptr),
              "emptying the mailboxes");
    CheckCuda(cudaDeviceSynchronize(), "zeroing the signals");
  }
  volatile int32_t* words = words_;
  words[0] = 0;
  words[1] = 0;
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

}  // namespace qwen3

#endif  // QWEN3_WITH_CUDA
