// What a rank thread does with its device, CUDA or CPU, behind one interface: binding the thread to
// it, waiting for its queued work, releasing cached memory, and describing it. CUDA-only code is
// guarded by QWEN3_WITH_CUDA here and in device_context.cpp.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <cstdint>
#include <optional>

#ifdef QWEN3_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#endif

#include "parallel/communicator.h"
#include "runtime/engine.h"

namespace qwen3 {

at::ScalarType ToScalarType(DType dtype);

// Binds the calling thread to a device for the thread's lifetime: on CUDA the current device and a
// stream of its own; on the CPU the intra-op thread count (`cpu_threads` > 0).
class DeviceContext {
 public:
  DeviceContext(const at::Device& device, int cpu_threads);

 private:
#ifdef QWEN3_WITH_CUDA
  std::optional<c10::cuda::CUDAGuard> device_guard_;
  std::optional<c10::cuda::CUDAStreamGuard> stream_guard_;
#endif
};

// Waits until the calling thread's CUDA stream has finished all queued work. A no-op on the CPU.
// Polls rather than blocks so that, if a peer aborts the group, this rank notices; the aborted
// collectives then finish and the stream drains, or the device is declared failed
// (Error(kDeviceFailed) after 30 s). Spins through the first `spin` of the wait
// (EngineOptions::device_spin_us), then sleeps 50 us between looks.
void WaitForDevice(const at::Device& device, CommunicatorGroup& group,
                   std::chrono::microseconds spin);

// Returns the caching allocator's unused blocks to the device (CUDA only).
void ReleaseCachedMemory(const at::Device& device);

// Fills `info`'s index, name, total memory and, on CUDA, the bytes the caching allocator holds.
void DescribeDevice(const at::Device& device, DeviceInfo* info);

}  // namespace qwen3
