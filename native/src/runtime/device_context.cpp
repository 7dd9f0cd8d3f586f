#include "runtime/device_context.h"

#include <ATen/Parallel.h>
#include <unistd.h>

#include <string>
#include <thread>

#ifdef QWEN3_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "common/error.h"

namespace qwen3 {

namespace {

// How long a rank waits for its GPU work to drain after its group was aborted before it declares
// the device failed.
[[maybe_unused]] constexpr std::chrono::seconds kDrainTimeout{30};

int64_t HostMemoryBytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page_size > 0 ? static_cast<int64_t>(pages) * page_size : 0;
}

}  // namespace

at::ScalarType ToScalarType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return at::kFloat;
    case DType::kBFloat16:
      return at::kBFloat16;
    case DType::kFloat16:
      return at::kHalf;
  }
  return at::kFloat;
}

DeviceContext::DeviceContext(const at::Device& device, int cpu_threads) {
#ifdef QWEN3_WITH_CUDA
  if (device.is_cuda()) {
    const auto index = static_cast<c10::DeviceIndex>(device.index());
    device_guard_.emplace(index);
    stream_guard_.emplace(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, index));
    return;
  }
#else
  (void)device;
#endif
  at::init_num_threads();
  if (cpu_threads > 0) at::set_num_threads(cpu_threads);
}

void WaitForDevice(const at::Device& device, CommunicatorGroup& group,
                   std::chrono::microseconds spin) {
#ifdef QWEN3_WITH_CUDA
  if (!device.is_cuda()) return;
  at::cuda::CUDAEvent done;
  done.record(c10::cuda::getCurrentCUDAStream(device.index()));
  std::optional<std::chrono::steady_clock::time_point> aborted_at;
  // Spinning sees a short batch's end within microseconds (a 50 us sleep overshoots by ~60 us on
  // Linux); a long batch's wait then sleeps between looks, and costs no core.
  const auto spin_until = std::chrono::steady_clock::now() + spin;
  bool spinning = true;
  int polls = 0;
  while (!done.query()) {
    if (group.aborted()) {
      const auto now = std::chrono::steady_clock::now();
      if (!aborted_at) aborted_at = now;
      if (now - *aborted_at > kDrainTimeout) {
        throw Error(ErrorCode::kDeviceFailed,
                    "cuda:" + std::to_string(device.index()) +
                        " did not finish its work after the tensor-parallel group was aborted");
      }
    }
    if (spinning && ++polls % 64 == 0) spinning = std::chrono::steady_clock::now() < spin_until;
    if (spinning) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
#else
  (void)device;
  (void)group;
  (void)spin;
#endif
}

void ReleaseCachedMemory(const at::Device& device) {
#ifdef QWEN3_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#else
  (void)device;
#endif
}

void DescribeDevice(const at::Device& device, DeviceInfo* info) {
  if (device.is_cpu()) {
    info->index = -1;
    info->name = "cpu";
    info->total_memory_bytes = HostMemoryBytes();
    return;
  }
#ifdef QWEN3_WITH_CUDA
  info->index = device.index();
  const cudaDeviceProp* prop = at::cuda::getDeviceProperties(device.index());
  info->name = prop->name;
  info->total_memory_bytes = static_cast<int64_t>(prop->totalGlobalMem);
  // Index 0 is the aggregate over both pools: every byte the caching allocator holds.
  info->used_memory_bytes =
      c10::cuda::CUDACachingAllocator::getDeviceStats(device.index()).reserved_bytes[0].current;
#endif
}

}  // namespace qwen3
