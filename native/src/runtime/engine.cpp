#include "runtime/engine.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#ifdef QWEN3_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include "loader/checkpoint.h"
#include "model/config.h"
#include "model/cuda_graphs.h"
#include "model/dense.h"
#include "model/embedding_model.h"
#include "model/score_head.h"
#include "parallel/communicator.h"
#include "runtime/device_context.h"
#include "runtime/error_classification.h"
#include "runtime/job_queue.h"
#include "runtime/replica.h"

namespace qwen3 {

const char* DeviceKindName(DeviceKind device) noexcept {
  return device == DeviceKind::kCuda ? "cuda" : "cpu";
}

const char* DTypeName(DType dtype) noexcept {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kBFloat16:
      return "bfloat16";
    case DType::kFloat16:
      return "float16";
  }
  return "float32";
}

namespace {

// Graphs hold static buffers and activations of their largest bucket; beyond this eager is as fast.
constexpr int kMaxGraphTokens = 8192;

// A small batch (two sequences) that exercises every kernel once at load time.
PackedBatch WarmupBatch(const ModelConfig& config, int64_t output_dimension) {
  PackedBatch batch;
  for (int i = 0; i < 8; ++i)
    batch.token_ids.push_back(static_cast<int32_t>(i % config.vocab_size));
  batch.cu_seqlens = {0, 3, 8};
  batch.dimensions = {static_cast<int32_t>(output_dimension),
                      static_cast<int32_t>(output_dimension)};
  batch.prompt_lengths = {1, 0};
  return batch;
}

Pooling ParsePooling(const std::string& name) {
  if (name == "lasttoken") return Pooling::kLastToken;
  if (name == "cls") return Pooling::kCls;
  if (name == "mean") return Pooling::kMean;
  ThrowInvalidArgument("pooling \"" + name + "\" is not supported (lasttoken, cls or mean)");
}

}  // namespace

class Engine::Impl final : public ReplicaHost {
 public:
  ~Impl() override { Shutdown(); }

  void Start(const EngineOptions& options, const ProgressCallback& progress,
             const std::atomic<bool>* cancel);
  void Validate(const PackedBatch& batch) const;
  void Submit(PackedBatch batch, EmbedCallback done);
  EngineInfo Info() const;
  HealthStatus Health() const;
  void Shutdown();
  void SetLayerTestHook(LayerTestHook hook) {
    std::lock_guard<std::mutex> lock(mu_);
    hook_ = std::make_shared<LayerTestHook>(std::move(hook));
  }

  // ReplicaHost
  bool AwaitServing() override;
  std::shared_ptr<LayerTestHook> LayerHookForNextJob() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return hook_ && *hook_ ? hook_ : nullptr;
  }
  void ReplicaFailed(Replica& replica, const std::string& reason) override;
  void Report(const std::string& line) const override {
    if (progress_) progress_(line);
  }

 private:
  enum class Phase { kLoading, kServing, kStopping };

  void ValidateOptions() const;
  std::unique_ptr<EmbeddingModel> LoadRank(int replica, int world, const Rank& rank) const;

  EngineOptions options_;
  ModelConfig config_;
  Pooling pooling_ = Pooling::kLastToken;
  HeadKind head_ = HeadKind::kEmbedding;
  int64_t output_dimension_ = 0;
  std::unique_ptr<Checkpoint> checkpoint_;
  at::ScalarType dtype_ = at::kFloat;
  ProgressCallback progress_;
  const std::atomic<bool>* cancel_ = nullptr;
  std::vector<std::unique_ptr<Replica>> replicas_;
  JobQueue queue_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  Phase phase_ = Phase::kLoading;
  int ranks_ready_ = 0;
  int healthy_replicas_ = 0;
  std::vector<std::string> failures_;
  std::shared_ptr<LayerTestHook> hook_;
  int64_t graph_max_tokens_ = 0;  // as captured at load (for Info)
  bool peer_all_reduce_ = false;  // the groups' small all-reduces use the peer kernel (for Info)

  std::mutex shutdown_mu_;
  bool shut_down_ = false;
};

