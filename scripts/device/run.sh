#!/usr/bin/env bash
# shellcheck disable=SC2317  # the step_* functions are called by name ("step_$name"), which shellcheck cannot follow
# Runs on the GPU host, from the repository root, after scripts/device/pack.sh made .device/ here and
# the device tool carried it there. Steps run in the order given; results land in $OUT:
#   summary.md          one line per step (status, seconds) plus each step's result table
#   logs.txt            every step's full output
#   parity-tiny.json    the HF reference fixture (step fixture)
#   family-fixtures.tar.gz  the family fixtures (step families; the tool returns at most 8 files)
#   rerank-fixtures.tar.gz  the reranker fixtures (step rerankfixtures)
#   parity-result.json  the Node parity check(s) (step parity)
#   bench-results.json  server vs sentence-transformers (step bench)
#   rerank-bench.json   reranking: server vs the model card's transformers code (step rerankbench)
#
#   bash scripts/device/run.sh                      # = gpu build fixture parity
#   bash scripts/device/run.sh gpu build parity checkgpu model4b bench
#   bash scripts/device/run.sh gpu build rerankbench
# docs/gpu-host.md has the device-tool invocation and what each step costs.
#
# Steps:
#   gpu       nvidia-smi, torch/CUDA versions (always cheap)
#   build     compile the addon with CUDA against the host's PyTorch (docker/build-native.sh addon, -j16)
#   nativetests  the GoogleTest suite built against the host's PyTorch (CUDA kernels, graphs, NCCL TP,
#             the encoders' flash path)
#   fixture   generate the tiny checkpoint (seed 0) and run scripts/reference/reference.py on it
#   parity    bench/parity.js: the engine vs the fixture (cuda bf16 at TP 1, and 2 with >= 2 GPUs; cpu fp32)
#   families  every tiny family checkpoint of FAMILY_MATRIX (issue 18), generated at seed 0, then
#             scripts/reference/st_reference.py (sentence-transformers fp32 + an AutoModel cross-check) on
#             each -> $OUT/family-fixtures.tar.gz (parity-<name>.json, for test/fixtures/; FAMILIES picks
#             names; FAMILY_DEVICE (cuda) for the reference; a fixture whose HF paths disagree goes to
#             family-rejected.tar.gz). No addon needed
#   familiesbf16  per realistic preset (FAMILIES_BF16, default bert-base xlm-roberta-base qwen2-1.5b
#             llama-1b mistral-7b): generate, st_reference.py fp32 on the GPU, the engine in bf16 through
#             bench/parity.js -> $OUT/families-bf16-result.json, min cosine per family in the summary
#   rerankfixtures  the tiny reranker checkpoints of RERANK_MATRIX (issue 17: qwen3-reranker-tiny tied,
#             --untied, --seq-cls), generated at seed 0, then scripts/reference/rerank_reference.py (the
#             Qwen3-Reranker model card's transformers code, fp32 on the CPU) over
#             test/fixtures/rerank-pairs.json on each -> $OUT/rerank-fixtures.tar.gz (rerank-<name>.json,
#             for test/fixtures/; RERANKERS picks names; a fixture whose alone and batched scores
#             disagree goes to rerank-rejected.tar.gz). No addon needed
#   rerankbf16  per reranker preset (RERANK_BF16, default qwen3-reranker-4b): generate, the card's code
#             in fp32 on the GPU (and in bf16, recorded as transformers' own bf16 error), the engine in
#             bf16 through bench/rerank-parity.js (RERANK_BF16_THRESHOLD, default its 0.01) ->
#             $OUT/rerank-bf16-result.json, errors and order per preset in the summary
#   encoderbench  bert-base (bge-base's shape) on the builtin corpus's short queries: the API server at
#             ENCODER_POINTS vs sentence-transformers (baseline_bench.py) in ENCODER_ST_DTYPES at
#             ENCODER_ST_BATCHES on the same GPU -> $OUT/encoder-bench.json, ratio in the summary
#   rerankbench  issue 17: the qwen3-reranker-4b checkpoint (generated at seed 0 into RERANK_MODEL,
#             default models/Qwen3-Reranker-4B, ~8 GB), the API server on one GPU (RERANK_GPU, 0) in bf16,
#             admin bench --task rerank at RERANK_CONCURRENCY ("1 4 16"; RERANK_REQUESTS, default
#             max(20, 4 x concurrency)), each request one query against RERANK_DOCUMENTS (100) builtin
#             passages of ~RERANK_DOC_TOKENS (300) tokens; then scripts/reference/rerank_baseline.py (the
#             model card's transformers code, bf16) on the same workload and GPU at RERANK_BASELINE_BATCHES
#             (8,16,32,100; RERANK_BASELINE_LAST_LOGITS=1 adds a run with logits_to_keep=1)
#             -> $OUT/rerank-bench.json, pairs/s ours / baseline in the summary
#   multimodel  issue 17 criterion 4: the 4b embedding and qwen3-reranker-4b checkpoints (seed 0) served
#             by one process through MODELS, both on GPU MULTI_GPU (0; the reranker placed there by GPUS): /v1/models, /health and /metrics
#             name both; admin bench (embed MULTI_EMBED_POINT 32x8, rerank c4) against each alone in a
#             single-model server, then in the MODELS server one after the other and both at once
#             -> $OUT/multi-model.json, a line per run in the summary
#   checkgpu  admin check-gpu and admin embed on the tiny checkpoint
#   image     the CUDA image's build steps (docker/build-native.sh addon, stage, check: ldd against
#             docker/cuda-runtime-libs.txt), then the API from the staged layout on the 4b checkpoint
#             (or tiny) with a short bench (IMAGE_BENCH_POINTS, default "1x1 32x8")
#   model4b   generate the 4b checkpoint (seed 0) into models/Qwen3-Embedding-4B (~8 GB, ~30 s)
#   model8b   the same for the 8b (models/Qwen3-Embedding-8B, ~16 GB); profile8b and layouts8b run
#             the profile and layouts steps on it (results tagged 8b, layouts-8b.json)
#   parity4b  HF fp32 reference on the 4b checkpoint, then the engine in bf16 at every TP size that fits
#   enginelat engine-only latency (no HTTP) per layout and batch shape, CUDA graphs on and off
#             (ENGINE_LAYOUTS, ENGINE_SHAPES, ENGINE_RUNS) -> engine-latency.json
#   layouts   the API server per GPU layout (tp1, tp2, dp2, tp4, tp2x2, dp4 as GPUs allow): short-query
#             latency (base64 rows as the OpenAI SDKs ask; a node:http client, then fetch) and throughput through HTTP, ratios against tp1 (BENCH_LAYOUTS, BENCH_THROUGHPUT;
#             a layout is name:visibleGpus:tp[:flags], flags comma-separated: nccl = TP_PEER_ALL_REDUCE=false,
#             busy = BUSY_POLL=true; BENCH_SERVER_PROBE=1
#             preloads scripts/device/server-probe.js: the server's own time per request;
#             BENCH_CPU_DMA_LATENCY=N holds /dev/cpu_dma_latency at N us meanwhile)
#   profile   forward_profile per layout (PROFILE_LAYOUTS name:gpus:tp:graphMax[:nccl[:args]], args
#             comma-separated forward_profile flags without their dashes, e.g. gap-us=2000; PROFILE_SHAPE
#             textsxtokens, default 1x16): Embed() latency and the forward's kernels by kind -> profile.md
#   gemmsearch  the forward's GEMMs at 16 tokens (GEMM_TOKENS, GEMM_TP "1 2"): at::linear vs the
#             best of cuBLASLt's algorithms -> gemm-search.md (after nativetests)
#   overhead  the server's own time per short query on this host's CPU with a fake engine (at once,
#             after 3 ms, after 3 ms + BUSY_POLL; OVERHEAD_POINTS, OVERHEAD_REQUESTS, OVERHEAD_ROUNDS)
#             -> server-overhead.md
#   familyload  generate every tiny family preset (+ a bert one with mean pooling and Dense) and check
#             that transformers/sentence-transformers load them cleanly -> generated-families.json
#   binload   generate the tiny checkpoint as safetensors and as pytorch_model.bin (--format bin: bf16,
#             bf16 sharded with an index, f16, f32), check with scripts/reference/verify_torch_bin.py that
#             torch.load(weights_only=True, and mmap=True) reads every tensor bit-equal to safetensors;
#             writes torch.save fixtures to $OUT/torch-bin/; with the addon built, admin embed on cuda
#             must give identical vectors from both formats (BINLOAD_4B=1: also the 4b preset in
#             5 GiB .bin shards, which need zip64 records) -> torch-bin.json
#   bench     the API server + admin bench at several concurrency/batch points, then
#             scripts/reference/baseline_bench.py on the same corpus and GPU; ratios in the summary
# Environment knobs: BENCH_MODEL (default models/Qwen3-Embedding-4B, else tiny), BENCH_REQUESTS (400),
# BENCH_POINTS ("1x1 16x1 32x8 64x16": concurrency x batch), PARITY_TP (default: 1 and 2 when >= 2
# GPUs), PARITY_FIXTURE (default: $OUT/parity-tiny.json if the fixture step ran, else
# test/fixtures/parity-tiny.json), CMAKE_EXTRA_ARGS, TORCH_CUDA_ARCH_LIST (9.0).
# No -e: a failing step is recorded in the summary and the next step still runs.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
OUT=${OUT:-$ROOT/.device-out}
export WORK=${WORK:-/tmp/qwen3-device}
mkdir -p "$OUT" "$WORK" build
LOG=$OUT/logs.txt
SUMMARY=$OUT/summary.md
: > "$LOG"
# Never let NCCL or PyTorch use NVLink multicast on the shared hosts.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
TINY=models/Qwen3-Embedding-tiny
BIG=models/Qwen3-Embedding-4B
BIG8=models/Qwen3-Embedding-8B
RERANK4B=models/Qwen3-Reranker-4B
ADDON=build/native/Release/qwen3_embed.node
# The unpacked bundle: dist/ + node_modules/ (aliases are compiled to relative paths, so it runs anywhere).
APP=$ROOT/build/device-app
export NATIVE_ADDON_PATH=$ROOT/$ADDON

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(gpu build fixture parity)

{
  echo "# GPU host run $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "steps: ${steps[*]}"
  echo
  echo "| step | status | seconds |"
  echo "| --- | --- | --- |"
} > "$SUMMARY"
RESULTS=$WORK/results.md
: > "$RESULTS"

