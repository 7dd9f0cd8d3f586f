// The engine: model replicas on their own threads, serving packed batches from one queue.
//
// This header is the boundary with the addon and includes no libtorch header. Threading model:
//   - Every tensor-parallel rank has one worker thread that owns its device (and, on CUDA, its
//     stream) for the engine's lifetime. A replica is a group of `tensor_parallel_size` ranks.
//   - Batches wait in one FIFO queue. A replica's rank 0 takes the next batch and hands it to its
//     peers; all ranks run the forward in lockstep (two all-reduces a layer) and rank 0 completes
//     the batch. Replicas run concurrently, so up to `replicas` batches are in flight.
//   - Callbacks run on engine threads; they must not block and must not call back into the engine.
// Error model: see docs/engine.md. Bad input is rejected before it is queued; a failing rank aborts
// its group's collectives so no peer waits forever, the batch fails with the root cause, and the
// group is rebuilt. Out-of-memory keeps the replica in service; a device error takes it out.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/progress.h"
#include "model/packed_batch.h"

namespace qwen3 {

enum class DeviceKind { kCpu, kCuda };
enum class DType { kFloat32, kBFloat16, kFloat16 };

const char* DeviceKindName(DeviceKind device) noexcept;  // "cpu", "cuda"
const char* DTypeName(DType dtype) noexcept;             // "float32", "bfloat16", "float16"

struct EngineOptions {
  std::string model_path;
  // How each sequence's hidden states become one row: "lasttoken", "cls" or "mean" (mean skips
  // PackedBatch::prompt_lengths tokens). From the checkpoint's Pooling module (the TS side).
  std::string pooling = "lasttoken";
  // L2-normalise after Matryoshka truncation; false: truncate only.
  bool normalize = true;
  // sentence-transformers Dense module directories, applied after pooling in this order.
  std::vector<std::string> dense_layers;
  // What the pooled row becomes: "embedding" (the row itself), or a reranker's score head, one
  // float per sequence (the raw score): "yes-no" (logit of yes_token_id minus logit of
  // no_token_id, from lm_head.weight or the tied embed_tokens.weight) or "classifier"
  // (Qwen3ForSequenceClassification's score.weight). A score head needs lasttoken pooling,
  // normalize false, no Dense layers and a decoder family; every batch dimension is then 1.
  std::string head = "embedding";
  int64_t yes_token_id = -1;  // head "yes-no" only (Qwen3: 9693 and 2152)
  int64_t no_token_id = -1;
  DeviceKind device = DeviceKind::kCpu;
  DType dtype = DType::kFloat32;
  std::vector<int> device_ids;  // CUDA ordinals; ignored on the CPU
  int tensor_parallel_size = 1;
  int cpu_threads = 0;  // intra-op threads for CPU compute in total (0 = libtorch default)
  // CUDA graphs for batches of up to this many tokens (and 64 sequences); 0 turns them off. Used
  // only on CUDA with flash attention (bf16/fp16). See docs/engine.md.
  int cuda_graph_max_tokens = 512;
  // Tensor-parallel groups on CUDA send small all-reduces through a one-shot kernel over peer
  // access (NVLink) instead of NCCL, which also lets their forward be captured in CUDA graphs.
  // Used only when every pair of the group's GPUs has peer access.
  bool peer_all_reduce = true;
  // How long the peer kernel waits for a peer GPU before the batch fails with DEVICE_FAILED and
  // the replica is taken out of service; 0: its default, 30 s. Tests shorten it.
  uint64_t peer_timeout_ns = 0;
  // How long a rank thread polls for its GPU's work on a batch without sleeping (microseconds);
  // after that it sleeps 50 us between looks, so a long batch costs no core. 0: sleep from the
  // start (a short batch's end is then seen ~60 us late). Also bounds the spin at the end-of-batch
  // barrier of a tensor-parallel group.
  uint32_t device_spin_us = 10000;
  // How long an idle rank thread spins for the next batch before it sleeps on a condition variable
  // (microseconds). 0: sleep at once. Spinning saves the wake-up of a sleeping thread (tens of
  // microseconds on a virtual machine) per rank and batch, for a busy core per rank meanwhile.
  // The server sets it from BUSY_POLL and BUSY_POLL_LINGER_MS (docs/operations.md, "Busy polling").
  uint32_t idle_spin_us = 0;
};

struct DeviceInfo {
  int index = -1;  // CUDA ordinal, -1 for the CPU
  std::string name;
  int64_t total_memory_bytes = 0;
  int64_t used_memory_bytes = 0;  // held by this engine: weights + allocator caches
  int replica = 0;
  int rank = 0;
};

struct EngineInfo {
  std::string model_path;
  std::string model_type;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  // Floats in a full output row: the last Dense layer's out_features, else hidden_size; 1 with a
  // score head.
  int64_t output_dimension = 0;
  std::string head = "embedding";  // EngineOptions::head
  int64_t parameters = 0;
  DeviceKind device = DeviceKind::kCpu;
  DType dtype = DType::kFloat32;
  int tensor_parallel_size = 1;
  int replicas = 1;
  // The largest batch (in tokens) the captured CUDA graphs take; 0 when no graph is in use.
  int64_t cuda_graph_max_tokens = 0;
  // Whether the tensor-parallel groups send small all-reduces through the peer kernel.
  bool peer_all_reduce = false;
  std::vector<DeviceInfo> devices;
};

struct HealthStatus {
  bool ok = true;
  std::string reason;
};

// Called exactly once per submitted batch, on an engine thread: with the rows back to back (row i
// has dimensions[i] floats, L2-normalised unless EngineOptions::normalize is false; with a score
// head, one raw score per sequence) and
// error == nullptr, or with an error.
using EmbedCallback = std::function<void(std::vector<float> rows, const Error* error)>;

// Test hook: runs on every rank before every layer; an exception thrown from it fails that rank.
using LayerTestHook = std::function<void(int replica, int rank, int layer)>;

class Engine {
 public:
  // Validates the options against the checkpoint, loads every rank's shard on its own thread, runs
  // one warm-up batch per replica, and returns a serving engine. Throws qwen3::Error:
  // kInvalidArgument (bad options), kModelLoadFailed (naming the file and tensor), kOutOfMemory,
  // kDeviceFailed. Setting *cancel makes a load in progress fail promptly.
  static std::unique_ptr<Engine> Load(const EngineOptions& options,
                                      const ProgressCallback& progress = nullptr,
                                      const std::atomic<bool>* cancel = nullptr);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Throws Error(kInvalidArgument) if the batch is not valid for this model. Thread-safe.
  void Validate(const PackedBatch& batch) const;
  // Validates, then queues. Throws (without calling `done`) on invalid input, after Shutdown
  // (kEngineDisposed) or once every replica has failed (kDeviceFailed). Thread-safe.
  void Submit(PackedBatch batch, EmbedCallback done);
  // Submit and wait; rethrows the batch's error. For tests and tools.
  std::vector<float> Embed(PackedBatch batch);

