#include "runtime/engine.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#ifdef QWEN3_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "common/sync.h"
#include "loader/checkpoint.h"
#include "model/config.h"
#include "model/cuda_graphs.h"
#include "model/packed_input.h"
#include "model/pooling.h"
#include "model/qwen3_model.h"
#include "parallel/communicator.h"

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

// How long a rank waits for its GPU work to drain after its group was aborted before it declares
// the device failed.
constexpr std::chrono::seconds kDrainTimeout{30};
// Graphs hold static buffers and activations of their largest bucket; beyond this eager is as fast.
constexpr int kMaxGraphTokens = 8192;

struct Job {
  PackedBatch batch;
  EmbedCallback done;
  // Decided by rank 0 before its peers see the job, so that every rank of a group takes the same
  // path (a graph replay and an eager forward differ in their all-reduces).
  std::shared_ptr<LayerTestHook> hook;
  bool graphed = false;
};
using JobPtr = std::shared_ptr<Job>;

// FIFO of batches shared by all replicas.
class JobQueue {
 public:
  void Push(JobPtr job) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failure_) throw *failure_;
    if (closed_) throw Error(ErrorCode::kEngineDisposed, "the engine has been disposed");
    jobs_.push_back(std::move(job));
    UpdateReady();
    cv_.notify_one();
  }

  // Blocks for the next job; nullptr once the queue is closed (or failed) and empty. Spins up to
  // `spin` for one before it sleeps (EngineOptions::idle_spin_us).
  JobPtr Pop(std::chrono::microseconds spin) {
    SpinFor(spin, [&] { return ready_.load(std::memory_order_acquire); });
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !jobs_.empty() || closed_ || failure_.has_value(); });
    if (jobs_.empty()) return nullptr;
    JobPtr job = std::move(jobs_.front());
    jobs_.pop_front();
    UpdateReady();
    return job;
  }

  // Refuses new jobs; those queued are still served.
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    UpdateReady();
    cv_.notify_all();
  }

  // No replica is left to serve: refuses new jobs with `error` and returns those waiting.
  std::deque<JobPtr> Fail(const Error& error) {
    std::lock_guard<std::mutex> lock(mu_);
    failure_ = error;
    std::deque<JobPtr> jobs;
    jobs.swap(jobs_);
    UpdateReady();
    cv_.notify_all();
    return jobs;
  }

 private:
  // Under mu_: whether Pop() would return at once, for the threads that spin without the lock.
  void UpdateReady() {
    ready_.store(!jobs_.empty() || closed_ || failure_.has_value(), std::memory_order_release);
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<JobPtr> jobs_;
  bool closed_ = false;
  std::optional<Error> failure_;
  std::atomic<bool> ready_{false};
};

// Rank 0 of a replica hands each job to its peers through this slot; nullptr means stop.
class JobSlot {
 public:
  void Publish(JobPtr job) {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = std::move(job);
    generation_.fetch_add(1, std::memory_order_release);
    cv_.notify_all();
  }

  // Spins up to `spin` for the next job before it sleeps.
  JobPtr Wait(uint64_t* seen, std::chrono::microseconds spin) {
    SpinFor(spin, [&] { return generation_.load(std::memory_order_acquire) != *seen; });
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return generation_ != *seen; });
    *seen = generation_;
    return job_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  JobPtr job_;
  std::atomic<uint64_t> generation_{0};  // written under mu_
};

struct Rank {
  int index = 0;
  at::Device device = at::kCPU;
  int cpu_threads = 0;
  std::unique_ptr<Qwen3Model> model;
  std::unique_ptr<ForwardGraphs> graphs;  // CUDA graphs of small batches, when in use
  int64_t weight_bytes = 0;
  std::thread thread;
  std::exception_ptr load_error;   // written before the load barrier, read after it
  std::exception_ptr job_error;    // written before the job barrier, read by rank 0 after it
  std::exception_ptr graph_error;  // written before the capture barrier, read by all after it
};