# ---------------------------------------------------------------------------------------------------
setup() {
  mkdir -p build/device-stamps
  if [ ! -f .device/node.xz ] || [ ! -f .device/app.tar.xz ]; then
    echo "no .device bundle: run scripts/device/pack.sh here and carry .device" >&2; return 1
  fi
  local node_sum app_sum
  node_sum=$(md5sum < .device/node.xz | cut -c1-32)
  if [ ! -x build/device-stamps/node ] || [ "$(cat build/device-stamps/node.md5 2>/dev/null)" != "$node_sum" ]; then
    xz -dc .device/node.xz > build/device-stamps/node && chmod +x build/device-stamps/node
    echo "$node_sum" > build/device-stamps/node.md5
  fi
  # dist/ and node_modules/ unpack beside the repository's own (never over them), into $APP.
  app_sum=$(md5sum < .device/app.tar.xz | cut -c1-32)
  if [ ! -d "$APP/node_modules" ] || [ ! -d "$APP/dist" ] || [ "$(cat build/device-stamps/app.md5 2>/dev/null)" != "$app_sum" ]; then
    rm -rf "$APP"
    mkdir -p "$APP"
    tar -xJf .device/app.tar.xz -C "$APP"
    echo "$app_sum" > build/device-stamps/app.md5
  fi
  export PATH=$ROOT/build/device-stamps:$PATH
  echo "node $(node --version) ($(command -v node)); bundle: $(head -3 .device/MANIFEST.txt | tr '\n' ' ')"
}

step_gpu() {
  nvidia-smi --query-gpu=index,name,memory.total,memory.used,driver_version,pstate --format=csv
  local count
  count=$(nvidia-smi --list-gpus | wc -l)
  [ "$count" -gt 1 ] && nvidia-smi topo -m
  python3 - <<'PY'
import torch, platform
print(f"python {platform.python_version()} torch {torch.__version__} cuda {torch.version.cuda} "
      f"cudnn {torch.backends.cudnn.version()} devices {torch.cuda.device_count()} "
      f"nccl {'.'.join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else '-'}")
try:
    import transformers, sentence_transformers
    print(f"transformers {transformers.__version__} sentence-transformers {sentence_transformers.__version__}")
except Exception as error:  # noqa: BLE001
    print(f"HF libraries: {error}")
PY
  command -v nvcc >/dev/null && nvcc --version | tail -2
  cmake --version | head -1
  echo "cores $(nproc), memory $(free -g | awk '/Mem:/ {print $2}') GiB, disk $(df -h . | awk 'NR==2 {print $4}') free"
  echo "| gpu | $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1) x $count |" >> "$RESULTS"
}

# Sets json_args to the bundle's copy of the nlohmann-json headers (scripts/device/pack.sh), when
# there is one: the GPU host has no network and may lack nlohmann-json3-dev.
set_json_args() {
  json_args=()
  if [ -f "$ROOT/.device/include/nlohmann/json.hpp" ]; then
    json_args=(-DQWEN3_NLOHMANN_JSON_INCLUDE_DIR="$ROOT/.device/include")
  fi
}

step_build() {
  [ -f CMakeLists.txt ] || { echo "no CMakeLists.txt at the repository root" >&2; return 1; }
  # The CUDA image's build steps (plain cmake with the definitions cmake-js passes, the packed header
  # packages; the NVIDIA wheels' lib directories in the addon's RUNPATH), so a GPU run builds as the image does.
  JOBS=16 bash docker/build-native.sh addon "$APP/node_modules" || return 1
  node -e '
    const addon = require(process.argv[1]);
    console.log(JSON.stringify({ buildInfo: addon.buildInfo(), cudaDevices: addon.cudaDevices() }));
  ' "$ROOT/$ADDON" || return 1
  # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
  echo "| addon | $(node -e 'const a=require(process.argv[1]);const b=a.buildInfo();console.log(`torch ${b.torchVersion}, cuda ${b.cuda}, nccl ${b.nccl}, flash ${b.flashAttention}`)' "$ROOT/$ADDON") |" >> "$RESULTS"
}

admin() { node "$APP/dist/apps/admin/src/main.js" "$@"; }

step_nativetests() {
  local torch_prefix generator=() json_args
  set_json_args
  torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
  command -v ninja >/dev/null && generator=(-G Ninja)
  # shellcheck disable=SC2086
  cmake -S native/tests -B build/native-tests "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$torch_prefix" "${json_args[@]}" ${CMAKE_EXTRA_ARGS:-} \
    > "$WORK/cfg-tests.log" 2>&1 \
    || { tail -40 "$WORK/cfg-tests.log"; return 1; }
  grep -E "qwen3:" "$WORK/cfg-tests.log"
  cmake --build build/native-tests -j 16 > "$WORK/build-tests.log" 2>&1 \
    || { grep -E -A5 "error" "$WORK/build-tests.log" | head -80; return 1; }
  # One process per test, each under a time limit, output streamed: a hang names its test and
  # leaves a backtrace (gdb when the host has it) instead of eating the whole call.
  local status=0 passed=0 failed_tests=() test pid
  local filter=${NATIVE_TEST_FILTER:-CudaTest.*:CudaFamiliesTest.*:CudaScoreHeadTest.*:EncoderCudaTest.*:FusedKernelTest.*:PeerAllReduceTest.*:BuildTest.*}
  for test in $(build/native-tests/native_tests --gtest_filter="$filter" --gtest_list_tests |
      awk '/^[^ ]/ {suite=$1} /^  / {print suite $1}'); do
    build/native-tests/native_tests --gtest_filter="$test" > "$WORK/test.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 "${NATIVE_TEST_TIMEOUT:-90}"); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "TIMEOUT $test"
      command -v gdb > /dev/null && timeout 60 gdb -p "$pid" -batch -ex 'thread apply all bt 12' 2>/dev/null | grep -E '^(Thread|#)' | head -120
      kill -9 "$pid"; wait "$pid" 2>/dev/null
      failed_tests+=("$test (timeout)"); status=1
    elif wait "$pid"; then
      passed=$((passed + 1))
      grep -E "^\[ *(OK|SKIPPED) *\]" "$WORK/test.log" | head -1
    else
      failed_tests+=("$test"); status=1
      grep -v "^\[ *RUN" "$WORK/test.log" | tail -40
    fi
  done
  echo "| native tests ($filter) | $passed passed; failed: ${failed_tests[*]:-none} |" >> "$RESULTS"
  return "$status"
}

step_enginelat() {
  # The engine alone (no HTTP, no tokenizer): sequential embed() of fixed batches, per layout.
  [ -f "$ADDON" ] || { echo "no addon: run the build step" >&2; return 1; }
  local model=${BENCH_MODEL:-$BIG} gpus layouts
  gpus=$(nvidia-smi --list-gpus | wc -l)
  layouts="tp1:0:1:512 tp1-eager:0:1:0"
  [ "$gpus" -ge 2 ] && layouts="$layouts tp2:0,1:2:512 tp2-eager:0,1:2:0 tp2-nccl:0,1:2:0:nccl"
  layouts=${ENGINE_LAYOUTS:-$layouts}
  local status=0
  timeout "${ENGINE_TIMEOUT:-300}" node "$APP/dist/bench/engine-latency.js" --model "$model" --device cuda \
    --layouts "$layouts" --shapes "${ENGINE_SHAPES:-1x16,8x16,4x128,32x128}" --runs "${ENGINE_RUNS:-200}" \
    --json "$OUT/engine-latency.json" | tee "$WORK/enginelat.txt" || status=1
  tr '\t' ' ' < "$WORK/enginelat.txt" | sed 's/^/| engine latency | /; s/$/ |/' >> "$RESULTS"
  return "$status"
}

step_profile() {
  # Where one forward's GPU time goes, per layout: forward_profile (built by the nativetests step)
  # times Embed() and writes a Kineto trace; bench/trace-summary sorts its kernels -> profile.md.
  local bin=build/native-tests/forward_profile model=${BENCH_MODEL:-$BIG} gpus layouts status=0
  [ -x "$bin" ] || { echo "no $bin: run the nativetests step" >&2; return 1; }
  gpus=$(nvidia-smi --list-gpus | wc -l)
  layouts="tp1:0:1:512"
  [ "$gpus" -ge 2 ] && layouts="$layouts tp2:0,1:2:512"
  local shape=${PROFILE_SHAPE:-1x16} layout name ids tp graph nccl extra line tag=${RUN_TAG:+$RUN_TAG }
  for layout in ${PROFILE_LAYOUTS:-$layouts}; do
    IFS=: read -r name ids tp graph nccl extra <<< "$layout"
    local more=()
    [ -n "$extra" ] && IFS=, read -r -a more <<< "$extra" && more=("${more[@]/#/--}")
    line=$(timeout 180 "$bin" --model="$model" --gpus="$ids" --tp="$tp" --graph-max="$graph" \
      --peer="$([ "$nccl" = nccl ] && echo 0 || echo 1)" --texts="${shape%x*}" --tokens="${shape#*x}" "${more[@]}" \
      --trace="$WORK/trace-${RUN_TAG:-}$name.json") || { status=1; continue; }
    echo "$line"
    echo "| profile $tag$name $shape | $line |" >> "$RESULTS"
    { node "$APP/dist/bench/trace-summary.js" "$WORK/trace-${RUN_TAG:-}$name.json" --label "$tag$name, $shape: $line"
      echo; } | tee -a "$OUT/profile.md" || status=1
  done
  return "$status"
}

step_gemmsearch() {
  # The forward's matrix products at a short query's size: at::linear against every algorithm
  # cuBLASLt's heuristic offers (native/tests/gemm_search.cpp) -> gemm-search.md. Needs the
  # nativetests step's build directory.
  [ -d build/native-tests ] || { echo "no build/native-tests: run the nativetests step" >&2; return 1; }
  cmake --build build/native-tests --target gemm_search -j 16 > "$WORK/build-gemm.log" 2>&1 \
    || { grep -E -A5 "error" "$WORK/build-gemm.log" | head -40; return 1; }
  local tp status=0
  for tp in ${GEMM_TP:-1 2}; do
    # Outside a pipeline's { } group, so that a failure reaches the step's status.
    build/native-tests/gemm_search --tp="$tp" --tokens="${GEMM_TOKENS:-16}" | tee -a "$OUT/gemm-search.md" || status=1
    echo | tee -a "$OUT/gemm-search.md"
  done
  return "$status"
}

