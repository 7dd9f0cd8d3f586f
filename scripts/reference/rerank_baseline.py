#!/usr/bin/env python3
"""Qwen3-Reranker baseline: the model card's transformers code, timed on the workload `admin bench --task rerank` sends.

Runs on the GPU host only (torch, transformers; no network). Loads a Qwen3-Reranker checkpoint directory
(Qwen3ForCausalLM, the published form; e.g. `checkpoint generate --preset qwen3-reranker-4b`) with
AutoModelForCausalLM in --dtype (bf16 by default) and the attention the card recommends,
flash_attention_2, when the flash_attn package is importable and the model takes it, else sdpa; the
tokenizer with padding_side='left'. Scoring is the card's code unchanged: format_instruction,
process_inputs (prefix + the pair cut to max_length - prefix - suffix + suffix, padded per batch),
compute_logits (the last position's "yes" and "no" logits, log_softmax, exp), max_length 8192. The card
computes the LM head over every position (model(**inputs).logits[:, -1, :]); --last-logits-only asks
transformers for the last position only (logits_to_keep=1), a faster baseline than the card's.

The workload is the JSON file `admin bench --task rerank --write-corpus FILE.json` writes,
{"groups": [{"query", "instruction"?, "documents": [...]}]} (test/fixtures/rerank-pairs.json has the
same shape), so both sides score identical texts. Every pair of every group is scored in order, in
batches of each --batch-sizes (the card's loop: tokenize, pad, forward, per batch), after --warmup
passes, --repeats timed passes each; a pass's time covers tokenization and the forward, as the server's
does. The best pass of the best batch size is the result.

Prints one JSON line on stdout: {pairsPerSecond, batchSize, attn, torch, transformers, gpu, ...} with
every batch size's passes under "sweep"; --out writes the same object to a file.

    python3 scripts/reference/rerank_baseline.py --model models/Qwen3-Reranker-4B \
        --workload $WORK/rerank-workload.json --batch-sizes 8,16,32,100 --out $OUT/rerank-baseline.json
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import inspect
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

# The model card's template and default instruction (Qwen/Qwen3-Reranker-4B, README "Transformers Usage").
PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def format_instruction(instruction, query, doc):
    if instruction is None:
        instruction = DEFAULT_INSTRUCTION
    output = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}".format(
        instruction=instruction, query=query, doc=doc
    )
    return output


def load_workload(path: str) -> list[str]:
    """Every (query, document) pair of the workload, formatted as the card formats them, in order."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list) or not groups:
        raise SystemExit(f"{path}: expected {{\"groups\": [{{\"query\", \"documents\"}}, ...]}}")
    pairs = []
    for n, group in enumerate(groups):
        query, documents = group.get("query"), group.get("documents")
        instruction = group.get("instruction")
        if not isinstance(query, str) or not isinstance(documents, list) or not documents:
            raise SystemExit(f"{path}: groups[{n}] needs a query string and a non-empty documents array")
        if instruction is not None and not isinstance(instruction, str):
            raise SystemExit(f"{path}: groups[{n}].instruction is not a string")
        for doc in documents:
            if not isinstance(doc, str):
                raise SystemExit(f"{path}: groups[{n}].documents holds a non-string")
            pairs.append(format_instruction(instruction, query, doc))
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a Qwen3-Reranker checkpoint directory (Qwen3ForCausalLM)")
    parser.add_argument("--workload", required=True, help="admin bench --task rerank --write-corpus's JSON")
    parser.add_argument("--out", default=None, help="also write the result JSON here")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--attn", default="auto", help="auto (flash_attention_2 if installed, else sdpa), sdpa, eager")
    parser.add_argument("--batch-sizes", default="8,16,32,100", help="comma-separated pairs per forward; best kept")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes over the workload per batch size")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per batch size; the fastest counts")
    parser.add_argument("--max-length", type=int, default=8192)
    parser.add_argument(
        "--last-logits-only",
        action="store_true",
        help="logits_to_keep=1: the LM head on the last position only (the card computes every position)",
    )
    args = parser.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pairs = load_workload(args.workload)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    if not batch_sizes or min(batch_sizes) < 1:
        raise SystemExit("--batch-sizes: positive integers, comma-separated")
    dtype = getattr(torch, args.dtype)
    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    attempts = [args.attn]
    if args.attn == "auto":
        # The card recommends flash_attention_2; transformers refuses it at load when flash_attn is
        # missing or does not support the GPU: then sdpa.
        attempts = (["flash_attention_2"] if importlib.util.find_spec("flash_attn") else []) + ["sdpa"]

    started = time.time()
    tokenizer = AutoTokenizer.from_pretrained(args.model, padding_side="left")
    if tokenizer.pad_token is None:
        # The published tokenizer_config.json names <|endoftext|>; a bare tokenizer.json may not.
        tokenizer.pad_token = "<|endoftext|>"
        log("the tokenizer names no pad token: padding with <|endoftext|>")
    model = None
    attn = None
    for attn in attempts:
        try:
            model = (
                AutoModelForCausalLM.from_pretrained(args.model, **{dtype_key: dtype}, attn_implementation=attn)
                .to(args.device)
                .eval()
            )
            break
        except (ValueError, ImportError) as error:
            if attn == attempts[-1]:
                raise
            log(f"attn {attn} refused ({error}); trying the next")
    load_seconds = time.time() - started
    # What transformers actually set up (it may have resolved the request differently).
    attn = getattr(model.config, "_attn_implementation", None) or attn

    token_false_id = tokenizer.convert_tokens_to_ids("no")
    token_true_id = tokenizer.convert_tokens_to_ids("yes")
    max_length = args.max_length
    prefix_tokens = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix_tokens = tokenizer.encode(SUFFIX, add_special_tokens=False)
    forward_kwargs = {}
    if args.last_logits_only:
        parameters = inspect.signature(model.forward).parameters
        key = "logits_to_keep" if "logits_to_keep" in parameters else "num_logits_to_keep"
        if key not in parameters:
            raise SystemExit("--last-logits-only: this transformers takes no logits_to_keep (nor num_logits_to_keep)")
        forward_kwargs[key] = 1

    def process_inputs(batch):
        inputs = tokenizer(
            batch,
            padding=False,
            truncation="longest_first",
            return_attention_mask=False,
            max_length=max_length - len(prefix_tokens) - len(suffix_tokens),
        )
        for i, ele in enumerate(inputs["input_ids"]):
            inputs["input_ids"][i] = prefix_tokens + ele + suffix_tokens
        inputs = tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)
        for key in inputs:
            inputs[key] = inputs[key].to(model.device)
        return inputs

    @torch.no_grad()
    def compute_logits(inputs):
        batch_scores = model(**inputs, **forward_kwargs).logits[:, -1, :]
        true_vector = batch_scores[:, token_true_id]
        false_vector = batch_scores[:, token_false_id]
        batch_scores = torch.stack([false_vector, true_vector], dim=1)
        batch_scores = torch.nn.functional.log_softmax(batch_scores, dim=1)
        scores = batch_scores[:, 1].exp().tolist()
        return scores

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def score_all(batch_size: int) -> tuple[list[float], int]:
        scores, padded = [], 0
        for start in range(0, len(pairs), batch_size):
            inputs = process_inputs(pairs[start : start + batch_size])
            padded += int(inputs["input_ids"].numel())
            scores.extend(compute_logits(inputs))
        return scores, padded

    # Prompt tokens as the server's usage counts them: prefix + the (cut) pair + suffix, no padding.
    cut = tokenizer(
        pairs,
        padding=False,
        truncation="longest_first",
        return_attention_mask=False,
        max_length=max_length - len(prefix_tokens) - len(suffix_tokens),
    )["input_ids"]
    total_tokens = sum(len(prefix_tokens) + len(ids) + len(suffix_tokens) for ids in cut)
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    log(
        f"rerank baseline: {len(pairs)} pairs, {total_tokens} prompt tokens (mean {total_tokens / len(pairs):.1f}), "
        f"{args.dtype}, attn {attn}, {'last-position' if forward_kwargs else 'all-position (card)'} logits, "
        f"yes {token_true_id} no {token_false_id}, loaded in {load_seconds:.1f} s on {gpu}"
    )

    sweep = []
    scores = []
    for batch_size in batch_sizes:
        out_of_memory = False
        try:
            for _ in range(max(0, args.warmup)):
                score_all(batch_size)
            sync()
            seconds = []
            for repeat in range(max(1, args.repeats)):
                sync()
                t0 = time.perf_counter()
                scores, padded = score_all(batch_size)
                sync()
                seconds.append(time.perf_counter() - t0)
                log(
                    f"  batch {batch_size} pass {repeat + 1}: {seconds[-1]:.3f} s, {len(pairs) / seconds[-1]:.1f} "
                    f"pairs/s ({padded} padded tokens)"
                )
            best = min(seconds)
            sweep.append(
                {
                    "batchSize": batch_size,
                    "seconds": seconds,
                    "pairsPerSecond": len(pairs) / best,
                    "tokensPerSecond": total_tokens / best,
                    "paddedTokens": padded,
                }
            )
        except torch.cuda.OutOfMemoryError as error:
            log(f"  batch {batch_size}: out of memory ({str(error).splitlines()[0]})")
            sweep.append({"batchSize": batch_size, "error": "out of memory"})
            out_of_memory = True
        if out_of_memory:
            # Outside the except block: its traceback no longer holds the failed batch's tensors.
            gc.collect()
            torch.cuda.empty_cache()
    measured = [run for run in sweep if "pairsPerSecond" in run]
    if not measured:
        raise SystemExit("no batch size ran")
    best_run = max(measured, key=lambda run: run["pairsPerSecond"])
    finite = [s for s in scores if math.isfinite(s)]

    result = {
        "tool": "Qwen3-Reranker model card code (scripts/reference/rerank_baseline.py)",
        "pairsPerSecond": best_run["pairsPerSecond"],
        "batchSize": best_run["batchSize"],
        "attn": attn,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gpu": gpu,
        "python": platform.python_version(),
        "dtype": args.dtype,
        "logits": "last position (logits_to_keep=1)" if forward_kwargs else "every position (the model card's)",
        "model": str(Path(args.model).resolve()),
        "workload": args.workload,
        "pairs": len(pairs),
        "promptTokens": total_tokens,
        "tokensPerSecond": best_run["tokensPerSecond"],
        "maxLength": max_length,
        "yesTokenId": token_true_id,
        "noTokenId": token_false_id,
        "loadSeconds": load_seconds,
        "scores": {
            "finite": len(finite) == len(scores),
            "min": min(finite) if finite else None,
            "max": max(finite) if finite else None,
        },
        "sweep": sweep,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
