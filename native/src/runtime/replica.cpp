#include "runtime/replica.h"

#include <algorithm>
#include <mutex>
#include <utility>

#include "model/packed_input.h"
#include "model/pooling.h"
#include "runtime/device_context.h"
#include "runtime/error_classification.h"

namespace qwen3 {

Replica::Replica(int index, int world, const ReplicaOptions& options, ReplicaHost& host)
    : index_(index), options_(options), host_(host), barrier_(world) {}

std::exception_ptr Replica::RootCause(std::exception_ptr Rank::*field) const {
  std::vector<std::exception_ptr> errors;
  errors.reserve(ranks.size());
  for (const auto& r : ranks) errors.push_back((*r).*field);
  return qwen3::RootCause(errors);
}

void Replica::RunRank(Rank& rank, const LoadModel& load, const PackedBatch& warmup_batch,
                      JobQueue& queue) {
  DeviceContext context(rank.device, rank.cpu_threads);
  try {
    rank.model = load(rank);
    rank.weight_bytes = rank.model->weight_bytes();
    if (rank.index == 0 && options_.dense) {
      rank.dense = std::make_unique<DenseLayers>(options_.dense->To(rank.device));
    }
    if (rank.index == 0 && options_.score) {
      rank.score = std::make_unique<ScoreHead>(options_.score->To(rank.device));
    }
  } catch (...) {
    rank.load_error = std::current_exception();
  }

  // Every rank of the replica learns whether all loaded, so they warm up together or not at all.
  barrier_.ArriveAndWait();
  if (!RootCause(&Rank::load_error)) {
    Job warmup;  // eager, no hook
    warmup.batch = warmup_batch;
    if (rank.index == 0) {
      warmup.done = [this](std::vector<float> /*rows*/, const Error* error) {
        if (error != nullptr) warmup_error = std::make_exception_ptr(*error);
      };
    }
    ExecuteJob(rank, warmup);
    // Every rank's warm-up outcome is visible after ExecuteJob's barrier, so all ranks of the
    // group make the same decision.
    if (!RootCause(&Rank::job_error) && options_.cuda_graph_max_tokens > 0 &&
        ForwardGraphs::Supported(*rank.model, comm->rank(rank.index))) {
      CaptureGraphs(rank);
    }
  }

  if (host_.AwaitServing()) {
    uint64_t seen = 0;
    while (true) {
      JobPtr job;
      if (rank.index == 0) {
        job = healthy_.load() ? queue.Pop(options_.idle_spin) : nullptr;
        if (job) Plan(rank, *job);
        slot_.Publish(job);
      } else {
        job = slot_.Wait(&seen, options_.idle_spin);
      }
      if (!job) break;
      ExecuteJob(rank, *job);
    }
  }

  // Free the graphs, then the weights, on the thread that owns the device.
  try {
    rank.graphs.reset();
    rank.dense.reset();
    rank.score.reset();
    rank.model.reset();
    ReleaseCachedMemory(rank.device);
  } catch (...) {
  }
}

void Replica::Plan(const Rank& lead, Job& job) const {
  job.hook = host_.LayerHookForNextJob();
  // Test hooks run between layers, which only the eager path has.
  job.graphed = lead.graphs && !job.hook && lead.graphs->Fits(job.batch);
}

void Replica::ExecuteJob(Rank& rank, Job& job) {
  CommunicatorGroup& group = *comm;
  Communicator& rank_comm = group.rank(rank.index);
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
        layer_hook = [&](int layer) { (*job.hook)(index_, rank.index, layer); };
      }
      pooled = rank.model->Forward(in, rank_comm, layer_hook);
    }
    if (rank.index == 0) {
      // The pooled rows are whole on rank 0 (graph-replayed or not): the Dense layers and the
      // score head run here, eagerly, outside any captured graph.
      if (rank.dense) pooled = rank.dense->Forward(pooled);
      if (rank.score) pooled = rank.score->Forward(pooled);
      at::Tensor host = pooled;
      if (!pooled.device().is_cpu()) {
        host = at::empty(pooled.sizes(), pooled.options().device(at::kCPU).pinned_memory(true));
        host.copy_(pooled, /*non_blocking=*/true);
      }
      WaitForDevice(rank.device, group, options_.device_spin);
      rank_comm.ThrowIfCollectivesFailed();
      host = host.contiguous();
      rows = TruncateAndNormalize(host.data_ptr<float>(), host.size(0), host.size(1),
                                  job.batch.dimensions, options_.normalize);
    } else {
      // Surface asynchronous errors now and leave the stream idle for the next job.
      WaitForDevice(rank.device, group, options_.device_spin);
      rank_comm.ThrowIfCollectivesFailed();
    }
  } catch (...) {
    error = std::current_exception();
    // Peers may be waiting for this rank in a collective: release them.
    group.Abort();
    try {
      WaitForDevice(rank.device, group, options_.device_spin);
    } catch (...) {
      if (IsCommAborted(error)) error = std::current_exception();
    }
  }
  rank.job_error = error;
  // Every rank is out of its collectives. On GPUs the ranks get here within microseconds of each
  // other (their last all-reduce lined them up): the first spins rather than sleeps for the rest.
  barrier_.ArriveAndWait(rank.device.is_cuda() ? options_.device_spin
                                               : std::chrono::microseconds(0));
  if (rank.index == 0) Settle(job, std::move(rows));
}