void Engine::Impl::ValidateOptions() const {
  const EngineOptions& o = options_;
  if (o.model_path.empty()) ThrowInvalidArgument("modelPath is empty");
  if (o.tensor_parallel_size < 1) ThrowInvalidArgument("tensorParallelSize must be >= 1");
  if (o.cpu_threads < 0) ThrowInvalidArgument("cpuThreads must be >= 0");
  (void)ParsePooling(o.pooling);
  const HeadKind head = ParseHead(o.head);
  if (head != HeadKind::kEmbedding) {
    // A score head reads the row the reranker was trained on: the last token's final-norm hidden
    // state, untouched.
    const std::string name = "head '" + o.head + "'";
    if (o.pooling != "lasttoken") {
      ThrowInvalidArgument(name + " needs pooling 'lasttoken', not '" + o.pooling + "'");
    }
    if (o.normalize) ThrowInvalidArgument(name + " needs normalize false");
    if (!o.dense_layers.empty()) ThrowInvalidArgument(name + " cannot follow Dense layers");
  }
  if (head == HeadKind::kYesNo && (o.yes_token_id < 0 || o.no_token_id < 0)) {
    ThrowInvalidArgument("head 'yes-no' needs yesNoTokenIds (the yes and no token ids)");
  }
  constexpr uint32_t kMaxSpinUs = 60'000'000;
  if (o.device_spin_us > kMaxSpinUs) ThrowInvalidArgument("deviceSpinUs must be at most 60 s");
  if (o.idle_spin_us > kMaxSpinUs) ThrowInvalidArgument("idleSpinUs must be at most 60 s");
  if (o.cuda_graph_max_tokens < 0 || o.cuda_graph_max_tokens > kMaxGraphTokens) {
    ThrowInvalidArgument("cudaGraphMaxTokens must be between 0 and " +
                         std::to_string(kMaxGraphTokens));
  }
  if (o.device == DeviceKind::kCpu) {
    if (o.dtype != DType::kFloat32) {
      ThrowInvalidArgument(std::string("dtype ") + DTypeName(o.dtype) +
                           " is not supported on the CPU (use float32)");
    }
    return;
  }
  if (o.device_ids.empty())
    ThrowInvalidArgument("deviceIds is empty: name the CUDA devices to use");
  std::set<int> unique(o.device_ids.begin(), o.device_ids.end());
  if (unique.size() != o.device_ids.size()) ThrowInvalidArgument("deviceIds has duplicates");
  if (o.device_ids.size() % static_cast<size_t>(o.tensor_parallel_size) != 0) {
    ThrowInvalidArgument("tensorParallelSize " + std::to_string(o.tensor_parallel_size) +
                         " does not divide the " + std::to_string(o.device_ids.size()) +
                         " devices in deviceIds");
  }
#ifdef QWEN3_WITH_CUDA
  const int count = c10::cuda::device_count();
  for (int id : o.device_ids) {
    if (id < 0 || id >= count) {
      ThrowInvalidArgument("deviceIds has " + std::to_string(id) + " but " + std::to_string(count) +
                           " CUDA device(s) are visible");
    }
  }
#ifndef QWEN3_WITH_NCCL
  if (o.tensor_parallel_size > 1) {
    throw Error(ErrorCode::kDeviceFailed,
                "tensor parallelism on CUDA needs NCCL, and this build has none");
  }
#endif
#else
  throw Error(ErrorCode::kDeviceFailed,
              "device 'cuda' requested but this build of the engine has no CUDA support");
#endif
}