step_binload() {
  # The generator's torch.save writer against PyTorch's own reader (and the addon's .bin loader).
  local dir=$WORK/binload status=0 pairs=() dtype
  rm -rf "$dir"; mkdir -p "$dir"
  for dtype in bf16 f16 f32; do
    admin checkpoint generate --preset tiny --seed 0 --dtype "$dtype" --out "$dir/st-$dtype" > /dev/null || return 1
    admin checkpoint generate --preset tiny --seed 0 --dtype "$dtype" --format bin --out "$dir/bin-$dtype" || return 1
    pairs+=(--pair "$dir/st-$dtype" "$dir/bin-$dtype")
  done
  admin checkpoint generate --preset tiny --seed 0 --format bin --max-shard-size 100MB --out "$dir/bin-sharded" || return 1
  pairs+=(--pair "$dir/st-bf16" "$dir/bin-sharded")
  if [ "${BINLOAD_4B:-0}" = 1 ]; then
    # 5 GiB shards: the first .bin passes 4 GiB, so its later records need zip64 (~15 GB of disk).
    admin checkpoint generate --preset 4b --seed 0 --out "$dir/st-4b" > /dev/null || return 1
    admin checkpoint generate --preset 4b --seed 0 --format bin --max-shard-size 5GiB --out "$dir/bin-4b" || return 1
    pairs+=(--pair "$dir/st-4b" "$dir/bin-4b")
  fi
  admin model inspect "$dir/bin-sharded" || status=1
  python3 scripts/reference/verify_torch_bin.py "${pairs[@]}" --fixtures "$OUT/torch-bin" \
    --json "$OUT/torch-bin.json" || status=1
  # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
  node -e '
    const r = require(process.argv[1]);
    for (const p of r.pairs) console.log(`| binload ${p.bin.split("/").pop()} | torch ${r.torch} weights_only read+mmap: ${p.ok ? "equal" : "FAILED: " + p.problems.slice(0, 3).join("; ")} (${p.tensors ?? 0} tensors, ${(p.files ?? []).length} file(s)) |`);
  ' "$OUT/torch-bin.json" >> "$RESULTS" 2>/dev/null
  if [ -f "$ADDON" ]; then
    local texts=("the quick brown fox" "pytorch_model.bin loads as safetensors do")
    admin embed --model-path "$dir/st-bf16" --device cuda --dtype bfloat16 --json "${texts[@]}" > "$dir/st.json" || status=1
    admin embed --model-path "$dir/bin-sharded" --device cuda --dtype bfloat16 --json "${texts[@]}" > "$dir/bin.json" || status=1
    # The vectors only (model ids differ with the directory): the last JSON line of each output.
    if node -e '
      const fs = require("fs");
      const rows = (p) => JSON.stringify(JSON.parse(fs.readFileSync(p, "utf8").trim().split("\n").pop()).data);
      process.exit(rows(process.argv[1]) === rows(process.argv[2]) ? 0 : 1);
    ' "$dir/st.json" "$dir/bin.json"; then
      echo "| binload addon | cuda bf16 embeddings from bin-sharded identical to safetensors |" >> "$RESULTS"
    else
      echo "| binload addon | cuda bf16 embeddings DIFFER (or failed) between .bin and safetensors |" >> "$RESULTS"
      status=1
    fi
  fi
  return "$status"
}

step_fixture() {
  admin checkpoint generate --preset tiny --seed 0 --out "$TINY" --force || return 1
  admin model inspect "$TINY" || return 1
  python3 scripts/reference/reference.py --model "$TINY" --texts test/fixtures/parity-texts.json \
    --out "$OUT/parity-tiny.json" --device cuda
  local status=$?
  # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
  node -e '
    const f = require(process.argv[1]);
    const a = f.agreement;
    console.log(`| fixture | ${f.items.length} texts, dims ${f.dimensions.join("/")}; ST vs AutoModel min cos ${a.sentenceTransformersVsAutoModelMinCosine}; padded batch min cos ${a.leftPaddedBatchVsSingleMinCosine}; tokenizer problems ${a.tokenizerPostProcessorProblems.length}; ok ${a.ok} |`);
  ' "$OUT/parity-tiny.json" >> "$RESULTS" 2>/dev/null
  return "$status"
}

# The tiny family checkpoints CI checks the CPU engine against (test/families-parity.e2e-spec.ts):
# fixture name | `admin checkpoint generate` arguments (seed 0 is added). FAMILIES picks names.
FAMILY_MATRIX=(
  "qwen2-tiny|--preset qwen2-tiny"
  "mistral-tiny|--preset mistral-tiny"
  "llama-tiny|--preset llama-tiny"
  "bert-tiny|--preset bert-tiny"
  "bert-tiny-mean|--preset bert-tiny --pooling mean"
  "bert-tiny-dense64|--preset bert-tiny --dense 64"
  "xlm-roberta-tiny|--preset xlm-roberta-tiny"
  "xlm-roberta-tiny-mean-noprompt|--preset xlm-roberta-tiny --pooling mean --no-include-prompt"
  "xlm-roberta-tiny-no-normalize|--preset xlm-roberta-tiny --no-normalize"
)

hf_versions() {
  python3 -c 'import torch, transformers, sentence_transformers, tokenizers; print(f"torch {torch.__version__}, transformers {transformers.__version__}, sentence-transformers {sentence_transformers.__version__}, tokenizers {tokenizers.__version__}")'
}

step_families() {
  # Each entry: generate (seed 0), then scripts/reference/st_reference.py in fp32 on the GPU; a failing
  # entry is reported and the next one runs. The fixtures travel back as one archive (the device tool
  # returns at most 8 files): $OUT/family-fixtures.tar.gz, to unpack into test/fixtures/.
  local versions dir fixtures=$WORK/family-fixtures entry name args status=0 rc line ok=() bad=()
  if ! versions=$(hf_versions); then
    echo "python3 lacks torch/transformers/sentence-transformers" >&2
    echo "| families | FAILED: python3 lacks torch/transformers/sentence-transformers |" >> "$RESULTS"; return 1
  fi
  echo "$versions"
  echo "| families: HF versions | $versions |" >> "$RESULTS"
  rm -rf "$fixtures" "$WORK/family-rejected" && mkdir -p "$fixtures" "$WORK/families"
  for entry in "${FAMILY_MATRIX[@]}"; do
    name=${entry%%|*} args="${entry#*|} --seed 0"
    if [ -n "${FAMILIES:-}" ] && [[ " $FAMILIES " != *" $name "* ]]; then continue; fi
    echo "=== family $name: checkpoint generate $args"
    dir=$WORK/families/$name
    # shellcheck disable=SC2086  # args is a list of flags
    if ! admin checkpoint generate $args --out "$dir" --force > "$WORK/generate-$name.log" 2>&1; then
      tail -20 "$WORK/generate-$name.log"
      echo "| family $name | FAILED: checkpoint generate $args (log above) |" >> "$RESULTS"
      bad+=("$name"); status=1; continue
    fi
    (cd "$dir" && find . -type f | sort | tr '\n' ' '); echo
    timeout "${FAMILY_TIMEOUT:-180}" python3 scripts/reference/st_reference.py --model "$dir" \
      --texts test/fixtures/parity-texts.json --out "$fixtures/parity-$name.json" --name "$name" \
      --generator-args "$args" --device "${FAMILY_DEVICE:-cuda}" > "$WORK/reference-$name.json"
    rc=$?
    line=$(tail -1 "$WORK/reference-$name.json")
    echo "$line"
    if [ "$rc" = 0 ]; then
      ok+=("$name")
    else
      # Exit 2: written, but the HF paths disagree; kept apart so it cannot be committed by mistake.
      [ -f "$fixtures/parity-$name.json" ] && mkdir -p "$WORK/family-rejected" &&
        mv "$fixtures/parity-$name.json" "$WORK/family-rejected/"
      bad+=("$name"); status=1
    fi
    # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
    node -e '
      const [name, rc, line] = process.argv.slice(1);
      let r; try { r = JSON.parse(line); } catch { r = undefined; }
      const f = (x) => (typeof x === "number" ? x.toFixed(9) : "-");
      console.log(r
        ? `| family ${name} | ${r.ok ? "ok" : "DISAGREES"} (exit ${rc}): ${r.family} ${r.pooling}, ${r.items} texts (${r.truncated} truncated), dims ${r.dims.join("/")}; AutoModel vs ST min cos ${f(r.autoModelMinCosine)}, max rel err ${r.autoModelMaxRelativeError?.toExponential(1) ?? "-"}; batched vs single ${f(r.batchMinCosine)}; tokenizer problems ${r.tokenizerProblems}; unit norms ${r.unitNorms} |`
        : `| family ${name} | FAILED (exit ${rc}): no result line; see logs.txt |`);
    ' "$name" "$rc" "$line" >> "$RESULTS"
  done
  if compgen -G "$WORK/family-rejected/parity-*.json" > /dev/null; then
    tar -C "$WORK/family-rejected" -czf "$OUT/family-rejected.tar.gz" . || status=1
  fi
  if compgen -G "$fixtures/parity-*.json" > /dev/null; then
    tar -C "$fixtures" -czf "$OUT/family-fixtures.tar.gz" . || status=1
    echo "| families: fixtures | $OUT/family-fixtures.tar.gz: $(cd "$fixtures" && find . -name 'parity-*.json' | sort | tr '\n' ' ')|" >> "$RESULTS"
  fi
  echo "families ok: ${ok[*]:-none}; failed: ${bad[*]:-none}"
  echo "| families | ok: ${ok[*]:-none}; failed: ${bad[*]:-none} |" >> "$RESULTS"
  return "$status"
}

