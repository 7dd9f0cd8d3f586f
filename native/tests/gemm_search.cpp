// gemm_search: how fast the forward's matrix products could run at a short query's size. For each
// projection of a Qwen3 layer (qkv, o, gate_up, down; one tensor-parallel rank's shard), times
// at::linear as the engine calls it, then every algorithm cuBLASLt's heuristic offers for the same
// product, and prints them against the default, with the bandwidth each reaches on the weights.
// Times are GPU times (the calls replay from a CUDA graph). A developer tool for the GPU hosts
// (run.sh step `gemmsearch`); CUDA builds only.
//
//   gemm_search [--tokens=16] [--tp=1] [--hidden=2560] [--intermediate=9728] [--heads=32]
//               [--kv-heads=8] [--head-dim=128] [--runs=200]
//
// Weights are rotated through enough copies to exceed the L2 cache, so every call reads them from
// memory, as a forward does.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "tool_main.h"

namespace {

void CheckLt(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw std::runtime_error(std::string(what) + " failed with cuBLAS status " +
                             std::to_string(static_cast<int>(status)));
  }
}

void CheckCuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
  }
}

// Mean GPU microseconds of one call of `call(i)`: `runs` calls are captured into a CUDA graph (as
// the engine replays its forward), so host launch costs do not count.
double TimeUs(const std::function<void(int)>& call, int runs, cudaStream_t stream) {
  for (int i = 0; i < 10; ++i) call(i);  // lazy initialisation outside the capture
  CheckCuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  at::cuda::CUDAGraph graph;
  graph.capture_begin();
  for (int i = 0; i < runs; ++i) call(i);
  graph.capture_end();
  graph.replay();
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  CheckCuda(cudaEventCreate(&start), "cudaEventCreate");
  CheckCuda(cudaEventCreate(&stop), "cudaEventCreate");
  CheckCuda(cudaEventRecord(start, stream), "cudaEventRecord");
  graph.replay();
  CheckCuda(cudaEventRecord(stop, stream), "cudaEventRecord");
  CheckCuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
  float ms = 0;
  CheckCuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return static_cast<double>(ms) * 1000.0 / runs;
}

struct Projection {
  std::string name;
  int64_t n;  // output features (rows of the weight shard)
  int64_t k;  // input features
};

