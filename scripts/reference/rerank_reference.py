#!/usr/bin/env python3
"""Qwen3-Reranker reference scores: the model card's transformers code over test/fixtures/rerank-pairs.json.

Runs on the GPU host only (Python 3.12, torch, transformers; no network). The prompt, tokenization and
scoring are the Qwen3-Reranker model card's (format_instruction, process_inputs, compute_logits below,
copied with only the recording added): AutoTokenizer with padding_side='left', the system/user prefix
and the assistant/<think> suffix tokenized on their own without special tokens, the instruction/query/
document middle tokenized with truncation to 8192 minus the prefix and suffix (so a long document loses
its end), then the logits of "yes" and "no" at the last position. A checkpoint saved as
Qwen3ForSequenceClassification (the converted form) is scored by its one-label classifier instead, on
the same token ids: raw = the logit, score = sigmoid(raw).

Every pair is scored alone (no padding: what the service's packed batches see) and each group batched
with left padding as the card runs it; the fixture records the single-pair values and the largest
difference between the two. --bf16-baseline also runs the card in bfloat16 and records how far its
scores land from these (what bf16 costs transformers itself).

    python3 scripts/reference/rerank_reference.py --model $WORK/rerankers/qwen3-reranker-tiny \
        --pairs test/fixtures/rerank-pairs.json --out $OUT/rerank-qwen3-reranker-tiny.json \
        --name qwen3-reranker-tiny --generator-args '--preset qwen3-reranker-tiny --seed 0' --device cpu

Exit status: 0 when the fixture was written and alone and batched agree (scores within 1e-4, raw
logits within 1e-3, in float32);
2 when they disagree (the fixture is still written, with agreement.ok false); 1 on errors.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

from checkpoint_files import sha256_file, weight_files

MAX_LENGTH = 8192
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
# Alone vs batched (left padding shifts every position; RoPE makes that exact only up to rounding).
# Scores are what the service answers; raw logits are several units wide on a full-size model, where
# the GPU's fp32 reductions alone move them by ~1.5e-4 (qwen3-reranker-4b on an H200), so they get
# a bound ten times looser.
AGREEMENT_MAX_DIFFERENCE = 1e-4
AGREEMENT_MAX_RAW_DIFFERENCE = 1e-3


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="reranker checkpoint directory")
    parser.add_argument("--pairs", default="test/fixtures/rerank-pairs.json", help="the shared query/document groups")
    parser.add_argument("--out", required=True, help="fixture JSON to write")
    parser.add_argument("--name", default=None, help="fixture name (default: the directory's name)")
    parser.add_argument(
        "--generator-args",
        default=None,
        help="the `admin checkpoint generate` arguments that made the directory (recorded, so CI can remake it)",
    )
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="the model's dtype")
    parser.add_argument("--attn", default="eager", choices=["eager", "sdpa"], help="attention implementation")
    parser.add_argument(
        "--bf16-baseline",
        action="store_true",
        help="also score every pair with the card's code in bfloat16 (sdpa) and record its distance to these scores",
    )
    return parser.parse_args()


def dtype_key(transformers_version: str) -> str:
    # transformers 5 renamed torch_dtype to dtype (the old name still works there, with a warning).
    return "dtype" if int(transformers_version.split(".")[0]) >= 5 else "torch_dtype"


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b between two score lists over the same documents (1: same order)."""
    concordant = discordant = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da = a[i] - a[j]
            db = b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return (concordant - discordant) / denominator if denominator > 0 else 1.0


def difference(a: float, b: float) -> float:
    """|a - b|, infinite when either is NaN (max() would otherwise pass a NaN over)."""
    value = abs(a - b)
    return value if not math.isnan(value) else math.inf


def finite_json(value):
    """The value with every NaN or infinity as null: JSON has neither, and the TypeScript side parses it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite_json(item) for item in value]
    return value


def sigmoid(x: float) -> float:
    # Either form alone overflows for one sign of a large |x|.
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def ranking(scores: list[float]) -> list[int]:
    """Document indices by score, highest first (ties: lower index first, as the API sorts)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