step_familiesbf16() {
  # Issue 18's GPU parity at realistic sizes: per preset (FAMILIES_BF16), generate (seed 0), the
  # sentence-transformers fp32 reference on the GPU (st_reference.py, no AutoModel cross-check: the
  # families step does that on the tiny ones), then the engine in bf16 through bench/parity.js on the
  # same token ids. The checkpoint is deleted after each preset (disk).
  [ -f "$ADDON" ] || { echo "no addon: run the build step" >&2; return 1; }
  local preset dir status=0 runs=() hf_args=()
  [ "${FAMILIES_BF16_HF_BASELINE:-0}" = 1 ] && hf_args=(--bf16-baseline)
  hf_versions
  mkdir -p "$WORK/families-bf16"
  for preset in ${FAMILIES_BF16:-bert-base xlm-roberta-base qwen2-1.5b llama-1b mistral-7b}; do
    echo "=== $preset"
    dir=$WORK/families-bf16/$preset
    local started=$SECONDS
    if ! admin checkpoint generate --preset "$preset" --seed 0 --out "$dir" --force > "$WORK/generate-$preset.log" 2>&1; then
      tail -20 "$WORK/generate-$preset.log"
      echo "| bf16 $preset | FAILED: checkpoint generate --preset $preset |" >> "$RESULTS"
      status=1; continue
    fi
    echo "generated $(du -sh "$dir" | cut -f1) in $((SECONDS - started)) s"
    if ! timeout "${FAMILY_BF16_TIMEOUT:-300}" python3 scripts/reference/st_reference.py --model "$dir" \
        --texts test/fixtures/parity-texts.json --out "$WORK/parity-$preset-reference.json" --name "$preset" \
        --generator-args "--preset $preset --seed 0" --device cuda --skip-automodel "${hf_args[@]}"; then
      echo "| bf16 $preset | FAILED: the sentence-transformers reference (see logs.txt) |" >> "$RESULTS"
      status=1; rm -rf "$dir"; continue
    fi
    node "$APP/dist/bench/parity.js" --model "$dir" --fixture "$WORK/parity-$preset-reference.json" --device cuda \
      --dtype bfloat16 --tp 1 --skip-hash --json "$WORK/parity-bf16-$preset.json" || status=1
    runs+=("$WORK/parity-bf16-$preset.json")
    echo "$preset: $((SECONDS - started)) s in all"
    echo "| bf16 $preset time | $((SECONDS - started)) s (generate, reference, engine) |" >> "$RESULTS"
    rm -rf "$dir"
  done
  # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
  node -e '
    const fs = require("fs");
    const runs = process.argv.slice(1).filter((p) => fs.existsSync(p)).map((p) => JSON.parse(fs.readFileSync(p, "utf8")));
    fs.writeFileSync(process.env.OUT + "/families-bf16-result.json", JSON.stringify(runs, null, 1));
    const f = (x) => (typeof x === "number" ? x.toFixed(6) : "-");
    for (const r of runs) {
      const min = Math.min(r.minCosine.alone, r.minCosine.packed);
      console.log(`| bf16 ${r.model} ${r.device} tp${r.tensorParallelSize} | ${r.passed ? "PASS" : "FAIL"}: min cos ${f(min)} (alone ${f(r.minCosine.alone)}, packed ${f(r.minCosine.packed)}, alone vs packed ${f(r.minCosine.aloneVsPacked)}; threshold ${r.threshold})${r.maxNormError !== null && r.maxNormError !== undefined ? `; max norm error ${r.maxNormError.toExponential(2)}` : ""}${r.problems.length ? "; " + r.problems.join("; ") : ""} |`);
    }
  ' "${runs[@]}" >> "$RESULTS"
  return "$status"
}

# The tiny reranker checkpoints CI checks the CPU engine against (issue 17, test/rerank-parity.e2e-spec.ts):
# fixture name | `admin checkpoint generate` arguments (seed 0 is added). RERANKERS picks names.
RERANK_MATRIX=(
  "qwen3-reranker-tiny|--preset qwen3-reranker-tiny"
  "qwen3-reranker-tiny-untied|--preset qwen3-reranker-tiny --untied"
  "qwen3-reranker-tiny-seq-cls|--preset qwen3-reranker-tiny --seq-cls"
)

step_rerankfixtures() {
  # Each entry: generate (seed 0), admin model inspect, then the model card's code in fp32 on the CPU
  # (rerank_reference.py: every pair alone and each group batched); a failing entry is reported and
  # the next one runs. The fixtures travel back as one archive, to unpack into test/fixtures/.
  local versions dir fixtures=$WORK/rerank-fixtures entry name args status=0 rc line ok=() bad=()
  if ! versions=$(hf_versions); then
    echo "python3 lacks torch/transformers" >&2
    echo "| rerankers | FAILED: python3 lacks torch/transformers |" >> "$RESULTS"; return 1
  fi
  echo "$versions"
  echo "| rerankers: HF versions | $versions |" >> "$RESULTS"
  rm -rf "$fixtures" "$WORK/rerank-rejected" && mkdir -p "$fixtures" "$WORK/rerankers"
  for entry in "${RERANK_MATRIX[@]}"; do
    name=${entry%%|*} args="${entry#*|} --seed 0"
    if [ -n "${RERANKERS:-}" ] && [[ " $RERANKERS " != *" $name "* ]]; then continue; fi
    echo "=== reranker $name: checkpoint generate $args"
    dir=$WORK/rerankers/$name
    # shellcheck disable=SC2086  # args is a list of flags
    if ! admin checkpoint generate $args --out "$dir" --force > "$WORK/generate-$name.log" 2>&1; then
      tail -20 "$WORK/generate-$name.log"
      echo "| reranker $name | FAILED: checkpoint generate $args (log above) |" >> "$RESULTS"
      bad+=("$name"); status=1; continue
    fi
    admin model inspect "$dir" | grep -E '^(model|task|status|ERROR|WARN)' || { bad+=("$name"); status=1; continue; }
    timeout "${RERANK_TIMEOUT:-600}" python3 scripts/reference/rerank_reference.py --model "$dir" \
      --pairs test/fixtures/rerank-pairs.json --out "$fixtures/rerank-$name.json" --name "$name" \
      --generator-args "$args" --device cpu --dtype float32 > "$WORK/rerank-reference-$name.json"
    rc=$?
    line=$(tail -1 "$WORK/rerank-reference-$name.json")
    echo "$line"
    if [ "$rc" = 0 ]; then
      ok+=("$name")
    else
      # Exit 2: written, but alone and batched disagree; kept apart so it cannot be committed by mistake.
      [ -f "$fixtures/rerank-$name.json" ] && mkdir -p "$WORK/rerank-rejected" &&
        mv "$fixtures/rerank-$name.json" "$WORK/rerank-rejected/"
      bad+=("$name"); status=1
    fi
    # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
    node -e '
      const [name, rc, line] = process.argv.slice(1);
      let r; try { r = JSON.parse(line); } catch { r = undefined; }
      const e = (x) => (typeof x === "number" ? x.toExponential(1) : "-");
      console.log(r
        ? `| reranker ${name} | ${r.ok ? "ok" : "DISAGREES"} (exit ${rc}): ${r.head}, ${r.pairs} pairs in ${r.groups} groups (${r.truncated} cut), scores ${r.scoreRange.map((x) => (typeof x === "number" ? x.toFixed(4) : "-")).join("..")}; batched vs alone max |score| ${e(r.batchedVsAloneMaxScore)}, |raw| ${e(r.batchedVsAloneMaxRaw)}; sigmoid(raw) vs card ${e(r.sigmoidVsScore)} |`
        : `| reranker ${name} | FAILED (exit ${rc}): no result line; see logs.txt |`);
    ' "$name" "$rc" "$line" >> "$RESULTS"
  done
  if compgen -G "$WORK/rerank-rejected/rerank-*.json" > /dev/null; then
    tar -C "$WORK/rerank-rejected" -czf "$OUT/rerank-rejected.tar.gz" . || status=1
  fi
  if compgen -G "$fixtures/rerank-*.json" > /dev/null; then
    tar -C "$fixtures" -czf "$OUT/rerank-fixtures.tar.gz" . || status=1
    echo "| rerankers: fixtures | $OUT/rerank-fixtures.tar.gz: $(cd "$fixtures" && find . -name 'rerank-*.json' | sort | tr '\n' ' ')|" >> "$RESULTS"
  fi
  echo "rerankers ok: ${ok[*]:-none}; failed: ${bad[*]:-none}"
  echo "| rerankers | ok: ${ok[*]:-none}; failed: ${bad[*]:-none} |" >> "$RESULTS"
  return "$status"
}

step_rerankbf16() {
  # Issue 17's GPU parity at a published size: per preset (RERANK_BF16), generate (seed 0), the model
  # card's code in fp32 on the GPU (sdpa: the 8192-token group batched in eager attention would need
  # tens of GB) with its own bf16 run recorded beside it, then the engine in bf16 through
  # bench/rerank-parity.js on the same token ids. The checkpoint is deleted after each preset (disk).
  [ -f "$ADDON" ] || { echo "no addon: run the build step" >&2; return 1; }
  local preset dir status=0 runs=()
  hf_versions
  mkdir -p "$WORK/rerankers-bf16"
  for preset in ${RERANK_BF16:-qwen3-reranker-4b}; do
    echo "=== $preset"
    dir=$WORK/rerankers-bf16/$preset
    local started=$SECONDS
    if ! admin checkpoint generate --preset "$preset" --seed 0 --out "$dir" --force > "$WORK/generate-$preset.log" 2>&1; then
      tail -20 "$WORK/generate-$preset.log"
      echo "| rerank bf16 $preset | FAILED: checkpoint generate --preset $preset |" >> "$RESULTS"
      status=1; continue
    fi
    echo "generated $(du -sh "$dir" | cut -f1) in $((SECONDS - started)) s"
    if ! timeout "${RERANK_BF16_TIMEOUT:-600}" python3 scripts/reference/rerank_reference.py --model "$dir" \
        --pairs test/fixtures/rerank-pairs.json --out "$WORK/rerank-$preset-reference.json" --name "$preset" \
        --generator-args "--preset $preset --seed 0" --device cuda --dtype float32 --attn sdpa --bf16-baseline; then
      echo "| rerank bf16 $preset | FAILED: the model card reference (see logs.txt) |" >> "$RESULTS"
      status=1; rm -rf "$dir"; continue
    fi
    node "$APP/dist/bench/rerank-parity.js" --model "$dir" --fixture "$WORK/rerank-$preset-reference.json" \
      --device cuda --dtype bfloat16 --tp 1 --skip-hash --json "$WORK/rerank-bf16-$preset.json" \
      ${RERANK_BF16_THRESHOLD:+--threshold "$RERANK_BF16_THRESHOLD"} || status=1
    runs+=("$WORK/rerank-bf16-$preset.json" "$WORK/rerank-$preset-reference.json")
    echo "$preset: $((SECONDS - started)) s in all"
    echo "| rerank bf16 $preset time | $((SECONDS - started)) s (generate, reference, engine) |" >> "$RESULTS"
    rm -rf "$dir"
  done
  # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
  node -e '
    const fs = require("fs");
    const paths = process.argv.slice(1);
    const runs = [];
    for (let i = 0; i + 1 < paths.length; i += 2) {
      if (!fs.existsSync(paths[i])) continue;
      const run = JSON.parse(fs.readFileSync(paths[i], "utf8"));
      const reference = JSON.parse(fs.readFileSync(paths[i + 1], "utf8"));
      runs.push({ ...run, referenceAgreement: reference.agreement });
    }
    fs.writeFileSync(process.env.OUT + "/rerank-bf16-result.json", JSON.stringify(runs, null, 1));
    const e = (x) => (typeof x === "number" ? x.toExponential(2) : "-");
    for (const r of runs) {
      const card = r.referenceAgreement && r.referenceAgreement.cardBfloat16;
      const hf = card ? `; transformers bf16: max |score| ${e(card.maxScoreDifference)}, |raw| ${e(card.maxRawDifference)}, order ${card.groupsInOrder}/${card.groups}, min tau ${card.minKendallTau.toFixed(3)}` : "";
      console.log(`| rerank bf16 ${r.model} ${r.device} tp${r.tensorParallelSize} | ${r.passed ? "PASS" : "FAIL"}: max |score - fp32 card| ${e(r.maxScoreError)} (packed ${e(r.maxPackedScoreError)}), max |raw| ${e(r.maxRawError)}, order ${r.groupsInOrder}/${r.groups.length} groups, min tau ${r.minKendallTau.toFixed(3)}; threshold ${r.threshold}${hf}${r.problems.length ? "; " + r.problems.join("; ") : ""} |`);
    }
  ' "${runs[@]}" >> "$RESULTS"
  return "$status"
}