int Run(const qwen3::tools::Args& args) {
  using qwen3::tools::GetInt;
  const int64_t m = GetInt(args, "tokens", 16);
  const int64_t tp = GetInt(args, "tp", 1);
  const int64_t hidden = GetInt(args, "hidden", 2560);
  const int64_t intermediate = GetInt(args, "intermediate", 9728);
  const int64_t heads = GetInt(args, "heads", 32);
  const int64_t kv_heads = GetInt(args, "kv-heads", 8);
  const int64_t head_dim = GetInt(args, "head-dim", 128);
  const int runs = static_cast<int>(GetInt(args, "runs", 200));
  const std::vector<Projection> projections = {
      {"qkv", (heads + 2 * kv_heads) * head_dim / tp, hidden},
      {"o", hidden, heads * head_dim / tp},
      {"gate_up", 2 * intermediate / tp, hidden},
      {"down", hidden, intermediate / tp},
  };

  c10::cuda::CUDAGuard guard(0);
  // A side stream: CUDA graphs cannot capture the legacy default stream.
  c10::cuda::CUDAStreamGuard stream_guard(c10::cuda::getStreamFromPool(false, 0));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(0).stream();
  const auto bf16 = at::TensorOptions().device(at::kCUDA, 0).dtype(at::kBFloat16);
  cublasLtHandle_t lt = nullptr;
  CheckLt(cublasLtCreate(&lt), "cublasLtCreate");
  const size_t workspace_bytes = size_t{32} << 20;
  at::Tensor workspace = at::empty({static_cast<int64_t>(workspace_bytes)}, bf16.dtype(at::kByte));

  std::printf(
      "| projection (tp %lld, %lld tokens) | N x K | MB | at::linear us | TB/s | "
      "best cuBLASLt us | TB/s | best/default | heuristic #0 us | algos |\n",
      static_cast<long long>(tp), static_cast<long long>(m));
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  double total_default = 0;
  double total_best = 0;
  for (const Projection& p : projections) {
    const double mb = static_cast<double>(p.n * p.k * 2) / 1e6;
    const int copies =
        static_cast<int>(std::max<int64_t>(2, 400 / std::max<int64_t>(1, p.n * p.k * 2 / 1000000)));
    std::vector<at::Tensor> weights;
    for (int c = 0; c < copies; ++c) weights.push_back(at::randn({p.n, p.k}, bf16) * 0.02);
    const at::Tensor x = at::randn({m, p.k}, bf16);
    at::Tensor y = at::empty({m, p.n}, bf16);

    const double default_us =
        TimeUs([&](int i) { (void)at::linear(x, weights[static_cast<size_t>(i % copies)]); }, runs,
               stream);

    // y [m, n] = x [m, k] W^T (row-major) is, column-major, D [n, m] = op(A) B: A is W [n, k] seen
    // as a k x n matrix and transposed, B is x seen as k x m. (MB / us = TB/s below.)
    cublasLtMatmulDesc_t op = nullptr;
    CheckLt(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
    const cublasOperation_t trans_a = CUBLAS_OP_T;
    const cublasOperation_t trans_b = CUBLAS_OP_N;
    CheckLt(
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)),
        "TRANSA");
    CheckLt(
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)),
        "TRANSB");
    cublasLtMatrixLayout_t a_layout = nullptr;
    cublasLtMatrixLayout_t b_layout = nullptr;
    cublasLtMatrixLayout_t d_layout = nullptr;
    CheckLt(cublasLtMatrixLayoutCreate(&a_layout, CUDA_R_16BF, static_cast<uint64_t>(p.k),
                                       static_cast<uint64_t>(p.n), p.k),
            "layout A");
    CheckLt(cublasLtMatrixLayoutCreate(&b_layout, CUDA_R_16BF, static_cast<uint64_t>(p.k),
                                       static_cast<uint64_t>(m), p.k),
            "layout B");
    CheckLt(cublasLtMatrixLayoutCreate(&d_layout, CUDA_R_16BF, static_cast<uint64_t>(p.n),
                                       static_cast<uint64_t>(m), p.n),
            "layout D");
    cublasLtMatmulPreference_t preference = nullptr;
    CheckLt(cublasLtMatmulPreferenceCreate(&preference), "PreferenceCreate");
    CheckLt(
        cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                             &workspace_bytes, sizeof(workspace_bytes)),
        "workspace");
    std::vector<cublasLtMatmulHeuristicResult_t> found(64);
    int count = 0;
    CheckLt(
        cublasLtMatmulAlgoGetHeuristic(lt, op, a_layout, b_layout, d_layout, d_layout, preference,
                                       static_cast<int>(found.size()), found.data(), &count),
        "AlgoGetHeuristic");
    const float alpha = 1.0f;
    const float beta = 0.0f;
    double best_us = 1e30;
    double first_us = 0;
    for (int a = 0; a < count; ++a) {
      if (found[static_cast<size_t>(a)].state != CUBLAS_STATUS_SUCCESS) continue;
      const cublasLtMatmulAlgo_t* algo = &found[static_cast<size_t>(a)].algo;
      bool failed = false;
      double us = 0;
      try {
        us = TimeUs(
            [&](int i) {
              if (failed) return;
              const cublasStatus_t status = cublasLtMatmul(
                  lt, op, &alpha, weights[static_cast<size_t>(i % copies)].data_ptr(), a_layout,
                  x.data_ptr(), b_layout, &beta, y.data_ptr(), d_layout, y.data_ptr(), d_layout,
                  algo, workspace.data_ptr(), workspace_bytes, stream);
              failed = status != CUBLAS_STATUS_SUCCESS;
            },
            runs, stream);
      } catch (const std::exception&) {
        failed = true;  // an algorithm that cannot be captured: not a candidate for the engine
      }
      if (failed) continue;
      if (a == 0) first_us = us;
      best_us = std::min(best_us, us);
    }
    cublasLtMatmulPreferenceDestroy(preference);
    cublasLtMatrixLayoutDestroy(a_layout);
    cublasLtMatrixLayoutDestroy(b_layout);
    cublasLtMatrixLayoutDestroy(d_layout);
    cublasLtMatmulDescDestroy(op);
    total_default += default_us;
    total_best += std::min(best_us, default_us);
    std::printf("| %s | %lld x %lld | %.1f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %d |\n",
                p.name.c_str(), static_cast<long long>(p.n), static_cast<long long>(p.k), mb,
                default_us, mb / default_us, best_us, mb / best_us, best_us / default_us, first_us,
                count);
  }
  std::printf("\nper layer: at::linear %.1f us, best of cuBLASLt %.1f us (%.2fx)\n", total_default,
              total_best, total_best / total_default);
  cublasLtDestroy(lt);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return qwen3::tools::Main("gemm_search", argc, argv, Run); }