void Engine::Impl::Start(const EngineOptions& options, const ProgressCallback& progress,
                         const std::atomic<bool>* cancel) {
  options_ = options;
  progress_ = progress;
  cancel_ = cancel;
  ValidateOptions();
  dtype_ = ToScalarType(options_.dtype);

  const std::string config_path = options_.model_path + "/config.json";
  const json::Value config_json = ReadConfigJson(options_.model_path);
  config_ = ModelConfig::FromJson(config_json, config_path);
  head_ = ParseHead(options_.head);
  const int tp = options_.tensor_parallel_size;
  if (config_.num_key_value_heads % tp != 0 || config_.intermediate_size % tp != 0) {
    // An encoder's key/value heads are its attention heads (ModelConfig: multi-head attention).
    const char* heads = config_.is_encoder() ? "num_attention_heads" : "num_key_value_heads";
    ThrowInvalidArgument("tensorParallelSize " + std::to_string(tp) + " must divide " + heads +
                         " (" + std::to_string(config_.num_key_value_heads) +
                         ") and intermediate_size (" + std::to_string(config_.intermediate_size) +
                         ")");
  }
  pooling_ = ParsePooling(options_.pooling);
  checkpoint_ = Checkpoint::Open(options_.model_path, progress_);
  ValidateCheckpoint(*checkpoint_, config_);
  auto dense =
      std::make_shared<DenseLayers>(DenseLayers::Load(options_.dense_layers, config_.hidden_size));
  output_dimension_ = dense->output_dimension(config_.hidden_size);
  std::shared_ptr<ScoreHead> score;
  if (head_ != HeadKind::kEmbedding) {
    score = std::make_shared<ScoreHead>(ScoreHead::Load(*checkpoint_, config_, config_json,
                                                        config_path, head_, options_.yes_token_id,
                                                        options_.no_token_id));
    output_dimension_ = 1;
    Report(std::string("score head '") + HeadName(head_) + "' from " + score->tensor());
  }

  // Lay out replicas: consecutive device ids form one tensor-parallel group.
  const bool cuda = options_.device == DeviceKind::kCuda;
  const int replica_count = cuda ? static_cast<int>(options_.device_ids.size()) / tp : 1;
  int cpu_threads = 0;
  if (!cuda) {
    const int total = options_.cpu_threads > 0 ? options_.cpu_threads : at::get_num_threads();
    cpu_threads = std::max(1, total / tp);
  }
  ReplicaOptions replica_options;
  replica_options.cuda_graph_max_tokens = options_.cuda_graph_max_tokens;
  replica_options.device_spin = std::chrono::microseconds(options_.device_spin_us);
  replica_options.idle_spin = std::chrono::microseconds(options_.idle_spin_us);
  replica_options.normalize = options_.normalize;
  if (!dense->empty()) replica_options.dense = dense;
  replica_options.score = score;
  for (int r = 0; r < replica_count; ++r) {
    auto replica = std::make_unique<Replica>(r, tp, replica_options, *this);
    std::vector<int> ids;
    for (int k = 0; k < tp; ++k) {
      auto rank = std::make_unique<Rank>();
      rank->index = k;
      rank->cpu_threads = cpu_threads;
      if (cuda) {
        const int id = options_.device_ids[static_cast<size_t>(r * tp + k)];
        ids.push_back(id);
        rank->device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(id));
      }
      replica->ranks.push_back(std::move(rank));
    }
    if (tp == 1) {
      replica->comm = MakeSoloGroup();
    } else if (!cuda) {
      replica->comm = MakeInProcessGroup(tp);
    } else {
#ifdef QWEN3_WITH_NCCL
      Report("replica " + std::to_string(r) + ": creating NCCL communicators");
      std::string note;
      replica->comm = MakeNcclGroup(ids, options_.peer_all_reduce, &note, options_.peer_timeout_ns);
      peer_all_reduce_ = replica->comm->rank(0).capturable_bytes() > 0;
      Report("replica " + std::to_string(r) + ": " + note);
#endif
    }
    replicas_.push_back(std::move(replica));
  }
  healthy_replicas_ = replica_count;

  Report("loading " + std::to_string(replica_count * tp) + " rank(s) on " +
         DeviceKindName(options_.device) + " as " + DTypeName(options_.dtype));
  const PackedBatch warmup = WarmupBatch(config_, output_dimension_);
  for (auto& replica : replicas_) {
    Replica* rep = replica.get();
    const Replica::LoadModel load = [this, rep, tp](const Rank& rank) {
      return LoadRank(rep->index(), tp, rank);
    };
    for (auto& rank : replica->ranks) {
      Rank* rk = rank.get();
      rank->thread =
          std::thread([this, rep, rk, load, warmup] { rep->RunRank(*rk, load, warmup, queue_); });
    }
  }

  // Wait for every rank to load and warm up, then start serving or stop them all.
  std::exception_ptr first_error;
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return ranks_ready_ == replica_count * tp; });
    for (auto& replica : replicas_) {
      for (auto& rank : replica->ranks) {
        if (!first_error && rank->load_error) first_error = rank->load_error;
      }
      if (!first_error && replica->warmup_error) first_error = replica->warmup_error;
      const Rank& lead = *replica->ranks.front();
      if (lead.graphs && lead.graphs->captured()) {
        graph_max_tokens_ = std::max(graph_max_tokens_, lead.graphs->max_tokens());
      }
    }
    phase_ = first_error ? Phase::kStopping : Phase::kServing;
    cv_.notify_all();
  }
  if (first_error) {
    Shutdown();
    throw ClassifyError(first_error);
  }
  checkpoint_.reset();  // weights are on the devices; unmap the files
  progress_ = nullptr;  // the caller's callback and cancel flag are not used after loading
  cancel_ = nullptr;
  Report("ready: " + std::to_string(replica_count) + " replica(s) x " + std::to_string(tp) +
         " rank(s)");
}