step_encoderbench() {
  # Issue 18 criterion 5: an encoder of bge-base's shape (preset bert-base) on short texts (the builtin
  # bench corpus's queries, 6-20 words): the API server + admin bench at ENCODER_POINTS, then
  # sentence-transformers on the same texts and GPU in each of ENCODER_ST_DTYPES at each of
  # ENCODER_ST_BATCHES -> $OUT/encoder-bench.json, ratio best server / best sentence-transformers.
  [ -f "$ADDON" ] || { echo "no addon: run the build step" >&2; return 1; }
  local model=$WORK/encoder-bert-base key=bench-key-$$ port=6014 requests=${ENCODER_REQUESTS:-1000}
  local all=$WORK/corpus-encoder-all.jsonl queries=$WORK/corpus-encoder-queries.jsonl runs=() baselines=() dtype status=0
  make_model bert-base "$model" || return 1
  admin bench --corpus builtin --corpus-size 4000 --write-corpus "$all" || return 1
  # The corpus's queries are its texts of at most 20 words (passages have 60 or more).
  # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
  node -e '
    const fs = require("fs");
    const lines = fs.readFileSync(process.argv[1], "utf8").split("\n").filter((l) => l && JSON.parse(l).text.split(" ").length <= 20);
    fs.writeFileSync(process.argv[2], lines.join("\n") + "\n");
    console.log(`${lines.length} short texts`);
  ' "$all" "$queries" || return 1
  echo "starting the API server on $model"
  start_server "$model" "" "" "$port" "$key" "$WORK/server-encoder.log" || return 1
  curl -s "http://127.0.0.1:$port/health" | head -c 600; echo
  for point in ${ENCODER_POINTS:-1x1 16x1 64x1 32x8 64x16 128x32}; do
    local c=${point%x*} b=${point#*x}
    echo "bench concurrency $c batch $b"
    admin bench --url "http://127.0.0.1:$port" --api-key "$key" --concurrency "$c" --batch "$b" \
      --requests "$requests" --corpus "$queries" --json > "$WORK/encoder-c$c-b$b.json" || status=1
    runs+=("$WORK/encoder-c$c-b$b.json")
  done
  stop_server
  echo "--- server log (tail) ---"; tail -20 "$WORK/server-encoder.log"
  for dtype in ${ENCODER_ST_DTYPES:-bfloat16 float16}; do
    python3 scripts/reference/baseline_bench.py --model "$model" --corpus "$queries" --out "$WORK/encoder-st-$dtype.json" \
      --dtype "$dtype" --batch-sizes "${ENCODER_ST_BATCHES:-32,128,512}" --latency-requests 200 || status=1
    baselines+=("$WORK/encoder-st-$dtype.json")
  done
  # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
  node -e '
    const fs = require("fs");
    const read = (p) => { try { return JSON.parse(fs.readFileSync(p, "utf8")); } catch { return undefined; } };
    const [count, ...paths] = process.argv.slice(1);
    const server = paths.slice(0, Number(count)).map(read).filter(Boolean);
    const baselines = paths.slice(Number(count)).map(read).filter(Boolean);
    const bestServer = Math.max(0, ...server.map((r) => r.throughput.embeddingsPerSecond));
    const bestSt = Math.max(0, ...baselines.map((b) => b.throughputRun.throughput.embeddingsPerSecond));
    const result = { model: "bert-base (seed 0)", server, baselines,
      ratio: { bestServerOverBestSentenceTransformers: bestSt ? bestServer / bestSt : null } };
    fs.writeFileSync(process.env.OUT + "/encoder-bench.json", JSON.stringify(result, null, 1));
    const f = (x, d = 1) => (typeof x === "number" ? x.toFixed(d) : "-");
    for (const r of server)
      console.log(`| encoder c${r.concurrency} b${r.batch} | ${r.ok}/${r.requests} ok; ${f(r.throughput.embeddingsPerSecond)} emb/s, ${f(r.throughput.tokensPerSecond, 0)} tok/s; p50 ${f(r.latencyMs.p50)} p99 ${f(r.latencyMs.p99)} ms |`);
    for (const b of baselines) {
      const l = b.latencyRun.latencyMs;
      console.log(`| encoder sentence-transformers ${b.dtype} | ${b.throughputRuns.map((t) => `batch ${t.batchSize}: ${f(t.throughput.embeddingsPerSecond)} emb/s`).join(", ")} (${b.attnImplementation}); one text p50 ${f(l.p50, 2)} ms |`);
    }
    console.log(`| encoder ratio | best server ${f(bestServer)} emb/s / best sentence-transformers ${f(bestSt)} emb/s = ${f(result.ratio.bestServerOverBestSentenceTransformers, 2)} |`);
  ' "${#runs[@]}" "${runs[@]}" "${baselines[@]}" >> "$RESULTS" || status=1
  return "$status"
}

step_rerankbench() {
  # Issue 17 criterion 7: reranking speed on one GPU. The qwen3-reranker-4b checkpoint (the 4B shape,
  # tied lm_head as published, bf16, seed 0), the API server on it (one GPU, bf16; the task is detected
  # from the checkpoint), admin bench --task rerank at RERANK_CONCURRENCY: each request one query
  # against RERANK_DOCUMENTS builtin passages of ~RERANK_DOC_TOKENS tokens; then, the server stopped, the
  # model card's transformers code (rerank_baseline.py) on the same workload file and GPU at
  # RERANK_BASELINE_BATCHES -> $OUT/rerank-bench.json; pairs/s best server / best baseline in the summary.
  [ -f "$ADDON" ] || { echo "no addon: run the build step" >&2; return 1; }
  local model=${RERANK_MODEL:-$RERANK4B} key=bench-key-$$ port=6016 gpu=${RERANK_GPU:-0}
  local workload=$WORK/rerank-workload.json runs=() baselines=() status=0 c requests
  if [ -f "$model/config.json" ] && admin model inspect "$model" > "$WORK/inspect-rerank.txt" 2>&1; then
    echo "$model exists and inspects clean"
  else
    admin checkpoint generate --preset qwen3-reranker-4b --seed 0 --out "$model" --force || return 1
    admin model inspect "$model" || echo "warning: admin model inspect does not pass on $model" >&2
  fi
  echo "| rerank model | $(du -sh "$model" | cut -f1) at $model (qwen3-reranker-4b, seed 0) |" >> "$RESULTS"
  admin bench --task rerank --documents "${RERANK_DOCUMENTS:-100}" --doc-tokens "${RERANK_DOC_TOKENS:-300}" \
    --write-corpus "$workload" || return 1
  echo "starting the API server on $model (GPU $gpu)"
  # A long deadline: at concurrency 16 a request waits behind ~15 others of ~40k tokens each, and the
  # admission estimate must not turn that into 429s.
  DTYPE=bfloat16 REQUEST_DEADLINE_MS=600000 start_server "$model" "$gpu" 1 "$port" "$key" "$WORK/server-rerank.log" || return 1
  curl -s -H "authorization: Bearer $key" "http://127.0.0.1:$port/v1/models" | head -c 600; echo
  for c in ${RERANK_CONCURRENCY:-1 4 16}; do
    # At least 20 measured requests, and 4 per client (each request is 100 pairs: ~0.5 s at c1).
    requests=${RERANK_REQUESTS:-$((c * 4 > 20 ? c * 4 : 20))}
    echo "rerank bench concurrency $c, $requests requests"
    admin bench --task rerank --url "http://127.0.0.1:$port" --api-key "$key" --concurrency "$c" \
      --requests "$requests" --corpus "$workload" --json > "$WORK/rerank-c$c.json" || status=1
    runs+=("$WORK/rerank-c$c.json")
  done
  stop_server
  echo "--- server log (tail) ---"; tail -20 "$WORK/server-rerank.log"
  CUDA_VISIBLE_DEVICES=$gpu python3 scripts/reference/rerank_baseline.py --model "$model" --workload "$workload" \
    --batch-sizes "${RERANK_BASELINE_BATCHES:-8,16,32,100}" --out "$WORK/rerank-baseline.json" || status=1
  baselines+=("$WORK/rerank-baseline.json")
  # RERANK_BASELINE_LAST_LOGITS=1: also the card's code with the LM head on the last position only.
  if [ "${RERANK_BASELINE_LAST_LOGITS:-0}" = 1 ]; then
    CUDA_VISIBLE_DEVICES=$gpu python3 scripts/reference/rerank_baseline.py --model "$model" --workload "$workload" \
      --batch-sizes "${RERANK_BASELINE_BATCHES:-8,16,32,100}" --last-logits-only \
      --out "$WORK/rerank-baseline-last-logits.json" || status=1
    baselines+=("$WORK/rerank-baseline-last-logits.json")
  fi
  # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
  node -e '
    const fs = require("fs");
    const read = (p) => { try { return JSON.parse(fs.readFileSync(p, "utf8")); } catch { return undefined; } };
    const [out, model, count, ...paths] = process.argv.slice(1);
    const server = paths.slice(0, Number(count)).map(read).filter(Boolean);
    const [baseline, ...otherBaselines] = paths.slice(Number(count)).map(read);
    const best = server.reduce((b, r) => (!b || r.throughput.pairsPerSecond > b.throughput.pairsPerSecond ? r : b), undefined);
    const ours = best ? best.throughput.pairsPerSecond : null;
    const theirs = baseline ? baseline.pairsPerSecond : null;
    const result = { model, preset: "qwen3-reranker-4b --seed 0", server, baseline: baseline ?? null,
      otherBaselines: otherBaselines.filter(Boolean),
      ours: { pairsPerSecond: ours, concurrency: best ? best.concurrency : null },
      baselinePairsPerSecond: theirs, ratio: ours && theirs ? ours / theirs : null };
    fs.writeFileSync(out, JSON.stringify(result, null, 1));
    const f = (x, d = 1) => (typeof x === "number" ? x.toFixed(d) : "-");
    for (const r of server) {
      const l = r.latencyMs, d = r.documentTokens;
      console.log(`| rerank c${r.concurrency} | ${r.ok}/${r.requests} ok, ${r.documentsPerRequest} documents of ~${f(d && d.mean, 0)} tokens a request; ${f(r.throughput.pairsPerSecond)} pairs/s, ${f(r.throughput.requestsPerSecond, 2)} req/s, ${f(r.throughput.tokensPerSecond, 0)} tok/s; p50 ${f(l.p50)} p90 ${f(l.p90)} p99 ${f(l.p99)} ms${r.firstError ? "; first error " + r.firstError.slice(0, 160) : ""} |`);
    }
    for (const b of [baseline, ...otherBaselines].filter(Boolean)) {
      console.log(`| rerank baseline: model card code, LM head at ${b.logits.replace(/ \(.*/, "")} | ${f(b.pairsPerSecond)} pairs/s at batch ${b.batchSize}, ${f(b.tokensPerSecond, 0)} tok/s (${b.dtype}, ${b.attn}; torch ${b.torch}, transformers ${b.transformers}, ${b.gpu}); by batch: ${b.sweep.map((s) => `${s.batchSize}: ${s.error ?? f(s.pairsPerSecond)}`).join(", ")} |`);
    }
    console.log(`| rerank ratio | ours ${f(ours)} pairs/s (c${best ? best.concurrency : "-"}) / model card ${f(theirs)} pairs/s = ${f(result.ratio, 2)} |`);
  ' "$OUT/rerank-bench.json" "$model" "${#runs[@]}" "${runs[@]}" "${baselines[@]}" >> "$RESULTS" || status=1
  return "$status"
}

step_multimodel() {
  [ -f "$ADDON" ] || { echo "no addon: run the build step" >&2; return 1; }
  make_model 4b "$BIG" || return 1
  if ! { [ -f "$RERANK4B/config.json" ] && admin model inspect "$RERANK4B" > /dev/null 2>&1; }; then
    admin checkpoint generate --preset qwen3-reranker-4b --seed 0 --out "$RERANK4B" --force || return 1
  fi
  local key=bench-key-$$ port=6017 gpu=${MULTI_GPU:-0} point=${MULTI_EMBED_POINT:-32x8} status=0 runs=()
  local corpus=$WORK/multi-corpus.jsonl workload=$WORK/multi-rerank.json embed=Qwen3-Embedding-4B rerank=Qwen3-Reranker-4B
  admin bench --corpus builtin --corpus-size 2000 --write-corpus "$corpus" || return 1
  admin bench --task rerank --documents 100 --doc-tokens 300 --write-corpus "$workload" || return 1
  local c=${point%x*} b=${point#*x}
  bench_embed() { # tag
    admin bench --url "http://127.0.0.1:$port" --api-key "$key" --model "$embed" --concurrency "$c" --batch "$b" \
      --requests "${MULTI_EMBED_REQUESTS:-400}" --corpus "$corpus" --json > "$WORK/multi-$1-embed.json" || status=1
    runs+=("$1-embed=$WORK/multi-$1-embed.json")
  }
  bench_rerank() { # tag
    admin bench --task rerank --url "http://127.0.0.1:$port" --api-key "$key" --model "$rerank" --concurrency 4 \
      --requests "${MULTI_RERANK_REQUESTS:-16}" --corpus "$workload" --json > "$WORK/multi-$1-rerank.json" || status=1
    runs+=("$1-rerank=$WORK/multi-$1-rerank.json")
  }
  DTYPE=bfloat16 start_server "$BIG" "$gpu" 1 "$port" "$key" "$WORK/server-multi-embed.log" || return 1
  bench_embed alone; stop_server
  DTYPE=bfloat16 REQUEST_DEADLINE_MS=600000 start_server "$RERANK4B" "$gpu" 1 "$port" "$key" "$WORK/server-multi-rerank.log" || return 1
  bench_rerank alone; stop_server
  local models
  models="[{\"MODEL_PATH\":\"$ROOT/$BIG\"},{\"MODEL_PATH\":\"$ROOT/$RERANK4B\",\"GPUS\":\"0\",\"REQUEST_DEADLINE_MS\":600000}]"
  echo "MODELS=$models"
  MODELS=$models DTYPE=bfloat16 start_server "$BIG" "$gpu" 1 "$port" "$key" "$WORK/server-multi.log" || return 1
  curl -s -H "authorization: Bearer $key" "http://127.0.0.1:$port/v1/models"; echo
  curl -s "http://127.0.0.1:$port/health" | head -c 1500; echo
  curl -s "http://127.0.0.1:$port/metrics" | grep -E '^qwen3_embed_(ready|device_memory_used_bytes)' || status=1
  bench_embed together; bench_rerank together
  bench_embed concurrent & local embedding=$!
  bench_rerank concurrent
  wait "$embedding" || status=1
  runs+=("concurrent-embed=$WORK/multi-concurrent-embed.json")
  curl -s "http://127.0.0.1:$port/metrics" | grep -E '^qwen3_embed_(tokens_total|batches_total)'
  stop_server
  echo "--- server log (tail) ---"; tail -20 "$WORK/server-multi.log"
  # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
  node -e '
    const fs = require("fs");
    const runs = process.argv.slice(1).map((arg) => {
      const [tag, path] = arg.split("=");
      try { return { tag, ...JSON.parse(fs.readFileSync(path, "utf8")) }; } catch { return { tag, missing: true }; }
    });
    fs.writeFileSync(process.env.OUT + "/multi-model.json", JSON.stringify(runs, null, 1));
    const f = (x, d = 1) => (typeof x === "number" ? x.toFixed(d) : "-");
    for (const r of runs) {
      if (r.missing) { console.log(`| multi ${r.tag} | no result |`); continue; }
      const t = r.throughput, l = r.latencyMs;
      const rate = t.pairsPerSecond !== undefined ? `${f(t.pairsPerSecond)} pairs/s` : `${f(t.embeddingsPerSecond)} emb/s`;
      console.log(`| multi ${r.tag} | ${r.ok}/${r.requests} ok, c${r.concurrency}; ${rate}, ${f(t.tokensPerSecond, 0)} tok/s; p50 ${f(l.p50)} p99 ${f(l.p99)} ms |`);
    }
  ' "${runs[@]}" >> "$RESULTS" || status=1
  return "$status"
}

step_parity() {
  [ -f "$ADDON" ] || { echo "no addon: run the build step" >&2; return 1; }
  [ -d "$TINY" ] || admin checkpoint generate --preset tiny --seed 0 --out "$TINY" || return 1
  local fixture=${PARITY_FIXTURE:-}
  if [ -z "$fixture" ]; then
    if [ -f "$OUT/parity-tiny.json" ]; then fixture=$OUT/parity-tiny.json; else fixture=test/fixtures/parity-tiny.json; fi
  fi
  [ -f "$fixture" ] || { echo "no fixture: run the fixture step or commit test/fixtures/parity-tiny.json" >&2; return 1; }
  local gpus tps runs=() status=0
  gpus=$(nvidia-smi --list-gpus | wc -l)
  tps=${PARITY_TP:-$([ "$gpus" -ge 2 ] && echo "1 2" || echo "1")}
  for tp in $tps; do
    node "$APP/dist/bench/parity.js" --model "$TINY" --fixture "$fixture" --device cuda --dtype bfloat16 --tp "$tp" --alone-every-dimension \
      --json "$WORK/parity-cuda-tp$tp.json" || status=1
    runs+=("$WORK/parity-cuda-tp$tp.json")
  done
  node "$APP/dist/bench/parity.js" --model "$TINY" --fixture "$fixture" --device cpu --dtype float32 --tp 1 \
    --json "$WORK/parity-cpu.json" || status=1
  runs+=("$WORK/parity-cpu.json")
  # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
  node -e '
    const fs = require("fs");
    const runs = process.argv.slice(1).filter((p) => fs.existsSync(p)).map((p) => JSON.parse(fs.readFileSync(p, "utf8")));
    fs.writeFileSync(process.env.OUT + "/parity-result.json", JSON.stringify(runs, null, 1));
    for (const r of runs) console.log(`| parity ${r.device} ${r.dtype} tp${r.tensorParallelSize} | ${r.passed ? "PASS" : "FAIL"}: min cos alone ${r.minCosine.alone.toFixed(6)}, packed ${r.minCosine.packed.toFixed(6)}, alone vs packed ${r.minCosine.aloneVsPacked.toFixed(6)} (threshold ${r.threshold}) |`);
  ' "${runs[@]}" >> "$RESULTS"
  return "$status"
}

step_checkgpu() {
  [ -f "$ADDON" ] || { echo "no addon: run the build step" >&2; return 1; }
  [ -d "$TINY" ] || admin checkpoint generate --preset tiny --seed 0 --out "$TINY" || return 1
  admin check-gpu --model-path "$TINY" || return 1
  admin embed --model-path "$TINY" --device cuda --dimensions 256 --query "what is tensor parallelism?" \
    "Tensor parallelism splits each weight matrix across GPUs." || return 1
  echo "| check-gpu | ok (admin check-gpu + embed on $TINY) |" >> "$RESULTS"
}

step_image() {
  # The CUDA image's build steps (docker/build-native.sh, as docker/Dockerfile runs them): the addon
  # against this host's PyTorch, /app laid out as the image's runtime stage, every .node checked with
  # ldd against docker/cuda-runtime-libs.txt; then the API served from that layout (no
  # LD_LIBRARY_PATH: the addon's RUNPATH alone) on the 4b checkpoint when present, and benchmarked.
  local stage=$WORK/image-root model=${BENCH_MODEL:-} key=image-key-$$ port=6012 pid status=0
  [ -n "$model" ] || { if [ -f "$BIG/config.json" ]; then model=$BIG; else model=$TINY; fi; }
  [ -d "$model" ] || admin checkpoint generate --preset tiny --seed 0 --out "$TINY" || return 1
  bash docker/build-native.sh addon "$APP/node_modules" > "$WORK/image-build.log" 2>&1 \
    || { tail -40 "$WORK/image-build.log"; return 1; }
  grep -E "qwen3:|build-native" "$WORK/image-build.log"
  bash docker/build-native.sh stage "$stage" "$APP" || return 1
  bash docker/build-native.sh check "$stage" | tee "$WORK/image-check.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
  echo "| image ldd | $(tr '\n' ' ' < "$WORK/image-check.txt") |" >> "$RESULTS"
  # Resolved here: inside the subshell the path would be read relative to the staged /app.
  local model_dir
  model_dir=$(readlink -f "$model")
  (cd "$stage/app" && exec env -u LD_LIBRARY_PATH MODEL_PATH="$model_dir" DEVICE=cuda API_KEY="$key" PORT="$port" \
    LOG_LEVEL=warn NATIVE_ADDON_PATH="$stage/app/$ADDON" node dist/apps/api/src/main.js) > "$WORK/image-server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/health/ready" > /dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if ! curl -sf "http://127.0.0.1:$port/health/ready" > /dev/null; then
    echo "the staged server did not get ready:"; tail -40 "$WORK/image-server.log"
    kill "$pid" 2>/dev/null; return 1
  fi
  curl -s "http://127.0.0.1:$port/health" | head -c 600; echo
  local corpus=$WORK/corpus.jsonl point
  [ -f "$corpus" ] || admin bench --corpus builtin --corpus-size 2000 --write-corpus "$corpus" || status=1
  for point in ${IMAGE_BENCH_POINTS:-1x1 32x8}; do
    admin bench --url "http://127.0.0.1:$port" --api-key "$key" --concurrency "${point%x*}" --batch "${point#*x}" \
      --requests "${BENCH_REQUESTS:-300}" --corpus "$corpus" --json > "$WORK/image-bench-$point.json" || status=1
    # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
    node -e '
      const r = require(process.argv[1]);
      console.log(`| image layout ${process.argv[2]} c${r.concurrency} b${r.batch} | ${r.ok}/${r.requests} ok; ${r.throughput.embeddingsPerSecond.toFixed(1)} emb/s; p50 ${r.latencyMs.p50.toFixed(1)} ms |`);
    ' "$WORK/image-bench-$point.json" "$(basename "$model")" >> "$RESULTS" || status=1
  done
  kill "$pid" 2>/dev/null
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  return "$status"
}

make_model() { # preset dir: generate the checkpoint (seed 0) unless one that inspects clean is there
  local preset=$1 dir=$2
  if [ -f "$dir/config.json" ] && admin model inspect "$dir" > "$WORK/inspect-$preset.txt" 2>&1; then
    echo "$dir exists and inspects clean"
    cat "$WORK/inspect-$preset.txt"
  else
    admin checkpoint generate --preset "$preset" --seed 0 --out "$dir" --force || return 1
    admin model inspect "$dir" || return 1
  fi
  echo "| model$preset | $(du -sh "$dir" | cut -f1) at $dir |" >> "$RESULTS"
}
step_model4b() { make_model 4b "$BIG"; }
step_model8b() { make_model 8b "$BIG8"; }
# The 8B (hidden 4096, 36 layers, ~16 GB in bf16) through the same tools: its products weigh more
# against the fixed per-layer costs than the 4B's.
step_profile8b() { BENCH_MODEL=$BIG8 RUN_TAG=8b step_profile; }
step_layouts8b() { BENCH_MODEL=$BIG8 RUN_TAG=8b step_layouts; }

step_bench() {
  [ -f "$ADDON" ] || { echo "no addon: run the build step" >&2; return 1; }
  local model=${BENCH_MODEL:-}
  [ -n "$model" ] || { if [ -f "$BIG/config.json" ]; then model=$BIG; else model=$TINY; fi; }
  [ -d "$model" ] || admin checkpoint generate --preset tiny --seed 0 --out "$TINY" || return 1
  local corpus=$WORK/corpus.jsonl key=bench-key-$$ port=6008 requests=${BENCH_REQUESTS:-400}
  admin bench --corpus builtin --corpus-size 2000 --write-corpus "$corpus" || return 1

  echo "starting the API server on $model"
  start_server "$model" "" "" "$port" "$key" "$WORK/server.log" || return 1
  curl -s "http://127.0.0.1:$port/health" && echo
  local runs=()
  for point in ${BENCH_POINTS:-1x1 16x1 32x8 64x16}; do
    local c=${point%x*} b=${point#*x}
    echo "bench concurrency $c batch $b"
    admin bench --url "http://127.0.0.1:$port" --api-key "$key" --concurrency "$c" --batch "$b" \
      --requests "$requests" --corpus "$corpus" --json > "$WORK/bench-c$c-b$b.json" || true
    runs+=("$WORK/bench-c$c-b$b.json")
  done
  stop_server
  echo "--- server log (tail) ---"; tail -20 "$WORK/server.log"

  python3 scripts/reference/baseline_bench.py --model "$model" --corpus "$corpus" --out "$WORK/baseline.json" \
    --batch-size 32 --latency-requests 100 --max-seq-length 8192 || echo "baseline failed" >&2
  # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
  node -e '
    const fs = require("fs");
    const [baselinePath, ...runPaths] = process.argv.slice(1);
    const read = (p) => { try { return JSON.parse(fs.readFileSync(p, "utf8")); } catch { return undefined; } };
    const server = runPaths.map(read).filter(Boolean);
    const baseline = read(baselinePath);
    const best = Math.max(0, ...server.map((r) => r.throughput.embeddingsPerSecond));
    const st = baseline?.throughputRun?.throughput?.embeddingsPerSecond;
    const result = { server, baseline, ratio: { bestServerEmbeddingsPerSecondOverSentenceTransformers: st ? best / st : null } };
    fs.writeFileSync(process.env.OUT + "/bench-results.json", JSON.stringify(result, null, 1));
    const f = (x, d = 1) => (typeof x === "number" ? x.toFixed(d) : "-");
    for (const r of server)
      console.log(`| bench c${r.concurrency} b${r.batch} | ${r.ok}/${r.requests} ok; ${f(r.throughput.requestsPerSecond)} req/s, ${f(r.throughput.embeddingsPerSecond)} emb/s, ${f(r.throughput.tokensPerSecond, 0)} tok/s; p50 ${f(r.latencyMs.p50)} p90 ${f(r.latencyMs.p90)} p99 ${f(r.latencyMs.p99)} ms |`);
    if (baseline) {
      const t = baseline.throughputRun, l = baseline.latencyRun.latencyMs;
      console.log(`| sentence-transformers | ${f(t.throughput.embeddingsPerSecond)} emb/s, ${f(t.throughput.tokensPerSecond, 0)} tok/s (batch ${t.batchSize}, ${baseline.dtype}, ${baseline.attnImplementation}); batch-${baseline.latencyRun.batch} latency p50 ${f(l.p50)} p90 ${f(l.p90)} p99 ${f(l.p99)} ms |`);
      console.log(`| ratio | best server emb/s / sentence-transformers emb/s = ${f(result.ratio.bestServerEmbeddingsPerSecondOverSentenceTransformers, 2)} |`);
    }
  ' "$WORK/baseline.json" "${runs[@]}" >> "$RESULTS"
}

step_parity4b() {
  # The full-size architecture: HF fp32 reference on the GPU, then the engine in bf16 at each TP size.
  [ -f "$ADDON" ] || { echo "no addon: run the build step" >&2; return 1; }
  [ -f "$BIG/config.json" ] || { echo "no 4b checkpoint: run the model4b step" >&2; return 1; }
  python3 scripts/reference/reference.py --model "$BIG" --texts test/fixtures/parity-texts.json \
    --out "$WORK/parity-4b-reference.json" --device cuda --bf16-baseline --skip-sentence-transformers || return 1
  local gpus tps status=0 runs=()
  gpus=$(nvidia-smi --list-gpus | wc -l)
  tps=${PARITY_TP:-$(for t in 1 2 4 8; do [ "$t" -le "$gpus" ] && printf '%s ' "$t"; done)}
  for tp in $tps; do
    node "$APP/dist/bench/parity.js" --model "$BIG" --fixture "$WORK/parity-4b-reference.json" --device cuda \
      --dtype bfloat16 --tp "$tp" --skip-hash --json "$WORK/parity-4b-tp$tp.json" || status=1
    runs+=("$WORK/parity-4b-tp$tp.json")
  done
  # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
  node -e '
    const fs = require("fs");
    const runs = process.argv.slice(1).filter((p) => fs.existsSync(p)).map((p) => JSON.parse(fs.readFileSync(p, "utf8")));
    fs.writeFileSync(process.env.OUT + "/parity-4b-result.json", JSON.stringify(runs, null, 1));
    try {
      const ref = JSON.parse(fs.readFileSync(process.env.WORK + "/parity-4b-reference.json", "utf8"));
      const b = ref.agreement.transformersBfloat16VsFloat32MinCosine;
      if (b) console.log(`| transformers bf16 vs fp32 (4b) | min cos per size ${Object.entries(b).map(([d, c]) => d + ": " + c.toFixed(6)).join(", ")} |`);
    } catch {}
    for (const r of runs) console.log(`| parity 4b ${r.device} ${r.dtype} tp${r.tensorParallelSize} | ${r.passed ? "PASS" : "FAIL"}: min cos alone ${r.minCosine.alone.toFixed(6)}, packed ${r.minCosine.packed.toFixed(6)}, alone vs packed ${r.minCosine.aloneVsPacked.toFixed(6)} (threshold ${r.threshold}) |`);
  ' "${runs[@]}" >> "$RESULTS"
  return "$status"
}

# Starts the API server in the background (SERVER_PID) and waits until it is ready. visible-gpus and tp
# may be empty: the server then inherits CUDA_VISIBLE_DEVICES and takes its default layout.
start_server() { # model visible-gpus tp port key log [all-reduce]
  local model=$1 visible=$2 tp=$3 port=$4 key=$5 log=$6 flags=${7:-} layout=()
  [ -n "$visible" ] && layout+=("CUDA_VISIBLE_DEVICES=$visible")
  [ -n "$tp" ] && layout+=("TENSOR_PARALLEL_SIZE=$tp")
  # flags: comma-separated; nccl = TP_PEER_ALL_REDUCE=false, busy = BUSY_POLL=true
  [[ ",$flags," == *,nccl,* ]] && layout+=("TP_PEER_ALL_REDUCE=false")
  [[ ",$flags," == *,busy,* ]] && layout+=("BUSY_POLL=true")
  [ "${BENCH_SERVER_PROBE:-0}" = 1 ] && layout+=("NODE_OPTIONS=--require $ROOT/scripts/device/server-probe.js")
  env "${layout[@]}" MODEL_PATH="$model" DEVICE=cuda API_KEY="$key" PORT="$port" LOG_LEVEL=warn \
    node "$APP/dist/apps/api/src/main.js" > "$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/health/ready" > /dev/null && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.5
  done
  echo "server (${visible:-all GPUs}, tp ${tp:-default}) not ready; its log:" >&2; tail -40 "$log" >&2
  stop_server; return 1
}

# SIGTERM, then wait until the process is gone (it drains and frees its GPUs and port first).
stop_server() {
  kill "$SERVER_PID" 2>/dev/null
  for _ in $(seq 1 120); do kill -0 "$SERVER_PID" 2>/dev/null || return 0; sleep 0.5; done
  kill -9 "$SERVER_PID" 2>/dev/null; return 0
}

step_layouts() {
  # Multi-GPU layouts through HTTP on the same machine, same corpus: single short query latency (1x1 on
  # short queries) and throughput (BENCH_THROUGHPUT, default 64 concurrent requests of 16 texts).
  [ -f "$ADDON" ] || { echo "no addon: run the build step" >&2; return 1; }
  local model=${BENCH_MODEL:-$BIG} key=bench-key-$$ port=6010 gpus
  gpus=$(nvidia-smi --list-gpus | wc -l)
  local corpus=$WORK/corpus.jsonl queries=$WORK/queries.txt
  [ -f "$corpus" ] || admin bench --corpus builtin --corpus-size 2000 --write-corpus "$corpus" || return 1
  for i in $(seq 1 50); do
    echo "what is the capital of country number $i and why does it matter"
  done > "$queries"
  local layouts=${BENCH_LAYOUTS:-}
  if [ -z "$layouts" ]; then
    layouts="tp1:0:1"
    [ "$gpus" -ge 2 ] && layouts="$layouts tp2:0,1:2 dp2:0,1:1"
    [ "$gpus" -ge 4 ] && layouts="$layouts tp4:0,1,2,3:4 tp2x2:0,1,2,3:2 dp4:0,1,2,3:1"
  fi
  local tpoint=${BENCH_THROUGHPUT:-64x16} runs=() qos_fd='' tag=${RUN_TAG:+$RUN_TAG-}
  echo "| cpu idle | driver $(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo -), governor $(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || echo -), states $(cat /sys/devices/system/cpu/cpu0/cpuidle/state*/name 2>/dev/null | tr '\n' ' ') |" >> "$RESULTS"
  # BENCH_CPU_DMA_LATENCY=N: hold a PM QoS request of N us on /dev/cpu_dma_latency during the layouts,
  # which keeps the CPUs out of idle states slower to leave than that (what tuned's latency profiles do).
  if [ -n "${BENCH_CPU_DMA_LATENCY:-}" ]; then
    local v=$BENCH_CPU_DMA_LATENCY
    if exec {qos_fd}> /dev/cpu_dma_latency; then
      # shellcheck disable=SC2059  # the inner printf writes the \xNN escapes that this format turns into bytes
      printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((v & 255)) $((v >> 8 & 255)) $((v >> 16 & 255)) $((v >> 24 & 255)))" >&"$qos_fd"
      echo "| cpu_dma_latency | held at $v us during the layouts |" >> "$RESULTS"
    else
      echo "| cpu_dma_latency | could not open /dev/cpu_dma_latency |" >> "$RESULTS"; qos_fd=
    fi
  fi
  for layout in $layouts; do
    IFS=: read -r name visible tp flags <<< "$layout"
    echo "=== layout $name: CUDA_VISIBLE_DEVICES=$visible TENSOR_PARALLEL_SIZE=$tp ${flags:+(flags: $flags)}"
    name=$tag$name
    start_server "$model" "$visible" "$tp" "$port" "$key" "$WORK/server-$name.log" "$flags" || { runs+=(""); continue; }
    curl -s "http://127.0.0.1:$port/health" | head -c 600; echo
    # Base64 rows, as the OpenAI SDKs ask by default; a node:http keep-alive client, then Node's fetch
    # (the SDK's client, and the client of the figures before 2026-11-27's fifth session).
    admin bench --url "http://127.0.0.1:$port" --api-key "$key" --concurrency 1 --batch 1 --encoding base64 \
      --client http --requests "${BENCH_LATENCY_REQUESTS:-200}" --corpus "$queries" --json > "$WORK/layout-$name-latency.json" || true
    grep -h "server-probe" "$WORK/server-$name.log" | tail -1 | sed "s/^/| layout $name short queries | /; s/$/ |/" >> "$RESULTS"
    admin bench --url "http://127.0.0.1:$port" --api-key "$key" --concurrency 1 --batch 1 --encoding base64 \
      --client fetch --requests "${BENCH_LATENCY_REQUESTS:-200}" --corpus "$queries" --json > "$WORK/layout-$name-latency-fetch.json" || true
    admin bench --url "http://127.0.0.1:$port" --api-key "$key" --concurrency "${tpoint%x*}" --batch "${tpoint#*x}" \
      --requests "${BENCH_REQUESTS:-300}" --corpus "$corpus" --json > "$WORK/layout-$name-throughput.json" || true
    stop_server
    runs+=("$name")
  done
  # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
  node -e '
    const fs = require("fs");
    const work = process.argv[1];
    const names = process.argv.slice(2).filter(Boolean);
    const read = (p) => { try { return JSON.parse(fs.readFileSync(p, "utf8")); } catch { return undefined; } };
    const rows = names.map((n) => ({ layout: n, latency: read(`${work}/layout-${n}-latency.json`), latencyFetch: read(`${work}/layout-${n}-latency-fetch.json`), throughput: read(`${work}/layout-${n}-throughput.json`) }));
    fs.writeFileSync(`${process.env.OUT}/layouts${process.env.RUN_TAG ? "-" + process.env.RUN_TAG : ""}.json`, JSON.stringify(rows, null, 1));
    const base = rows.find((r) => r.layout.replace(/^.*-/, "") === "tp1");
    const f = (x, d = 1) => (typeof x === "number" ? x.toFixed(d) : "-");
    for (const r of rows) {
      const p50 = r.latency?.latencyMs?.p50, eps = r.throughput?.throughput?.embeddingsPerSecond;
      const lr = base && p50 ? p50 / base.latency.latencyMs.p50 : undefined;
      const tr = base && eps ? eps / base.throughput.throughput.embeddingsPerSecond : undefined;
      const fp50 = r.latencyFetch?.latencyMs?.p50, fbase = base?.latencyFetch?.latencyMs?.p50;
      console.log(`| layout ${r.layout} | short query p50 ${f(p50, 2)} ms (p99 ${f(r.latency?.latencyMs?.p99, 2)}; ${f(lr, 2)}x tp1; server inference p50 ${f(r.latency?.serverMs?.inference?.p50, 2)} ms); with fetch p50 ${f(fp50, 2)} ms (${f(fp50 && fbase ? fp50 / fbase : undefined, 2)}x tp1; inference ${f(r.latencyFetch?.serverMs?.inference?.p50, 2)} ms); throughput ${f(eps)} emb/s, ${f(r.throughput?.throughput?.tokensPerSecond, 0)} tok/s (${f(tr, 2)}x tp1); ok ${r.throughput?.ok}/${r.throughput?.requests} |`);
    }
  ' "$WORK" "${runs[@]}" >> "$RESULTS"
  local status=$?
  [ -n "$qos_fd" ] && exec {qos_fd}>&-
  return "$status"
}

step_overhead() {
  # The server's own time per short query on this host's CPU, over bench/server-overhead.ts's fake
  # engine (no GPU, no model): answering at once; after 3 ms, as a forward keeps the server waiting
  # between a request's steps; and after 3 ms with BUSY_POLL -> server-overhead.md and *.json.
  # Against the layouts step's server probe it separates the server's own cost from the real engine's.
  local bench=$APP/dist/bench/server-overhead.js status=0
  local args=(--points "${OVERHEAD_POINTS:-1xbase64}" --requests "${OVERHEAD_REQUESTS:-2000}"
    --warmup 300 --rounds "${OVERHEAD_ROUNDS:-3}")
  [ -f "$ADDON" ] && args+=(--addon "$ADDON")
  : > "$OUT/server-overhead.md"
  local label extra
  for label in at-once after-3ms after-3ms-busy-poll; do
    case $label in
      at-once) extra=() ;;
      after-3ms) extra=(--engine-ms 3) ;;
      *) extra=(--engine-ms 3 --busy-poll) ;;
    esac
    { echo "## $label"; echo
      timeout 300 node "$bench" "${args[@]}" "${extra[@]}" --json "$OUT/server-overhead-$label.json"
      echo; } | tee -a "$OUT/server-overhead.md" || status=1
    grep -E "^[0-9]+ x (base64|float)" "$OUT/server-overhead.md" | tail -1 |
      sed "s/^/| overhead $label | /; s/$/ |/" >> "$RESULTS"
  done
  return "$status"
}

