#!/usr/bin/env python3
"""sentence-transformers baseline: throughput and latency on the same corpus as `admin bench`.

Runs on the GPU host only (torch, transformers, sentence-transformers; no network). Loads any
sentence-transformers model directory (Qwen3, or the other families of issue 18) in --dtype (bf16 by
default; flash-attention-2 when the flash_attn package is importable and the model takes it, else
sdpa) and measures, on the GPU the server would use:

- throughput: the whole corpus through `encode(batch_size=B)` (sentence-transformers sorts by length
  and pads each batch), as embeddings/s and tokens/s (tokens counted with the special tokens the
  model's tokenizer adds, as the server's usage counts them), repeated --rounds times, best round
  kept; with several --batch-sizes, each is measured and the best kept as `throughputRun`;
- latency: `encode` of --batch texts at a time, one call after another, --latency-requests calls:
  p50/p90/p99 per call, the closest thing to the server's per-request latency at concurrency 1.

The corpus formats are those of `admin bench --corpus` (.jsonl with strings or {"text"}, .json array,
else one text per line). The JSON written to --out uses the admin bench's key names.

    python3 scripts/reference/baseline_bench.py --model models/Qwen3-Embedding-4B \
        --corpus $WORK/corpus.jsonl --batch-size 32 --out $OUT/baseline.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_corpus(path: str) -> list[str]:
    text = Path(path).read_text(encoding="utf-8")

    def from_item(item, where: str) -> str:
        if isinstance(item, str):
            return item
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            return item["text"]
        raise SystemExit(f"{path}: {where} is neither a string nor an object with 'text'")

    if path.endswith(".jsonl"):
        texts = [
            from_item(json.loads(line), f"line {n + 1}") for n, line in enumerate(text.splitlines()) if line.strip()
        ]
    elif path.endswith(".json"):
        data = json.loads(text)
        if not isinstance(data, list):
            raise SystemExit(f"{path}: expected a JSON array")
        texts = [from_item(item, f"item {n}") for n, item in enumerate(data)]
    else:
        texts = [line for line in text.splitlines() if line.strip()]
    texts = [t for t in texts if t]
    if not texts:
        raise SystemExit(f"{path}: no texts")
    return texts


def percentiles(samples_ms: list[float]) -> dict:
    import numpy as np

    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        return {"count": 0}
    # numpy's default (linear) interpolation, as the admin bench computes them
    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
        "p50": float(np.percentile(values, 50)),
        "p90": float(np.percentile(values, 90)),
        "p99": float(np.percentile(values, 99)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--attn", default="auto", help="auto (flash_attention_2 if installed, else sdpa), sdpa, eager")
    parser.add_argument("--batch-size", type=int, default=32, help="encode() batch size for throughput")
    parser.add_argument(
        "--batch-sizes",
        default=None,
        help="comma-separated encode() batch sizes to measure (overrides --batch-size; the best is kept)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-texts", type=int, default=0, help="use only the first N texts (0 = all)")
    parser.add_argument("--batch", type=int, default=1, help="texts per call in the latency run")
    parser.add_argument("--latency-requests", type=int, default=200)
    parser.add_argument("--max-seq-length", type=int, default=0, help="0: the model's own (sentence_bert_config)")
    parser.add_argument("--dimensions", type=int, default=None, help="truncate_dim (Matryoshka)")
    args = parser.parse_args()

    import torch
    import transformers
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    texts = load_corpus(args.corpus)
    if args.max_texts > 0:
        texts = texts[: args.max_texts]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else [args.batch_size]
    dtype = getattr(torch, args.dtype)
    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    attempts = [args.attn]
    if args.attn == "auto":
        # Not every architecture takes flash-attention-2 (transformers refuses it at load): then sdpa.
        attempts = (["flash_attention_2"] if importlib.util.find_spec("flash_attn") else []) + ["sdpa"]

    started = time.time()
    model = None
    for attn in attempts:
        try:
            model = SentenceTransformer(
                args.model,
                device=args.device,
                trust_remote_code=False,
                model_kwargs={dtype_key: dtype, "attn_implementation": attn},
                truncate_dim=args.dimensions,
            )
            break
        except (ValueError, ImportError) as error:
            if attn == attempts[-1]:
                raise
            log(f"attn {attn} refused ({error}); trying the next")
    if args.max_seq_length > 0:
        model.max_seq_length = args.max_seq_length
    load_seconds = time.time() - started
    log(
        f"baseline: {len(texts)} texts, {args.dtype}, attn {attn}, batch sizes {batch_sizes}, device {args.device}, "
        f"max_seq_length {model.max_seq_length}"
    )
    tokenizer = model.tokenizer
    lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
    lengths = [min(n, model.max_seq_length) for n in lengths]
    total_tokens = int(sum(lengths))
    log(f"loaded in {load_seconds:.1f} s; {total_tokens} tokens in the corpus (mean {total_tokens / len(texts):.1f})")

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    # Warm-up over a slice of the corpus wide enough to meet most padded shapes: kernels, allocator,
    # autotuning (one batch was not enough: the first full round ran 1.7x slower than the second).
    throughput_runs = []
    for batch_size in batch_sizes:
        model.encode(texts[: max(8 * batch_size, 256)], batch_size=batch_size, convert_to_numpy=True)
        sync()
        rounds = []
        for round_index in range(max(1, args.rounds)):
            sync()
            t0 = time.perf_counter()
            model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True)
            sync()
            seconds = time.perf_counter() - t0
            rounds.append(seconds)
            log(
                f"  batch {batch_size} round {round_index + 1}: {seconds:.2f} s, {len(texts) / seconds:.1f} "
                f"embeddings/s, {total_tokens / seconds:.0f} tokens/s"
            )
        best = min(rounds)
        throughput_runs.append(
            {
                "batchSize": batch_size,
                "rounds": rounds,
                "durationSeconds": best,
                "throughput": {
                    "requestsPerSecond": None,
                    "embeddingsPerSecond": len(texts) / best,
                    "tokensPerSecond": total_tokens / best,
                },
            }
        )
    best_run = max(throughput_runs, key=lambda run: run["throughput"]["embeddingsPerSecond"])

    latencies = []
    cursor = 0
    for _ in range(args.latency_requests):
        batch = [texts[(cursor + i) % len(texts)] for i in range(args.batch)]
        cursor += args.batch
        sync()
        t0 = time.perf_counter()
        model.encode(batch, batch_size=args.batch, convert_to_numpy=True, normalize_embeddings=True)
        sync()
        latencies.append((time.perf_counter() - t0) * 1000.0)
    latency = percentiles(latencies)
    latency_seconds = sum(latencies) / 1000.0

    result = {
        "tool": "sentence-transformers baseline (scripts/reference/baseline_bench.py)",
        "model": str(Path(args.model).resolve()),
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "dtype": args.dtype,
        "attnImplementation": attn,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentenceTransformers": sentence_transformers.__version__,
        },
        "corpus": {"path": args.corpus, "texts": len(texts), "tokens": total_tokens},
        "loadSeconds": load_seconds,
        "maxSeqLength": model.max_seq_length,
        "throughputRun": best_run,
        "throughputRuns": throughput_runs,
        "latencyRun": {
            "concurrency": 1,
            "batch": args.batch,
            "requests": args.latency_requests,
            "durationSeconds": latency_seconds,
            "throughput": {
                "requestsPerSecond": args.latency_requests / latency_seconds,
                "embeddingsPerSecond": args.latency_requests * args.batch / latency_seconds,
                "tokensPerSecond": None,
            },
            "latencyMs": latency,
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    best = best_run["durationSeconds"]
    print(
        f"baseline {args.dtype} {len(texts) / best:.1f} embeddings/s  {total_tokens / best:.0f} tokens/s "
        f"(batch {best_run['batchSize']}); "
        f"latency batch {args.batch}: p50 {latency['p50']:.1f} ms p90 {latency['p90']:.1f} ms "
        f"p99 {latency['p99']:.1f} ms",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
