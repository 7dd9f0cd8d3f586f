#!/usr/bin/env python3
"""Hugging Face reference embeddings for the parity fixture.

Runs on the GPU host only (Python 3.12, torch, transformers, sentence-transformers; no network).
Loads a checkpoint directory twice, with sentence-transformers and with plain transformers AutoModel
(hidden state after the final norm at the last token, which is the appended <|endoftext|>,
L2-normalised), checks that both agree, and writes a JSON fixture: for every text of
test/fixtures/parity-texts.json its exact input string, the token ids the HF tokenizer produced
(with the appended EOS) and fp32 embeddings for each Matryoshka size (truncate, then L2-normalise),
as base64 little-endian float32.

    python3 scripts/reference/reference.py --model models/Qwen3-Embedding-tiny \
        --texts test/fixtures/parity-texts.json --out $OUT/parity-tiny.json

Exit status: 0 when the fixture was written and both HF paths agree; 2 when they disagree (the
fixture is still written, with the disagreement recorded); 1 on usage errors.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

from checkpoint_files import sha256_file, weight_files

EOS_TOKEN = "<|endoftext|>"
EOS_TOKEN_ID = 151643
# Both HF paths run fp32 without TF32, so they agree to rounding.
AGREEMENT_MIN_COSINE = 0.99999


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint directory (HF format)")
    parser.add_argument("--texts", default="test/fixtures/parity-texts.json", help="the shared input set")
    parser.add_argument("--out", required=True, help="fixture JSON to write")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--attn", default="eager", choices=["eager", "sdpa"], help="attention implementation")
    parser.add_argument(
        "--dims",
        default=None,
        help="comma-separated Matryoshka sizes (default: the text file's list plus the hidden size)",
    )
    parser.add_argument(
        "--bf16-baseline",
        action="store_true",
        help="also run transformers in bfloat16 (sdpa) and record its min cosine to the fp32 vectors per size",
    )
    parser.add_argument("--skip-sentence-transformers", action="store_true", help="AutoModel only")
    return parser.parse_args()


def load_inputs(texts_path: Path, model_dir: Path) -> tuple[list[dict], dict]:
    spec = json.loads(texts_path.read_text(encoding="utf-8"))
    prompts = {}
    st_config = model_dir / "config_sentence_transformers.json"
    if st_config.exists():
        prompts = json.loads(st_config.read_text(encoding="utf-8")).get("prompts", {}) or {}
    default_query_prompt = prompts.get("query")
    if default_query_prompt is None:
        default_query_prompt = f"Instruct: {spec['defaultInstruction']}\nQuery:"
    items = []
    for entry in spec["texts"]:
        kind = entry["kind"]
        instruction = entry.get("instruction")
        if kind == "query":
            prompt = default_query_prompt if instruction is None else f"Instruct: {instruction}\nQuery:"
        elif kind == "document":
            prompt = prompts.get("document", "") or ""
        else:
            raise SystemExit(f"{texts_path}: {entry['id']}: unknown kind {kind!r}")
        items.append(
            {
                "id": entry["id"],
                "kind": kind,
                "instruction": instruction,
                "text": entry["text"],
                "prompt": prompt,
                "input": prompt + entry["text"],
            }
        )
    return items, spec


def to_base64_f32(vector) -> str:
    import numpy as np

    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def matryoshka(raw, dims: list[int]) -> dict[str, object]:
    """Truncate the raw last-token hidden state, then L2-normalise (in float64)."""
    import numpy as np

    raw64 = np.asarray(raw, dtype=np.float64)
    out = {}
    for dim in dims:
        head = raw64[:dim]
        norm = float(np.linalg.norm(head))
        out[str(dim)] = (head / norm).astype(np.float32) if norm > 0 else head.astype(np.float32)
    return out


def cosine(a, b) -> float:
    import numpy as np

    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    denominator = float(np.linalg.norm(a64) * np.linalg.norm(b64))
    return float(a64 @ b64 / denominator) if denominator > 0 else float("nan")


def dtype_kwargs(torch, transformers_version: str) -> dict:
    # transformers 5 renamed torch_dtype to dtype (the old name still works there, with a warning).
    major = int(transformers_version.split(".")[0])
    return {"dtype": torch.float32} if major >= 5 else {"torch_dtype": torch.float32}


def main() -> int:
    args = parse_args()
    model_dir = Path(args.model).resolve()
    if not (model_dir / "config.json").exists():
        log(f"error: {model_dir} has no config.json")
        return 1

    import numpy as np
    import torch
    import transformers
    from transformers import AutoModel, AutoTokenizer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # Exact fp32: no TF32 in matmuls or convolutions.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.manual_seed(0)

    config = json.loads((model_dir / "config.json").read_text())
    hidden = int(config["hidden_size"])
    items, spec = load_inputs(Path(args.texts), model_dir)
    if args.dims:
        dims = sorted({int(d) for d in args.dims.split(",")} | {hidden})
    else:
        dims = sorted({int(d) for d in spec.get("dimensions", [])} | {hidden})
    dims = [d for d in dims if 32 <= d <= hidden]
    log(f"reference: {len(items)} texts, dims {dims}, device {device}, attn {args.attn}, model {model_dir}")

    # --- tokenization: the server's rule and what the HF tokenizer does by itself -------------------
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    if eos_id != EOS_TOKEN_ID:
        log(f"error: {EOS_TOKEN} is id {eos_id} in this tokenizer, expected {EOS_TOKEN_ID}")
        return 1
    problems: list[str] = []
    for item in items:
        plain = tokenizer(item["input"], add_special_tokens=False)["input_ids"]
        item["tokenIds"] = list(plain) + [EOS_TOKEN_ID]
        with_special = list(tokenizer(item["input"])["input_ids"])
        if with_special != item["tokenIds"]:
            problems.append(
                f"{item['id']}: tokenizer(add_special_tokens=True) gave ...{with_special[-4:]}, "
                f"expected ...{item['tokenIds'][-4:]} (EOS appended once)"
            )
    if problems:
        log("tokenizer post-processor disagrees with 'encode without special tokens + EOS once':")
        for line in problems[:10]:
            log(f"  {line}")

    # --- transformers AutoModel: one sequence per forward, no padding --------------------------------
    started = time.time()
    model = AutoModel.from_pretrained(
        str(model_dir), attn_implementation=args.attn, **dtype_kwargs(torch, transformers.__version__)
    )
    model.to(device).eval()
    log(f"AutoModel {type(model).__name__} loaded in {time.time() - started:.1f} s")
    raw_vectors = []
    with torch.inference_mode():
        for item in items:
            ids = torch.tensor([item["tokenIds"]], dtype=torch.long, device=device)
            hidden_states = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
            raw_vectors.append(hidden_states[0, -1].float().cpu().numpy())
    # A left-padded batch (as Qwen3-Embedding's README does it) must give the same vectors.
    batch_min_cosine = 1.0
    with torch.inference_mode():
        short_items = [i for i, item in enumerate(items) if len(item["tokenIds"]) <= 512]
        longest = max(len(items[i]["tokenIds"]) for i in short_items)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else EOS_TOKEN_ID
        batch_ids = torch.full((len(short_items), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(short_items), longest), dtype=torch.long)
        for row, i in enumerate(short_items):
            ids = items[i]["tokenIds"]
            batch_ids[row, longest - len(ids) :] = torch.tensor(ids)
            mask[row, longest - len(ids) :] = 1
        out = model(input_ids=batch_ids.to(device), attention_mask=mask.to(device)).last_hidden_state[:, -1]
        for row, i in enumerate(short_items):
            batch_min_cosine = min(batch_min_cosine, cosine(out[row].float().cpu().numpy(), raw_vectors[i]))
    log(f"AutoModel: left-padded batch vs one-by-one min cosine {batch_min_cosine:.8f}")
    del model
    if device == "cuda":
        torch.cuda.empty_cache()

    # --- optional: how far Hugging Face's own bf16 forward lands from fp32 (context for engine figures) -
    bf16_min_cosine = None
    if args.bf16_baseline:
        started = time.time()
        model = AutoModel.from_pretrained(str(model_dir), attn_implementation="sdpa", dtype=torch.bfloat16)
        model.to(device).eval()
        bf16_min_cosine = {str(d): 1.0 for d in dims}
        with torch.inference_mode():
            for item, raw in zip(items, raw_vectors):
                ids = torch.tensor([item["tokenIds"]], dtype=torch.long, device=device)
                out = model(input_ids=ids).last_hidden_state[0, -1].float().cpu().numpy()
                for d in dims:
                    c = cosine(out[:d], raw[:d])
                    bf16_min_cosine[str(d)] = min(bf16_min_cosine[str(d)], c)
        log(f"transformers bf16 vs fp32 min cosine per size {bf16_min_cosine} ({time.time() - started:.1f} s)")
        del model
        if device == "cuda":
            torch.cuda.empty_cache()

    # --- sentence-transformers: the user-facing library, same checkpoint ------------------------------
    st_min_cosine = None
    st_token_mismatches: list[str] = []
    st_version = None
    if not args.skip_sentence_transformers:
        import sentence_transformers
        from sentence_transformers import SentenceTransformer

        st_version = sentence_transformers.__version__
        started = time.time()
        st = SentenceTransformer(
            str(model_dir),
            device=device,
            model_kwargs={"attn_implementation": args.attn, **dtype_kwargs(torch, transformers.__version__)},
        )
        log(f"SentenceTransformer loaded in {time.time() - started:.1f} s")
        st_min_cosine = 1.0
        for item, raw in zip(items, raw_vectors):
            features = st.tokenize([item["input"]])
            st_ids = [int(x) for x in features["input_ids"][0].tolist()]
            if st_ids != item["tokenIds"]:
                st_token_mismatches.append(f"{item['id']}: sentence-transformers ids ...{st_ids[-4:]}")
            vector = st.encode(
                [item["text"]],
                prompt=item["prompt"] or None,
                batch_size=1,
                normalize_embeddings=True,
                convert_to_numpy=True,
            )[0]
            item["stCosine"] = cosine(vector, raw)
            st_min_cosine = min(st_min_cosine, item["stCosine"])
        log(f"sentence-transformers vs AutoModel min cosine {st_min_cosine:.8f}")
        if st_token_mismatches:
            log("sentence-transformers tokenization differs from the server rule:")
            for line in st_token_mismatches[:10]:
                log(f"  {line}")
        del st

    # --- fixture ------------------------------------------------------------------------------------
    fixture_items = []
    for item, raw in zip(items, raw_vectors):
        vectors = matryoshka(raw, dims)
        fixture_items.append(
            {
                "id": item["id"],
                "kind": item["kind"],
                "instruction": item["instruction"],
                "text": item["text"],
                "input": item["input"],
                "tokenIds": item["tokenIds"],
                "embeddings": {dim: to_base64_f32(vector) for dim, vector in vectors.items()},
                **({"stCosine": round(item["stCosine"], 9)} if "stCosine" in item else {}),
            }
        )
    weights = {path.name: sha256_file(path) for path in weight_files(model_dir)}
    agree = (
        st_min_cosine is None or st_min_cosine >= AGREEMENT_MIN_COSINE
    ) and not st_token_mismatches and batch_min_cosine >= AGREEMENT_MIN_COSINE
    fixture = {
        "format": 1,
        "description": (
            "HF reference embeddings (fp32) for test/fixtures/parity-texts.json; see scripts/reference/reference.py"
        ),
        "model": {
            "name": model_dir.name,
            "hiddenSize": hidden,
            "numHiddenLayers": config.get("num_hidden_layers"),
            "weightsSha256": weights,
        },
        "reference": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentenceTransformers": st_version,
            "device": device if device == "cpu" else torch.cuda.get_device_name(0),
            "dtype": "float32",
            "tf32": False,
            "attnImplementation": args.attn,
            "numpy": np.__version__,
        },
        "eosTokenId": EOS_TOKEN_ID,
        "dimensions": dims,
        "encoding": "base64 little-endian float32, truncated to each size then L2-normalised",
        "agreement": {
            "sentenceTransformersVsAutoModelMinCosine": st_min_cosine,
            "leftPaddedBatchVsSingleMinCosine": batch_min_cosine,
            "transformersBfloat16VsFloat32MinCosine": bf16_min_cosine,
            "threshold": AGREEMENT_MIN_COSINE,
            "tokenizerPostProcessorProblems": problems,
            "sentenceTransformersTokenMismatches": st_token_mismatches,
            "ok": agree,
        },
        "items": fixture_items,
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    norms_ok = all(
        math.isclose(float(np.linalg.norm(np.frombuffer(base64.b64decode(v), dtype="<f4"))), 1.0, abs_tol=1e-5)
        for item in fixture_items
        for v in item["embeddings"].values()
    )
    print(
        json.dumps(
            {
                "fixture": str(out_path),
                "items": len(fixture_items),
                "dims": dims,
                "stMinCosine": st_min_cosine,
                "batchMinCosine": batch_min_cosine,
                "bf16MinCosine": bf16_min_cosine,
                "tokenizerProblems": len(problems),
                "stTokenMismatches": len(st_token_mismatches),
                "unitNorms": norms_ok,
                "ok": agree and norms_ok,
            }
        ),
        flush=True,
    )
    return 0 if agree and norms_ok else 2


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.exit(main())