# Generated checkpoints of the other families (issue 18): transformers' AutoModel/AutoTokenizer and
# sentence-transformers load each cleanly (no weight or loading warnings, AutoTokenizer = tokenizer.json).
step_familyload() {
  local dirs=() preset dir
  for preset in qwen2-tiny mistral-tiny llama-tiny bert-tiny xlm-roberta-tiny; do
    dir=$WORK/families/$preset
    admin checkpoint generate --preset "$preset" --seed 0 --out "$dir" --force > /dev/null || return 1
    dirs+=("$dir")
  done
  admin checkpoint generate --preset bert-tiny --seed 0 --out "$WORK/families/bert-tiny-mean-dense" --force \
    --pooling mean --no-include-prompt --dense 32 > /dev/null || return 1
  dirs+=("$WORK/families/bert-tiny-mean-dense")
  python3 scripts/reference/check_generated_families.py --texts test/fixtures/parity-texts.json \
    --out "$OUT/generated-families.json" "${dirs[@]}"
  local status=$?
  # shellcheck disable=SC2016  # ${...} in the script is a JavaScript template literal
  node -e '
    for (const r of require(process.argv[1]).results)
      console.log(`| familyload ${r.model.split("/").pop()} | ${r.ok ? "ok" : "FAILED: " + r.problems.join("; ")} | ${r.tokenizerClass ?? ""} ${(r.modules ?? []).join(">")} |`);
  ' "$OUT/generated-families.json" >> "$RESULTS" 2>/dev/null
  return "$status"
}