class CardReranker:
    """The model card's code around one loaded model (the card's globals become attributes)."""

    def __init__(self, model_dir: Path, device: str, dtype, attn: str, classifier: bool):
        import transformers
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        self.device = device
        self.classifier = classifier
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), padding_side="left")
        model_class = AutoModelForSequenceClassification if classifier else AutoModelForCausalLM
        self.model = model_class.from_pretrained(
            str(model_dir),
            attn_implementation=attn,
            trust_remote_code=False,
            **{dtype_key(transformers.__version__): dtype},
        )
        self.model.to(device).eval()
        if classifier and self.model.config.pad_token_id is None:
            # The classifier finds each padded row's last real token through pad_token_id.
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.token_false_id = self.tokenizer.convert_tokens_to_ids("no")
        self.token_true_id = self.tokenizer.convert_tokens_to_ids("yes")
        self.max_length = MAX_LENGTH
        self.prefix_tokens = self.tokenizer.encode(PREFIX, add_special_tokens=False)
        self.suffix_tokens = self.tokenizer.encode(SUFFIX, add_special_tokens=False)
        # Only the last position's logits are read; computing just those is the same numbers without
        # a [batch, 8192, 151669] float tensor (transformers >= 4.50 takes logits_to_keep).
        forward = inspect.signature(self.model.forward).parameters
        keep = next((key for key in ("logits_to_keep", "num_logits_to_keep") if key in forward), None)
        self.logit_kwargs = {keep: 1} if keep and not classifier else {}

    @staticmethod
    def format_instruction(instruction, query, doc):
        if instruction is None:
            instruction = DEFAULT_INSTRUCTION
        output = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}".format(
            instruction=instruction, query=query, doc=doc
        )
        return output

    def process_inputs(self, pairs):
        inputs = self.tokenizer(
            pairs,
            padding=False,
            truncation="longest_first",
            return_attention_mask=False,
            max_length=self.max_length - len(self.prefix_tokens) - len(self.suffix_tokens),
        )
        for i, ele in enumerate(inputs["input_ids"]):
            inputs["input_ids"][i] = self.prefix_tokens + ele + self.suffix_tokens
        inputs = self.tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=self.max_length)
        for key in inputs:
            inputs[key] = inputs[key].to(self.model.device)
        return inputs

    def compute_logits(self, inputs):
        """The card's compute_logits, also returning the two logits (or the classifier's logit)."""
        import torch

        with torch.no_grad():
            if self.classifier:
                logits = self.model(**inputs).logits[:, 0]
                scores = torch.sigmoid(logits).float().tolist()
                return scores, None, None, logits.float().tolist()
            batch_scores = self.model(**inputs, **self.logit_kwargs).logits[:, -1, :]
            true_vector = batch_scores[:, self.token_true_id]
            false_vector = batch_scores[:, self.token_false_id]
            batch_scores = torch.stack([false_vector, true_vector], dim=1)
            batch_scores = torch.nn.functional.log_softmax(batch_scores, dim=1)
            scores = batch_scores[:, 1].exp().tolist()
            # raw as the service computes it: logit_yes - logit_no in float32.
            raw = (true_vector.float() - false_vector.float()).tolist()
            return scores, true_vector.float().tolist(), false_vector.float().tolist(), raw

    def score(self, pairs: list[str]) -> list[dict]:
        """One batch as the card runs it; per pair its token ids (padding removed) and its numbers."""
        inputs = self.process_inputs(pairs)
        scores, yes, no, raw = self.compute_logits(inputs)
        rows = []
        for i in range(len(pairs)):
            mask = inputs["attention_mask"][i].bool()
            rows.append(
                {
                    "tokenIds": [int(x) for x in inputs["input_ids"][i][mask].tolist()],
                    "logitYes": yes[i] if yes is not None else None,
                    "logitNo": no[i] if no is not None else None,
                    "raw": raw[i],
                    "score": scores[i],
                }
            )
        return rows

    def room(self) -> int:
        return self.max_length - len(self.prefix_tokens) - len(self.suffix_tokens)

    def release(self) -> None:
        import torch

        del self.model
        if self.device == "cuda":
            torch.cuda.empty_cache()