std::unique_ptr<EmbeddingModel> Engine::Impl::LoadRank(int replica, int world,
                                                       const Rank& rank) const {
  ModelOptions model_options;
  model_options.device = rank.device;
  model_options.dtype = dtype_;
  model_options.rank = rank.index;
  model_options.world = world;
  model_options.pooling = pooling_;
  ProgressCallback progress;
  if (progress_ && rank.index == 0) {
    const std::string who = "replica " + std::to_string(replica) + " ";
    progress = [this, who](const std::string& line) { progress_(who + line); };
  }
  return CreateModel(*checkpoint_, config_, model_options, progress, cancel_);
}

bool Engine::Impl::AwaitServing() {
  std::unique_lock<std::mutex> lock(mu_);
  ++ranks_ready_;
  cv_.notify_all();
  cv_.wait(lock, [&] { return phase_ != Phase::kLoading; });
  return phase_ == Phase::kServing;
}

void Engine::Impl::ReplicaFailed(Replica& replica, const std::string& reason) {
  if (!replica.MarkUnhealthy()) return;
  bool none_left = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    failures_.push_back(reason);
    none_left = --healthy_replicas_ == 0 && phase_ == Phase::kServing;
  }
  if (!none_left) return;
  const Error error(ErrorCode::kDeviceFailed, "no healthy replica is left: " + reason);
  for (const JobPtr& waiting : queue_.Fail(error)) {
    if (waiting->done) waiting->done({}, &error);
  }
}

void Engine::Impl::Validate(const PackedBatch& batch) const {
  BatchLimits limits;
  limits.vocab_size = config_.vocab_size;
  limits.hidden_size = output_dimension_;
  if (head_ != HeadKind::kEmbedding) {
    limits.min_dimensions = 1;
    for (size_t i = 0; i < batch.dimensions.size(); ++i) {
      if (batch.dimensions[i] != 1) {
        ThrowInvalidArgument("dimensions[" + std::to_string(i) +
                             "] = " + std::to_string(batch.dimensions[i]) + ": with score head '" +
                             HeadName(head_) + "' each sequence yields one float (dimensions 1)");
      }
    }
  }
  limits.max_position_embeddings = config_.max_position_embeddings;
  ValidateBatch(batch, limits);
}