struct Replica {
  explicit Replica(int world) : barrier(world) {}
  int index = 0;
  std::unique_ptr<CommunicatorGroup> comm;
  std::vector<std::unique_ptr<Rank>> ranks;
  JobSlot slot;
  Barrier barrier;
  std::atomic<bool> healthy{true};
  std::exception_ptr warmup_error;  // written by rank 0
};

// The root cause among the ranks' errors in `field` (one step's errors): the first that is not a
// consequence of the group being aborted, else the first; null when every rank succeeded.
std::exception_ptr RootCause(const Replica& replica, std::exception_ptr Rank::*field) {
  std::vector<std::exception_ptr> errors;
  errors.reserve(replica.ranks.size());
  for (const auto& r : replica.ranks) errors.push_back((*r).*field);
  return qwen3::RootCause(errors);
}

bool Contains(const std::string& s, const char* needle) {
  return s.find(needle) != std::string::npos;
}

// Maps any exception to an engine Error with a code the caller can act on.
Error Classify(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const Error& e) {
    return e;
  } catch (const c10::OutOfMemoryError& e) {
    return Error(ErrorCode::kOutOfMemory,
                 std::string("out of memory: ") + e.what_without_backtrace());
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    if (Contains(message, "out of memory") || Contains(message, "CUBLAS_STATUS_ALLOC_FAILED") ||
        Contains(message, "not enough memory")) {
      return Error(ErrorCode::kOutOfMemory, "out of memory: " + message);
    }
    if (Contains(message, "CUDA error") || Contains(message, "CUDA driver error") ||
        Contains(message, "CUBLAS_STATUS") || Contains(message, "cuDNN error")) {
      return Error(ErrorCode::kDeviceFailed, message);
    }
    return Error(ErrorCode::kInternal, message);
  } catch (const std::bad_alloc&) {
    return Error(ErrorCode::kOutOfMemory, "out of host memory");
  } catch (const std::exception& e) {
    return Error(ErrorCode::kInternal, e.what());
  } catch (...) {
    return Error(ErrorCode::kInternal, "unknown error");
  }
}

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

// Binds the calling thread to its rank's device for the thread's lifetime: on CUDA the current
// device and a stream of its own; on the CPU the intra-op thread count.
class DeviceContext {
 public:
  explicit DeviceContext(const Rank& rank) {
#ifdef QWEN3_WITH_CUDA
    if (rank.device.is_cuda()) {
      const auto index = static_cast<c10::DeviceIndex>(rank.device.index());
      device_guard_.emplace(index);
      stream_guard_.emplace(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, index));
      return;
    }
#endif
    at::init_num_threads();
    if (rank.cpu_threads > 0) at::set_num_threads(rank.cpu_threads);
  }

 private:
#ifdef QWEN3_WITH_CUDA
  std::optional<c10::cuda::CUDAGuard> device_guard_;
  std::optional<c10::cuda::CUDAStreamGuard> stream_guard_;
#endif
};

// Waits until the calling thread's CUDA stream has finished all queued work. A no-op on the CPU.
// Polls rather than blocks so that, if a peer aborts the group, this rank notices; the aborted
// collectives then finish and the stream drains, or the device is declared failed.
void WaitForDevice(const at::Device& device, CommunicatorGroup& group,
                   std::chrono::microseconds spin) {
#ifdef QWEN3_WITH_CUDA
  if (!device.is_cuda()) return;
  at::cuda::CUDAEvent done;
  done.record(c10::cuda::getCurrentCUDAStream(device.index()));
  std::optional<std::chrono::steady_clock::time_point> aborted_at;
  // Spin through the first `spin` of the wait (EngineOptions::device_spin_us), so that a short
  // batch's end is seen within microseconds (a 50 us sleep overshoots by ~60 us on Linux); a long
  // batch's wait then sleeps between looks, and costs no core.
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

int64_t HostMemoryBytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page_size > 0 ? static_cast<int64_t>(pages) * page_size : 0;
}