def main() -> int:
    args = parse_args()
    model_dir = Path(args.model).resolve()
    if not (model_dir / "config.json").exists():
        log(f"error: {model_dir} has no config.json")
        return 1
    pairs_spec = json.loads(Path(args.pairs).read_text(encoding="utf-8"))
    groups = pairs_spec.get("groups")
    if not isinstance(groups, list) or not groups:
        log(f"error: {args.pairs} has no groups")
        return 1

    import torch
    import transformers

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # Exact fp32: no TF32 in matmuls or convolutions.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    dtype = torch.float32 if args.dtype == "float32" else torch.bfloat16

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    architectures = [str(name) for name in config.get("architectures") or []]
    classifier = any(name.endswith("ForSequenceClassification") for name in architectures)
    head = "classifier" if classifier else "yes-no"
    name = args.name or model_dir.name
    pair_count = sum(len(group["documents"]) for group in groups)
    log(f"rerank reference {name}: {architectures} ({head}), {len(groups)} groups, {pair_count} pairs, "
        f"{device} {args.dtype}, attention {args.attn}")

    started = time.time()
    card = CardReranker(model_dir, device, dtype, args.attn, classifier)
    log(f"{type(card.model).__name__} loaded in {time.time() - started:.1f} s; yes {card.token_true_id}, "
        f"no {card.token_false_id}; prefix {len(card.prefix_tokens)} + suffix {len(card.suffix_tokens)} tokens")

    fixture_groups = []
    max_score_difference = 0.0
    max_raw_difference = 0.0
    problems: list[str] = []
    started = time.time()
    for g, group in enumerate(groups):
        instruction = group.get("instruction")
        pairs = [card.format_instruction(instruction, group["query"], doc) for doc in group["documents"]]
        alone = [card.score([pair])[0] for pair in pairs]
        batched = card.score(pairs)
        items = []
        for d, (document, pair, single, together) in enumerate(zip(group["documents"], pairs, alone, batched)):
            if single["tokenIds"] != together["tokenIds"]:
                problems.append(f"group {g} document {d}: batched token ids differ from the pair's alone")
            if not all(math.isfinite(row[key]) for row in (single, together) for key in ("raw", "score")):
                problems.append(f"group {g} document {d}: a score is not finite")
            max_score_difference = max(max_score_difference, difference(single["score"], together["score"]))
            max_raw_difference = max(max_raw_difference, difference(single["raw"], together["raw"]))
            middle = card.tokenizer(pair)["input_ids"]
            items.append(
                {
                    "document": document,
                    "tokenIds": single["tokenIds"],
                    "truncated": len(middle) > card.room(),
                    "logitYes": single["logitYes"],
                    "logitNo": single["logitNo"],
                    "raw": single["raw"],
                    "score": single["score"],
                }
            )
        fixture_groups.append({"query": group["query"], "instruction": instruction, "items": items})
        log(f"group {g}: {len(items)} documents, lengths {[len(i['tokenIds']) for i in items]}, "
            f"scores {[round(i['score'], 6) for i in items]}")
    log(f"scored {pair_count} pairs alone and {len(groups)} batches in {time.time() - started:.1f} s; "
        f"batched vs alone: max |score| {max_score_difference:.2e}, max |raw| {max_raw_difference:.2e}")
    card.release()

    # sigmoid(raw) is the score the service computes; in float32 it must be the card's softmax.
    max_sigmoid_difference = max(
        difference(sigmoid(item["raw"]), item["score"]) for group in fixture_groups for item in group["items"]
    )
    agree = not problems and (
        args.dtype != "float32"
        or (max_score_difference <= AGREEMENT_MAX_DIFFERENCE and max_raw_difference <= AGREEMENT_MAX_RAW_DIFFERENCE)
    )

    bf16 = None
    if args.bf16_baseline:
        started = time.time()
        card16 = CardReranker(model_dir, device, torch.bfloat16, "sdpa", classifier)
        worst_score = worst_raw = 0.0
        orders = []
        for group in fixture_groups:
            pairs = [
                card16.format_instruction(group["instruction"], group["query"], item["document"])
                for item in group["items"]
            ]
            rows = [card16.score([pair])[0] for pair in pairs]
            reference = [item["score"] for item in group["items"]]
            scores = [row["score"] for row in rows]
            raws = [row["raw"] for row in rows]
            worst_score = max(worst_score, *(difference(a, b) for a, b in zip(scores, reference)))
            worst_raw = max(worst_raw, *(difference(a, item["raw"]) for a, item in zip(raws, group["items"])))
            orders.append(
                {
                    "sameOrder": ranking(raws) == ranking([item["raw"] for item in group["items"]]),
                    "kendallTau": kendall_tau(raws, [item["raw"] for item in group["items"]]),
                }
            )
        card16.release()
        bf16 = {
            "maxScoreDifference": worst_score,
            "maxRawDifference": worst_raw,
            "groupsInOrder": sum(1 for order in orders if order["sameOrder"]),
            "groups": len(orders),
            "minKendallTau": min(order["kendallTau"] for order in orders),
            "note": "the card's bfloat16 scores (card code, sdpa) against this fixture's; bf16 logits are rounded",
        }
        log(f"card bf16 vs this reference: max |score| {worst_score:.4f}, max |raw| {worst_raw:.4f}, "
            f"{bf16['groupsInOrder']}/{len(orders)} groups in the same order ({time.time() - started:.1f} s)")

    device_name = "cpu" if device == "cpu" else torch.cuda.get_device_name(0)
    fixture = {
        "name": name,
        "generatorArgs": args.generator_args,
        "reference": (
            f"model card code; transformers {transformers.__version__}, torch {torch.__version__}; "
            f"{args.dtype} {device}"
        ),
        "maxLength": MAX_LENGTH,
        "head": head,
        "yesTokenId": card.token_true_id,
        "noTokenId": card.token_false_id,
        "description": (
            "Qwen3-Reranker model card code over test/fixtures/rerank-pairs.json, each pair scored alone; "
            "see scripts/reference/rerank_reference.py"
        ),
        "model": {
            "name": model_dir.name,
            "architectures": architectures,
            "hiddenSize": config.get("hidden_size"),
            "numHiddenLayers": config.get("num_hidden_layers"),
            "tieWordEmbeddings": config.get("tie_word_embeddings"),
            "weightsSha256": {path.name: sha256_file(path) for path in weight_files(model_dir)},
        },
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": __import__("tokenizers").__version__,
            "device": device_name,
            "dtype": args.dtype,
            "tf32": False,
            "attnImplementation": args.attn,
            "logitsToKeep": bool(card.logit_kwargs),
        },
        "agreement": {
            "batchedVsAloneMaxScoreDifference": max_score_difference,
            "batchedVsAloneMaxRawDifference": max_raw_difference,
            "sigmoidRawVsScoreMaxDifference": max_sigmoid_difference,
            "threshold": AGREEMENT_MAX_DIFFERENCE,
            "rawThreshold": AGREEMENT_MAX_RAW_DIFFERENCE,
            "cardBfloat16": bf16,
            "problems": problems,
            "ok": agree,
        },
        "groups": fixture_groups,
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(finite_json(fixture), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    scores = [item["score"] for group in fixture_groups for item in group["items"]]
    print(
        json.dumps(
            finite_json({
                "fixture": str(out_path),
                "name": name,
                "head": head,
                "dtype": args.dtype,
                "pairs": pair_count,
                "groups": len(fixture_groups),
                "truncated": sum(1 for group in fixture_groups for item in group["items"] if item["truncated"]),
                "scoreRange": [min(scores), max(scores)],
                "batchedVsAloneMaxScore": max_score_difference,
                "batchedVsAloneMaxRaw": max_raw_difference,
                "sigmoidVsScore": max_sigmoid_difference,
                "bf16": bf16,
                "problems": len(problems),
                "ok": agree,
            }),
        ),
        flush=True,
    )
    return 0 if agree else 2


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.exit(main())
