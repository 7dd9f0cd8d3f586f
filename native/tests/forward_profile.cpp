// forward_profile: times the engine's forward on one batch shape and writes a Kineto (PyTorch
// profiler) trace of it, with every GPU kernel the forward ran on every rank. A developer tool for
// the GPU hosts (scripts/device/run.sh step `profile`; bench/trace-summary.ts reads the trace),
// built beside the GoogleTest suite; on the CPU it traces the CPU operators instead.
//
//   forward_profile --model=DIR [--device=cuda|cpu] [--gpus=0,1] [--tp=2] [--texts=1]
//                   [--tokens=16] [--graph-max=512] [--peer=1] [--warmup=20] [--runs=200]
//                   [--traced=20] [--trace=trace.json] [--gap-us=0] [--device-spin-us=10000]
//                   [--idle-spin-us=0]
//
// Prints one JSON line: the layout, the shape, and p50/p90/min of Embed() over --runs calls made
// without the profiler; then traces --traced calls, each inside a user scope "forward".
#include <ATen/record_function.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/engine.h"
#include "tool_main.h"

namespace {

namespace tools = qwen3::tools;
using qwen3::DeviceKind;
using qwen3::DType;
using qwen3::Engine;
using qwen3::EngineOptions;
using qwen3::PackedBatch;

std::vector<int> ParseIds(const std::string& list) {
  std::vector<int> ids;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) ids.push_back(std::stoi(item));
  }
  return ids;
}

// `texts` texts of `tokens` tokens each; ids spread over the first 100k of the vocabulary.
PackedBatch MakeBatch(int texts, int tokens, int dimensions) {
  PackedBatch b;
  b.cu_seqlens = {0};
  for (int s = 0; s < texts; ++s) {
    for (int t = 0; t < tokens; ++t) b.token_ids.push_back((s * 7919 + t * 104729 + 13) % 100000);
    b.cu_seqlens.push_back(static_cast<int32_t>(b.token_ids.size()));
    b.dimensions.push_back(dimensions);
  }
  return b;
}

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  const double rank = p * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<size_t>(rank);
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (rank - static_cast<double>(lo));
}

int Run(const tools::Args& args) {
  using tools::Get;
  const auto GetInt = [&](const std::string& key, int fallback) {
    return static_cast<int>(tools::GetInt(args, key, fallback));
  };
  EngineOptions o;
  o.model_path = Get(args, "model", "");
  if (o.model_path.empty()) throw std::invalid_argument("--model=DIR is required");
  const bool cuda = Get(args, "device", "cuda") == "cuda";
  o.device = cuda ? DeviceKind::kCuda : DeviceKind::kCpu;
  o.dtype = cuda ? DType::kBFloat16 : DType::kFloat32;
  o.tensor_parallel_size = GetInt("tp", 1);
  o.device_ids = ParseIds(Get(args, "gpus", "0"));
  o.cuda_graph_max_tokens = GetInt("graph-max", 512);
  o.peer_all_reduce = GetInt("peer", 1) != 0;
  o.device_spin_us = static_cast<uint32_t>(GetInt("device-spin-us", 10000));
  o.idle_spin_us = static_cast<uint32_t>(GetInt("idle-spin-us", 0));
  // A pause between timed calls, as between a server's requests: the rank threads go idle (and
  // sleep unless --idle-spin-us covers the gap), which back-to-back calls never let them do.
  const int gap_us = GetInt("gap-us", 0);
  const int texts = GetInt("texts", 1);
  const int tokens = GetInt("tokens", 16);
  const int warmup = GetInt("warmup", 20);
  const int runs = GetInt("runs", 200);
  const int traced = GetInt("traced", 20);
  const std::string trace = Get(args, "trace", "trace.json");

  auto engine = Engine::Load(o);
  const auto info = engine->Info();
  const PackedBatch batch = MakeBatch(texts, tokens, static_cast<int>(info.hidden_size));
  for (int i = 0; i < warmup; ++i) engine->Embed(batch);

  std::vector<double> ms;
  ms.reserve(static_cast<size_t>(runs));
  for (int i = 0; i < runs; ++i) {
    if (gap_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(gap_us));
    const auto start = std::chrono::steady_clock::now();
    engine->Embed(batch);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
  }

  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  using torch::profiler::impl::ProfilerState;
  const prof::ProfilerConfig config(ProfilerState::KINETO);
  std::set<ActivityType> activities{ActivityType::CPU};
  if (cuda) activities.insert(ActivityType::CUDA);
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  for (int i = 0; i < traced; ++i) {
    RECORD_USER_SCOPE("forward");
    engine->Embed(batch);
  }
  auto result = prof::disableProfiler();
  std::string written = trace;
  try {
    result->save(trace);
  } catch (const c10::Error& e) {
    // Debian's libtorch is built without Kineto: the timings still stand, there is no trace.
    std::fprintf(stderr, "forward_profile: no trace written: %s\n", e.what_without_backtrace());
    written.clear();
  }
  engine->Shutdown();

  std::printf(
      "{\"device\":\"%s\",\"gpus\":\"%s\",\"tp\":%d,\"graphMax\":%d,\"peer\":%s,\"texts\":%d,"
      "\"tokens\":%d,\"runs\":%d,\"gapUs\":%d,\"deviceSpinUs\":%u,\"idleSpinUs\":%u,"
      "\"p50Ms\":%.4f,\"p90Ms\":%.4f,\"minMs\":%.4f,\"trace\":\"%s\"}\n",
      cuda ? "cuda" : "cpu", Get(args, "gpus", "0").c_str(), o.tensor_parallel_size,
      o.cuda_graph_max_tokens, o.peer_all_reduce ? "true" : "false", texts, tokens, runs, gap_us,
      o.device_spin_us, o.idle_spin_us, Percentile(ms, 0.5), Percentile(ms, 0.9),
      *std::min_element(ms.begin(), ms.end()), written.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return qwen3::tools::Main("forward_profile", argc, argv, Run); }