// Captures the graphs of one rank after its replica's warm-up; every rank of the replica calls it
// at the same point. A failed capture is not fatal: the replica serves eagerly and says why. A rank
// whose capture fails aborts the group (its peers may be waiting for it in an all-reduce of the
// capture's eager runs); then no rank keeps its graphs and rank 0 rebuilds the communicators.
void Replica::CaptureGraphs(Rank& rank) {
  const auto started = std::chrono::steady_clock::now();
  const std::string who = "replica " + std::to_string(index_) + ": ";
  Communicator& rank_comm = comm->rank(rank.index);
  try {
    GraphOptions graph_options;
    graph_options.max_tokens = std::min<int64_t>(options_.cuda_graph_max_tokens,
                                                 ForwardGraphs::TokenLimit(*rank.model, rank_comm));
    rank.graphs = std::make_unique<ForwardGraphs>(*rank.model, graph_options);
    rank.graphs->Capture(rank_comm);
  } catch (...) {
    rank.graph_error = std::current_exception();
    rank.graphs.reset();
    comm->Abort();
  }
  barrier_.ArriveAndWait();
  const std::exception_ptr failure = RootCause(&Rank::graph_error);
  if (failure) rank.graphs.reset();
  if (rank.index == 0) {
    if (failure) {
      host_.Report(who + "CUDA graphs are off: " + ClassifyError(failure).what());
      if (comm->aborted()) {
        try {
          comm->Rebuild();
        } catch (...) {
          warmup_error = std::current_exception();
        }
      }
    } else {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - started)
                          .count();
      host_.Report(who + "captured CUDA graphs for " + std::to_string(rank.graphs->buckets()) +
                   " batch sizes up to " + std::to_string(rank.graphs->max_tokens()) +
                   " tokens in " + std::to_string(ms) + " ms");
    }
  }
  barrier_.ArriveAndWait();  // the group is usable again before any rank goes on
}

void Replica::Settle(Job& job, std::vector<float> rows) {
  const std::exception_ptr root = RootCause(&Rank::job_error);
  if (!root) {
    if (job.done) job.done(std::move(rows), nullptr);
    return;
  }

  Error error = ClassifyError(root);
  if (error.code() == ErrorCode::kOutOfMemory) {
    try {
      ReleaseCachedMemory(ranks.front()->device);
    } catch (...) {
    }
  }
  if (error.code() == ErrorCode::kDeviceFailed) {
    // The device (or its context) may be unusable: take the replica out rather than rebuild.
    host_.ReplicaFailed(*this, "replica " + std::to_string(index_) + ": " + error.what());
  } else if (comm->aborted()) {
    try {
      comm->Rebuild();
    } catch (...) {
      host_.ReplicaFailed(*this, "replica " + std::to_string(index_) +
                                     ": could not rebuild its communicators: " +
                                     ClassifyError(std::current_exception()).what());
    }
  }
  if (job.done) job.done({}, &error);
}

}  // namespace qwen3