// A small batch (two sequences) that exercises every kernel once at load time.
PackedBatch WarmupBatch(const ModelConfig& config) {
  PackedBatch batch;
  for (int i = 0; i < 8; ++i)
    batch.token_ids.push_back(static_cast<int32_t>(i % config.vocab_size));
  batch.cu_seqlens = {0, 3, 8};
  batch.dimensions = {static_cast<int32_t>(config.hidden_size),
                      static_cast<int32_t>(config.hidden_size)};
  return batch;
}

}  // namespace

class Engine::Impl {
 public:
  ~Impl() { Shutdown(); }

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

 private:
  enum class Phase { kLoading, kServing, kStopping };

  void ValidateOptions() const;
  void RankMain(Replica& replica, Rank& rank);
  void Plan(const Rank& lead, Job& job) const;
  void ExecuteJob(Replica& replica, Rank& rank, Job& job);
  void CaptureGraphs(Replica& replica, Rank& rank);
  void Settle(Replica& replica, Job& job, std::vector<float> rows);
  void MarkFailed(Replica& replica, const std::string& reason);
  void Report(const std::string& line) const {
    if (progress_) progress_(line);
  }
  std::chrono::microseconds DeviceSpin() const {
    return std::chrono::microseconds(options_.device_spin_us);
  }
  std::chrono::microseconds IdleSpin() const {
    return std::chrono::microseconds(options_.idle_spin_us);
  }

  EngineOptions options_;
  ModelConfig config_;
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
  config_ = ModelConfig::FromJson(ReadConfigJson(options_.model_path), config_path);
  const int tp = options_.tensor_parallel_size;
  if (config_.num_key_value_heads % tp != 0 || config_.intermediate_size % tp != 0) {
    ThrowInvalidArgument("tensorParallelSize " + std::to_string(tp) +
                         " must divide num_key_value_heads (" +
                         std::to_string(config_.num_key_value_heads) + ") and intermediate_size (" +
                         std::to_string(config_.intermediate_size) + ")");
  }
  checkpoint_ = Checkpoint::Open(options_.model_path, progress_);
  ValidateCheckpoint(*checkpoint_, config_);

  // Lay out replicas: consecutive device ids form one tensor-parallel group.
  const bool cuda = options_.device == DeviceKind::kCuda;
  const int replica_count = cuda ? static_cast<int>(options_.device_ids.size()) / tp : 1;
  int cpu_threads = 0;
  if (!cuda) {
    const int total = options_.cpu_threads > 0 ? options_.cpu_threads : at::get_num_threads();
    cpu_threads = std::max(1, total / tp);
  }
  for (int r = 0; r < replica_count; ++r) {
    auto replica = std::make_unique<Replica>(tp);
    replica->index = r;
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
  for (auto& replica : replicas_) {
    for (auto& rank : replica->ranks) {
      Replica* rep = replica.get();
      Rank* rk = rank.get();
      rank->thread = std::thread([this, rep, rk] { RankMain(*rep, *rk); });
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
    throw Classify(first_error);
  }
  checkpoint_.reset();  // weights are on the devices; unmap the files
  progress_ = nullptr;  // the caller's callback and cancel flag are not used after loading
  cancel_ = nullptr;
  Report("ready: " + std::to_string(replica_count) + " replica(s) x " + std::to_string(tp) +
         " rank(s)");
}

void Engine::Impl::RankMain(Replica& replica, Rank& rank) {
  DeviceContext context(rank);
  const int world = static_cast<int>(replica.ranks.size());
  try {
    ModelOptions model_options;
    model_options.device = rank.device;
    model_options.dtype = dtype_;
    model_options.rank = rank.index;
    model_options.world = world;
    std::string who = "replica " + std::to_string(replica.index) + " ";
    ProgressCallback progress;
    if (progress_ && rank.index == 0) {
      progress = [this, who](const std::string& line) { progress_(who + line); };
    }
    rank.model =
        std::make_unique<Qwen3Model>(*checkpoint_, config_, model_options, progress, cancel_);
    rank.weight_bytes = rank.model->weight_bytes();
  } catch (...) {
    rank.load_error = std::current_exception();
  }

  // Every rank of the replica learns whether all loaded, so they warm up together or not at all.
  replica.barrier.ArriveAndWait();
  if (!RootCause(replica, &Rank::load_error)) {
    Job warmup;  // eager, no hook
    warmup.batch = WarmupBatch(config_);
    if (rank.index == 0) {
      warmup.done = [&replica](std::vector<float> /*rows*/, const Error* error) {
        if (error != nullptr) replica.warmup_error = std::make_exception_ptr(*error);
      };
    }
    ExecuteJob(replica, rank, warmup);
    // Every rank's warm-up outcome is visible after ExecuteJob's barrier, so all ranks of the
    // group make the same decision.
    if (!RootCause(replica, &Rank::job_error) && options_.cuda_graph_max_tokens > 0 &&
        ForwardGraphs::Supported(*rank.model, replica.comm->rank(rank.index))) {
      CaptureGraphs(replica, rank);
    }
  }

  bool serve = false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    ++ranks_ready_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return phase_ != Phase::kLoading; });
    serve = phase_ == Phase::kServing;
  }

  if (serve) {
    uint64_t seen = 0;
    while (true) {
      JobPtr job;
      if (rank.index == 0) {
        job = replica.healthy.load() ? queue_.Pop(IdleSpin()) : nullptr;
        if (job) Plan(rank, *job);
        replica.slot.Publish(job);
      } else {
        job = replica.slot.Wait(&seen, IdleSpin());
      }
      if (!job) break;
      ExecuteJob(replica, rank, *job);
    }
  }

  // Free the graphs, then the weights, on the thread that owns the device.
  try {
    rank.graphs.reset();
    rank.model.reset();
    ReleaseCachedMemory(rank.device);
  } catch (...) {
  }
}

