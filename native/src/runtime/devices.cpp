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

AllReduceCheckResult RunAllReduceCheck(const std::vector<int>& device_ids, bool peer_all_reduce) {
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
  constexpr int64_t kSmallRows = 16;               // a short query's partial sums (4B: hidden 2560)
  constexpr int64_t kSmallWidth = 2560;
  constexpr int kSmallRuns = 200;
  const int world = static_cast<int>(device_ids.size());
  const double expected = world * (world + 1) / 2.0;
  std::unique_ptr<CommunicatorGroup> group = MakeNcclGroup(device_ids, peer_all_reduce);
  Barrier start(world);
  std::vector<double> ms(static_cast<size_t>(world), 0);
  std::vector<double> small_us(static_cast<size_t>(world), 0);
  std::vector<bool> correct(static_cast<size_t>(world), false);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      const auto device = static_cast<c10::DeviceIndex>(device_ids[static_cast<size_t>(r)]);
      try {
        c10::cuda::CUDAGuard guard(device);
        const auto stream = c10::cuda::getCurrentCUDAStream(device);
        Communicator& comm = group->rank(r);
        const auto on_device = at::TensorOptions().device(at::kCUDA, device);
        at::Tensor t =
            at::full({kElements}, static_cast<double>(r + 1), on_device.dtype(at::kFloat));
        stream.synchronize();
        start.ArriveAndWait();
        auto t0 = std::chrono::steady_clock::now();
        comm.AllReduceSum(t);
        stream.synchronize();
        auto t1 = std::chrono::steady_clock::now();
        ms[static_cast<size_t>(r)] = std::chrono::duration<double, std::milli>(t1 - t0).count();
        bool ok = at::all(t == expected).item<bool>();

        // A short query's all-reduce as a forward runs it: fused with the residual add and the
        // norm after it where the group can (the peer kernel), else a sum and an add.
        const at::Tensor small = at::full({kSmallRows, kSmallWidth}, static_cast<double>(r + 1),
                                          on_device.dtype(at::kBFloat16));
        at::Tensor residual = at::zeros({kSmallRows, kSmallWidth}, on_device.dtype(at::kFloat));
        const at::Tensor weight = at::ones({kSmallWidth}, on_device.dtype(at::kFloat));
        const auto small_step = [&] {
          if (!comm.AllReduceAddRmsNorm(small, residual, weight, 1e-6, at::kBFloat16).defined()) {
            residual.add_(comm.AllReduceSumAsFloat(small));
          }
        };
        small_step();
        ok = ok && at::all(residual == expected).item<bool>();
        start.ArriveAndWait();
        t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < kSmallRuns; ++i) small_step();
        stream.synchronize();
        t1 = std::chrono::steady_clock::now();
        small_us[static_cast<size_t>(r)] =
            std::chrono::duration<double, std::micro>(t1 - t0).count() / kSmallRuns;
        correct[static_cast<size_t>(r)] = ok;
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
        // Release the peers: those in a collective through the group, those at the barrier.
        group->Abort();
        start.Abort();
      }
    });
  }
  for (auto& t : threads) t.join();
  if (std::exception_ptr first = RootCause(errors)) {
    try {
      std::rethrow_exception(first);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& ex) {
      throw Error(ErrorCode::kDeviceFailed, ex.what());
    }
  }
  AllReduceCheckResult result;
  result.bytes = kElements * static_cast<int64_t>(sizeof(float));
  result.small_bytes = kSmallRows * kSmallWidth * 2;
  result.small_path = group->rank(0).capturable_bytes() >= result.small_bytes ? "peer" : "nccl";
  result.ok = true;
  for (int r = 0; r < world; ++r) {
    result.ok = result.ok && correct[static_cast<size_t>(r)];
    result.ms = std::max(result.ms, ms[static_cast<size_t>(r)]);
    result.small_us = std::max(result.small_us, small_us[static_cast<size_t>(r)]);
  }
  if (!result.ok) throw Error(ErrorCode::kDeviceFailed, "the all-reduce returned a wrong sum");
  return result;
#else
  (void)device_ids;
  (void)peer_all_reduce;
  throw Error(ErrorCode::kDeviceFailed, "this build of the engine has no NCCL support");
#endif
}

}  // namespace qwen3
