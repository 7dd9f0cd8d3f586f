// Build and device facts for the addon's module-level functions, and the NCCL self-check.
#include <ATen/ATen.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

#ifdef QWEN3_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

#include "common/sync.h"
#include "parallel/communicator.h"
#include "runtime/engine.h"

namespace qwen3 {

BuildInfo GetBuildInfo() {
  BuildInfo info;
  info.torch_version = TORCH_VERSION;
#ifdef QWEN3_WITH_CUDA
  info.cuda = true;
  info.flash_attention = true;  // used on sm80+ GPUs for bfloat16/float16
#endif
#ifdef QWEN3_WITH_NCCL
  info.nccl = true;
#endif
  return info;
}

std::vector<CudaDeviceInfo> ListCudaDevices() {
  std::vector<CudaDeviceInfo> devices;
#ifdef QWEN3_WITH_CUDA
  const int count = c10::cuda::device_count();
  for (int i = 0; i < count; ++i) {
    CudaDeviceInfo d;
    d.index = i;
    const cudaDeviceProp* prop = at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(i));
    d.name = prop->name;
    d.total_memory_bytes = static_cast<int64_t>(prop->totalGlobalMem);
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(i));
    size_t free_bytes = 0;
    size_t total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      d.free_memory_bytes = static_cast<int64_t>(free_bytes);
    } else {
      cudaGetLastError();  // clear the error; report no free memory
    }
    devices.push_back(std::move(d));
  }
#endif
  return devices;
}

AllReduceCheckResult RunAllReduceCheck(const std::vector<int>& device_ids) {
#ifdef QWEN3_WITH_NCCL
  if (device_ids.empty()) ThrowInvalidArgument("deviceIds is empty");
  const int count = c10::cuda::device_count();
  std::set<int> unique;
  for (int id : device_ids) {
    if (id < 0 || id >= count) {
      ThrowInvalidArgument("deviceIds has " + std::to_string(id) + " but " + std::to_string(count) +
                           " CUDA device(s) are visible");
    }
    if (!unique.insert(id).second) ThrowInvalidArgument("deviceIds has duplicates");
  }
  constexpr int64_t kElements = int64_t{8} << 20;  // 32 MiB of fp32 per device
  const int world = static_cast<int>(device_ids.size());
  std::unique_ptr<CommunicatorGroup> group = MakeNcclGroup(device_ids);
  Barrier start(world);
  std::vector<double> ms(static_cast<size_t>(world), 0);
  std::vector<bool> correct(static_cast<size_t>(world), false);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      const auto device = static_cast<c10::DeviceIndex>(device_ids[static_cast<size_t>(r)]);
      bool arrived = false;
      try {
        c10::cuda::CUDAGuard guard(device);
        at::Tensor t = at::full({kElements}, static_cast<double>(r + 1),
                                at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, device));
        c10::cuda::getCurrentCUDAStream(device).synchronize();
        arrived = true;
        start.ArriveAndWait();
        const auto t0 = std::chrono::steady_clock::now();
        group->rank(r).AllReduceSum(t);
        c10::cuda::getCurrentCUDAStream(device).synchronize();
        const auto t1 = std::chrono::steady_clock::now();
        ms[static_cast<size_t>(r)] = std::chrono::duration<double, std::milli>(t1 - t0).count();
        const double expected = world * (world + 1) / 2.0;
        correct[static_cast<size_t>(r)] = at::all(t == expected).item<bool>();
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
        group->Abort();
        if (!arrived) start.ArriveAndWait();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& e : errors) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const Error&) {
        throw;
      } catch (const std::exception& ex) {
        throw Error(ErrorCode::kDeviceFailed, ex.what());
      }
    }
  }
  AllReduceCheckResult result;
  result.bytes = kElements * static_cast<int64_t>(sizeof(float));
  result.ok = true;
  for (int r = 0; r < world; ++r) {
    result.ok = result.ok && correct[static_cast<size_t>(r)];
    result.ms = std::max(result.ms, ms[static_cast<size_t>(r)]);
  }
  if (!result.ok) throw Error(ErrorCode::kDeviceFailed, "NCCL all-reduce returned a wrong sum");
  return result;
#else
  (void)device_ids;
  throw Error(ErrorCode::kDeviceFailed, "this build of the engine has no NCCL support");
#endif
}

}  // namespace qwen3