void Engine::Impl::Plan(const Rank& lead, Job& job) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (hook_ && *hook_) job.hook = hook_;
  }
  // Test hooks run between layers, which only the eager path has.
  job.graphed = lead.graphs && !job.hook && lead.graphs->Fits(job.batch);
}

void Engine::Impl::ExecuteJob(Replica& replica, Rank& rank, Job& job) {
  CommunicatorGroup& group = *replica.comm;
  Communicator& comm = group.rank(rank.index);
  std::vector<float> rows;
  std::exception_ptr error;
  try {
    at::Tensor pooled;
    if (job.graphed) {
      pooled = rank.graphs->Run(job.batch);
    } else {
      const PackedInput in = PackedInput::Make(job.batch, rank.device);
      LayerHook layer_hook;
      if (job.hook) {
        layer_hook = [&](int layer) { (*job.hook)(replica.index, rank.index, layer); };
      }
      pooled = rank.model->Forward(in, comm, layer_hook);
    }
    if (rank.index == 0) {
      at::Tensor host = pooled;
      if (!pooled.device().is_cpu()) {
        host = at::empty(pooled.sizes(), pooled.options().device(at::kCPU).pinned_memory(true));
        host.copy_(pooled, /*non_blocking=*/true);
      }
      WaitForDevice(rank.device, group, DeviceSpin());
      comm.ThrowIfCollectivesFailed();
      host = host.contiguous();
      rows = TruncateAndNormalize(host.data_ptr<float>(), host.size(0), host.size(1),
                                  job.batch.dimensions);
    } else {
      // Surface asynchronous errors now and leave the stream idle for the next job.
      WaitForDevice(rank.device, group, DeviceSpin());
      comm.ThrowIfCollectivesFailed();
    }
  } catch (...) {
    error = std::current_exception();
    // Peers may be waiting for this rank in a collective: release them.
    group.Abort();
    try {
      WaitForDevice(rank.device, group, DeviceSpin());
    } catch (...) {
      if (IsCommAborted(error)) error = std::current_exception();
    }
  }
  rank.job_error = error;
  // Every rank is out of its collectives. On GPUs the ranks get here within microseconds of each
  // other (their last all-reduce lined them up): the first spins rather than sleeps for the rest.
  replica.barrier.ArriveAndWait(rank.device.is_cuda() ? DeviceSpin()
                                                      : std::chrono::microseconds(0));
  if (rank.index == 0) Settle(replica, job, std::move(rows));
}