void Engine::Impl::Submit(PackedBatch batch, EmbedCallback done) {
  Validate(batch);
  auto job = std::make_shared<Job>();
  job->batch = std::move(batch);
  job->done = std::move(done);
  queue_.Push(std::move(job));
}

EngineInfo Engine::Impl::Info() const {
  EngineInfo info;
  info.model_path = options_.model_path;
  info.model_type = config_.model_type;
  info.hidden_size = config_.hidden_size;
  info.num_layers = config_.num_hidden_layers;
  info.num_attention_heads = config_.num_attention_heads;
  info.num_key_value_heads = config_.num_key_value_heads;
  info.head_dim = config_.head_dim;
  info.intermediate_size = config_.intermediate_size;
  info.vocab_size = config_.vocab_size;
  info.max_position_embeddings = config_.max_position_embeddings;
  info.output_dimension = output_dimension_;
  info.head = HeadName(head_);
  info.parameters = config_.ParameterCount();
  info.device = options_.device;
  info.dtype = options_.dtype;
  info.tensor_parallel_size = options_.tensor_parallel_size;
  info.replicas = static_cast<int>(replicas_.size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    info.cuda_graph_max_tokens = graph_max_tokens_;
  }
  info.peer_all_reduce = peer_all_reduce_;
  for (const auto& replica : replicas_) {
    for (const auto& rank : replica->ranks) {
      DeviceInfo d;
      d.replica = replica->index();
      d.rank = rank->index;
      d.used_memory_bytes = rank->weight_bytes;
      DescribeDevice(rank->device, &d);
      info.devices.push_back(std::move(d));
    }
  }
  return info;
}

HealthStatus Engine::Impl::Health() const {
  std::lock_guard<std::mutex> lock(mu_);
  HealthStatus status;
  if (failures_.empty()) return status;
  status.ok = false;
  for (const auto& f : failures_) {
    if (!status.reason.empty()) status.reason += "; ";
    status.reason += f;
  }
  return status;
}

void Engine::Impl::Shutdown() {
  std::lock_guard<std::mutex> guard(shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  queue_.Close();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kLoading) phase_ = Phase::kStopping;
    cv_.notify_all();
  }
  for (auto& replica : replicas_) {
    for (auto& rank : replica->ranks) {
      if (rank->thread.joinable()) rank->thread.join();
    }
  }
  for (auto& replica : replicas_) replica->comm.reset();
  checkpoint_.reset();
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Engine::~Engine() = default;

std::unique_ptr<Engine> Engine::Load(const EngineOptions& options, const ProgressCallback& progress,
                                     const std::atomic<bool>* cancel) {
  auto impl = std::make_unique<Impl>();
  try {
    impl->Start(options, progress, cancel);
  } catch (const Error&) {
    throw;
  } catch (...) {
    throw ClassifyError(std::current_exception());
  }
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

void Engine::Validate(const PackedBatch& batch) const { impl_->Validate(batch); }

void Engine::Submit(PackedBatch batch, EmbedCallback done) {
  impl_->Submit(std::move(batch), std::move(done));
}

std::vector<float> Engine::Embed(PackedBatch batch) {
  auto promise = std::make_shared<std::promise<std::vector<float>>>();
  auto future = promise->get_future();
  Submit(std::move(batch), [promise](std::vector<float> rows, const Error* error) {
    if (error != nullptr) {
      promise->set_exception(std::make_exception_ptr(*error));
    } else {
      promise->set_value(std::move(rows));
    }
  });
  return future.get();
}

EngineInfo Engine::Info() const { return impl_->Info(); }

HealthStatus Engine::Health() const { return impl_->Health(); }

void Engine::Shutdown() { impl_->Shutdown(); }

void Engine::SetLayerTestHook(LayerTestHook hook) { impl_->SetLayerTestHook(std::move(hook)); }

}  // namespace qwen3