  EngineInfo Info() const;
  HealthStatus Health() const;

  // Stops taking batches, finishes those already queued, joins the threads and frees the devices.
  // Idempotent; must not be called from an engine callback.
  void Shutdown();

  void SetLayerTestHook(LayerTestHook hook);

  class Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct BuildInfo {
  std::string torch_version;
  bool cuda = false;
  bool nccl = false;
  bool flash_attention = false;
};

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int64_t total_memory_bytes = 0;
  int64_t free_memory_bytes = 0;
};

struct AllReduceCheckResult {
  bool ok = false;
  double ms = 0;  // one fp32 all-reduce of `bytes` (32 MiB: NCCL), from the slowest rank
  int64_t bytes = 0;
  // A short query's all-reduce ([16, 2560] bf16 partial sums, summed into an fp32 residual) as a
  // forward runs it (with the add and norm after it, in one kernel on the peer path), checked
  // once, then repeated back to back: the path serving takes for it ("peer" kernel or "nccl") and
  // the mean time of one on the slowest rank.
  std::string small_path;
  int64_t small_bytes = 0;
  double small_us = 0;
};

BuildInfo GetBuildInfo();
// Empty in a build without CUDA or on a machine without GPUs.
std::vector<CudaDeviceInfo> ListCudaDevices();
// All-reduces over the given GPUs through a group built as the engine builds one, each checked
// against the expected sum: one of 32 MiB (NCCL), then a short query's (the peer kernel where the
// GPUs have peer access and peer_all_reduce is on), timed. Throws Error(kDeviceFailed) without
// NCCL, on NCCL/CUDA errors, or on a wrong sum; Error(kInvalidArgument) for bad device ids.
// peer_all_reduce: as EngineOptions::peer_all_reduce (the small message's path).
AllReduceCheckResult RunAllReduceCheck(const std::vector<int>& device_ids,
                                       bool peer_all_reduce = true);

}  // namespace qwen3