// Captures the graphs of one rank after its replica's warm-up; every rank of the replica calls it
// at the same point. A failed capture is not fatal: the replica serves eagerly and says why. A rank
// whose capture fails aborts the group (its peers may be waiting for it in an all-reduce of the
// capture's eager runs); then no rank keeps its graphs and rank 0 rebuilds the communicators.
void Engine::Impl::CaptureGraphs(Replica& replica, Rank& rank) {
  const auto started = std::chrono::steady_clock::now();
  const std::string who = "replica " + std::to_string(replica.index) + ": ";
  Communicator& comm = replica.comm->rank(rank.index);
  try {
    GraphOptions graph_options;
    graph_options.max_tokens = std::min<int64_t>(options_.cuda_graph_max_tokens,
                                                 ForwardGraphs::TokenLimit(*rank.model, comm));
    rank.graphs = std::make_unique<ForwardGraphs>(*rank.model, graph_options);
    rank.graphs->Capture(comm);
  } catch (...) {
    rank.graph_error = std::current_exception();
    rank.graphs.reset();
    replica.comm->Abort();
  }
  replica.barrier.ArriveAndWait();
  const std::exception_ptr failure = RootCause(replica, &Rank::graph_error);
  if (failure) rank.graphs.reset();
  if (rank.index == 0) {
    if (failure) {
      Report(who + "CUDA graphs are off: " + Classify(failure).what());
      if (replica.comm->aborted()) {
        try {
          replica.comm->Rebuild();
        } catch (...) {
          replica.warmup_error = std::current_exception();
        }
      }
    } else {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - started)
                          .count();
      Report(who + "captured CUDA graphs for " + std::to_string(rank.graphs->buckets()) +
             " batch sizes up to " + std::to_string(rank.graphs->max_tokens()) + " tokens in " +
             std::to_string(ms) + " ms");
    }
  }
  replica.barrier.ArriveAndWait();  // the group is usable again before any rank goes on
}

void Engine::Impl::Settle(Replica& replica, Job& job, std::vector<float> rows) {
  const std::exception_ptr root = RootCause(replica, &Rank::job_error);
  if (!root) {
    if (job.done) job.done(std::move(rows), nullptr);
    return;
  }

  Error error = Classify(root);
  if (error.code() == ErrorCode::kOutOfMemory) {
    try {
      ReleaseCachedMemory(replica.ranks.front()->device);
    } catch (...) {
    }
  }
  if (error.code() == ErrorCode::kDeviceFailed) {
    // The device (or its context) may be unusable: take the replica out rather than rebuild.
    MarkFailed(replica, "replica " + std::to_string(replica.index) + ": " + error.what());
  } else if (replica.comm->aborted()) {
    try {
      replica.comm->Rebuild();
    } catch (...) {
      MarkFailed(replica, "replica " + std::to_string(replica.index) +
                              ": could not rebuild its communicators: " +
                              Classify(std::current_exception()).what());
    }
  }
  if (job.done) job.done({}, &error);
}

void Engine::Impl::MarkFailed(Replica& replica, const std::string& reason) {
  if (!replica.healthy.exchange(false)) return;
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
  limits.hidden_size = config_.hidden_size;
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
      d.replica = replica->index;
      d.rank = rank->index;
      d.used_memory_bytes = rank->weight_bytes;
      if (rank->device.is_cpu()) {
        d.index = -1;
        d.name = "cpu";
        d.total_memory_bytes = HostMemoryBytes();
      } else {
#ifdef QWEN3_WITH_CUDA
        d.index = rank->device.index();
        const cudaDeviceProp* prop = at::cuda::getDeviceProperties(rank->device.index());
        d.name = prop->name;
        d.total_memory_bytes = static_cast<int64_t>(prop->totalGlobalMem);
        // Index 0 is the aggregate over both pools: every byte the caching allocator holds.
        d.used_memory_bytes = c10::cuda::CUDACachingAllocator::getDeviceStats(rank->device.index())
                                  .reserved_bytes[0]
                                  .current;
#endif
      }
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
    throw Classify(std::current_exception());
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