# ---------------------------------------------------------------------------------------------------
run_step() {
  local name=$1 started status
  started=$(date +%s)
  printf '\n===== %s =====\n' "$name" | tee -a "$LOG"
  "step_$name" 2>&1 | tee -a "$LOG"
  status=${PIPESTATUS[0]}
  local seconds=$(($(date +%s) - started))
  echo "| $name | $([ "$status" = 0 ] && echo ok || echo "FAILED ($status)") | $seconds |" >> "$SUMMARY"
  printf '===== %s: exit %s after %s s =====\n' "$name" "$status" "$seconds" | tee -a "$LOG"
  return "$status"
}

failed=0
printf '===== setup =====\n' | tee -a "$LOG"
if ! setup 2>&1 | tee -a "$LOG"; then
  echo "| setup | FAILED | - |" >> "$SUMMARY"
  failed=1
else
  export PATH=$ROOT/build/device-stamps:$PATH
  for name in "${steps[@]}"; do
    if ! declare -F "step_$name" > /dev/null; then
      echo "unknown step $name" | tee -a "$LOG"
      echo "| $name | unknown step | - |" >> "$SUMMARY"
      failed=1
      continue
    fi
    run_step "$name" || failed=1
  done
fi
{
  echo
  echo "| result | |"
  echo "| --- | --- |"
  cat "$RESULTS"
} >> "$SUMMARY"
echo
cat "$SUMMARY"
exit "$failed"
