#!/usr/bin/env python3
"""sentence-transformers reference embeddings for any sentence-transformers model directory.

Runs on the GPU host only (Python 3.12, torch, transformers, sentence-transformers; no network).
Loads the directory with SentenceTransformer (trust_remote_code=False, fp32, TF32 off, eager
attention), so the model's own modules.json decides the pipeline: Transformer, Pooling (cls, mean or
last token, with or without the prompt), Dense layers, Normalize. For every text of
test/fixtures/parity-texts.json it records the exact input string (prompt + text), the token ids
sentence-transformers fed the model (special tokens included, truncated to max_seq_length as it does)
and the embedding at the output size and each Matryoshka size: truncated, then L2-normalised when the
model ends in Normalize, truncated only otherwise, as base64 little-endian float32.

Queries carry their prompt: the directory's `query` prompt (config_sentence_transformers.json) or, for
a custom instruction, `Instruct: {instruction}\\nQuery:`; documents carry the `document` prompt when
there is one, else none. The prompt's length in tokens as sentence-transformers counts it (what
Pooling's include_prompt=false leaves out) is recorded per item.

A plain-transformers cross-check runs beside it: AutoModel on the same ids, pooling, Dense and
Normalize written out here from the directory's JSON files; both must agree (cosine and relative L2
error), as must one batched encode with the one-by-one vectors.

    python3 scripts/reference/st_reference.py --model $WORK/families/bert-tiny \
        --texts test/fixtures/parity-texts.json --out $OUT/parity-bert-tiny.json \
        --name bert-tiny --generator-args '--preset bert-tiny --seed 0'

Exit status: 0 when the fixture was written and every check agrees; 2 when a check disagrees (the
fixture is still written, the disagreement recorded under `agreement`); 1 on errors.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from checkpoint_files import sha256_file, weight_files

# Both paths run fp32 without TF32, so they agree to rounding.
AGREEMENT_MIN_COSINE = 0.99999
AGREEMENT_MAX_RELATIVE_ERROR = 1e-4
MIN_DIMENSION = 32
LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
DENSE_ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": "identity",
    "torch.nn.modules.activation.Tanh": "tanh",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="sentence-transformers model directory")
    parser.add_argument("--texts", default="test/fixtures/parity-texts.json", help="the shared input set")
    parser.add_argument("--out", required=True, help="fixture JSON to write")
    parser.add_argument("--name", default=None, help="fixture name (default: the directory's name)")
    parser.add_argument(
        "--generator-args",
        default=None,
        help="the `admin checkpoint generate` arguments that made the directory (recorded, so CI can remake it)",
    )
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--attn", default="eager", choices=["eager", "sdpa"], help="attention implementation")
    parser.add_argument("--dims", default=None, help="comma-separated Matryoshka sizes (default: see below)")
    parser.add_argument(
        "--bf16-baseline",
        action="store_true",
        help="also encode with sentence-transformers in bfloat16 (sdpa) and record its min cosine to fp32",
    )
    parser.add_argument("--skip-automodel", action="store_true", help="no plain-transformers cross-check")
    return parser.parse_args()


def read_json(path: Path, default=None):
    if not path.exists():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def describe_pipeline(model_dir: Path) -> dict:
    """The sentence-transformers pipeline as the directory's JSON files state it (modules.json order)."""
    modules = read_json(model_dir / "modules.json")
    if not isinstance(modules, list):
        raise SystemExit(f"{model_dir}: no modules.json (not a sentence-transformers directory)")
    pooling = None
    include_prompt = True
    dense = []
    normalize = False
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        path = model_dir / module.get("path", "")
        if kind == "Pooling":
            config = read_json(path / "config.json", {})
            # sentence-transformers 6 writes `pooling_mode`; older files one boolean per mode (none
            # set means mean), which it still reads.
            modes = config.get("pooling_mode")
            if modes is None:
                modes = [name for key, name in LEGACY_POOLING_KEYS.items() if config.get(key)] or ["mean"]
            modes = [modes] if isinstance(modes, str) else list(modes)
            if len(modes) != 1:
                raise SystemExit(f"{path / 'config.json'}: expected exactly one pooling mode, got {modes}")
            pooling = modes[0]
            include_prompt = bool(config.get("include_prompt", True))
        elif kind == "Dense":
            config = read_json(path / "config.json", {})
            activation = config.get("activation_function", "torch.nn.modules.linear.Identity")
            if activation not in DENSE_ACTIVATIONS:
                raise SystemExit(f"{path / 'config.json'}: activation {activation} is not one the check knows")
            dense.append(
                {
                    "path": module.get("path"),
                    "inFeatures": int(config["in_features"]),
                    "outFeatures": int(config["out_features"]),
                    "bias": bool(config.get("bias", True)),
                    "activation": DENSE_ACTIVATIONS[activation],
                }
            )
        elif kind == "Normalize":
            normalize = True
    if pooling is None:
        raise SystemExit(f"{model_dir}: modules.json has no Pooling module")
    return {"pooling": pooling, "includePrompt": include_prompt, "dense": dense, "normalize": normalize}


def build_items(texts_path: Path, prompts: dict) -> tuple[list[dict], dict]:
    spec = json.loads(texts_path.read_text(encoding="utf-8"))
    default_query = prompts.get("query")
    query_name = "query" if default_query is not None else None
    if default_query is None:
        default_query = f"Instruct: {spec['defaultInstruction']}\nQuery:"
    document_prompt = prompts.get("document") or ""
    items = []
    for entry in spec["texts"]:
        kind = entry["kind"]
        instruction = entry.get("instruction")
        if kind == "query":
            if instruction is None:
                prompt, prompt_name = default_query, query_name
            else:
                prompt, prompt_name = f"Instruct: {instruction}\nQuery:", None
        elif kind == "document":
            prompt, prompt_name = document_prompt, ("document" if document_prompt else None)
        else:
            raise SystemExit(f"{texts_path}: {entry['id']}: unknown kind {kind!r}")
        items.append(
            {
                "id": entry["id"],
                "kind": kind,
                "instruction": instruction,
                "text": entry["text"],
                "prompt": prompt,
                "promptName": prompt_name,
                "input": prompt + entry["text"],
            }
        )
    return items, spec


def to_base64_f32(vector) -> str:
    import numpy as np

    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def matryoshka(vector, dims: list[int], normalize: bool) -> dict[str, object]:
    """Truncate, then L2-normalise in float64 when the model normalises; truncate only otherwise."""
    import numpy as np

    full = np.asarray(vector, dtype=np.float64)
    out = {}
    for dim in dims:
        head = full[:dim]
        norm = float(np.linalg.norm(head))
        if normalize and norm > 0:
            head = head / norm
        out[str(dim)] = head.astype(np.float32)
    return out


def cosine(a, b) -> float:
    import numpy as np

    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    denominator = float(np.linalg.norm(a64) * np.linalg.norm(b64))
    return float(a64 @ b64 / denominator) if denominator > 0 else float("nan")


def relative_error(a, b) -> float:
    import numpy as np

    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a64 - b64) / max(float(np.linalg.norm(b64)), 1e-30))


def dtype_key(transformers_version: str) -> str:
    # transformers 5 renamed torch_dtype to dtype (the old name still works there, with a warning).
    return "dtype" if int(transformers_version.split(".")[0]) >= 5 else "torch_dtype"


def load_dense_weights(model_dir: Path, layer: dict):
    path = model_dir / layer["path"]
    if (path / "model.safetensors").exists():
        from safetensors.torch import load_file

        state = load_file(str(path / "model.safetensors"))
    else:
        import torch

        state = torch.load(str(path / "pytorch_model.bin"), map_location="cpu", weights_only=True)
    weight = state["linear.weight"].float()
    bias = state["linear.bias"].float() if layer["bias"] else None
    return weight, bias


def st_features(st, texts: list[str]):
    """What SentenceTransformer feeds its first module (preprocess() in 6.x, tokenize() before)."""
    method = getattr(st, "preprocess", None) or st.tokenize
    return method(texts)


def st_prompt_length(st, prompt: str) -> int:
    """The prompt_length encode() hands to Pooling: the prompt's ids without a closing special token."""
    if not prompt:
        return 0
    measure = getattr(st[0], "_get_prompt_length", None)
    if measure is not None:
        value = measure(prompt)
        return int(value) if value is not None else 0
    return int(st_features(st, [prompt])["input_ids"].shape[-1]) - 1


def st_encode(st, text: str, prompt: str):
    """One text through SentenceTransformer.encode with an explicit prompt (None when it is empty)."""
    # An empty prompt must stay None: encode() counts even "" as a prompt of one token ([CLS]) and
    # would leave that token out of pooling when include_prompt is false.
    return st.encode(
        [text],
        prompt=prompt or None,
        batch_size=1,
        convert_to_numpy=True,
        normalize_embeddings=False,
        show_progress_bar=False,
    )[0]


def main() -> int:
    args = parse_args()
    model_dir = Path(args.model).resolve()
    if not (model_dir / "config.json").exists():
        log(f"error: {model_dir} has no config.json")
        return 1

    import numpy as np
    import torch
    import transformers
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # Exact fp32: no TF32 in matmuls or convolutions.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.manual_seed(0)

    config = read_json(model_dir / "config.json")
    hidden = int(config["hidden_size"])
    pipeline = describe_pipeline(model_dir)
    output_dimension = pipeline["dense"][-1]["outFeatures"] if pipeline["dense"] else hidden
    st_config = read_json(model_dir / "config_sentence_transformers.json", {}) or {}
    prompts = st_config.get("prompts") or {}
    items, spec = build_items(Path(args.texts), prompts)
    if args.dims:
        wanted = {int(d) for d in args.dims.split(",")}
    else:
        wanted = {int(d) for d in spec.get("dimensions", [])} | {output_dimension // 2}
    dims = sorted(d for d in wanted | {output_dimension} if MIN_DIMENSION <= d <= output_dimension)
    name = args.name or model_dir.name
    log(
        f"st reference {name}: {config.get('model_type')} {pipeline['pooling']} "
        f"(include_prompt {pipeline['includePrompt']}), dense {[d['outFeatures'] for d in pipeline['dense']]}, "
        f"normalize {pipeline['normalize']}; {len(items)} texts, dims {dims}, device {device}"
    )

    # --- sentence-transformers, fp32 -----------------------------------------------------------------
    started = time.time()
    st = SentenceTransformer(
        str(model_dir),
        device=device,
        trust_remote_code=False,
        model_kwargs={"attn_implementation": args.attn, dtype_key(transformers.__version__): torch.float32},
    )
    st.eval()
    # The items name their prompts; a default_prompt_name must not add one to prompt-less documents.
    st.default_prompt_name = None
    max_seq_length = st.max_seq_length
    backbone = type(getattr(st[0], "auto_model", st[0])).__name__
    log(f"SentenceTransformer loaded in {time.time() - started:.1f} s: {backbone}, max_seq_length {max_seq_length}")
    tokenizer = st.tokenizer
    problems: list[str] = []
    st_vectors = []
    for item in items:
        features = st_features(st, [item["input"]])
        item["tokenIds"] = [int(x) for x in features["input_ids"][0].tolist()]
        untruncated = list(tokenizer(item["input"])["input_ids"])
        item["truncated"] = len(untruncated) > len(item["tokenIds"])
        if not item["truncated"] and untruncated != item["tokenIds"]:
            problems.append(f"{item['id']}: tokenizer() and SentenceTransformer.tokenize() give different ids")
        item["promptLength"] = st_prompt_length(st, item["prompt"])
        st_vectors.append(np.asarray(st_encode(st, item["text"], item["prompt"]), np.float64))
    log(f"encoded {len(items)} texts one by one; {sum(i['truncated'] for i in items)} truncated to {max_seq_length}")

    # The same texts batched (padding, length sorting) must give the same vectors.
    batch_min_cosine = 1.0
    by_prompt: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        by_prompt.setdefault(item["prompt"], []).append(index)
    for prompt, indices in by_prompt.items():
        vectors = st.encode(
            [items[i]["text"] for i in indices],
            prompt=prompt or None,
            batch_size=16,
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )
        for i, vector in zip(indices, vectors):
            batch_min_cosine = min(batch_min_cosine, cosine(vector, st_vectors[i]))
    log(f"batched vs one by one: min cosine {batch_min_cosine:.10f}")
    st_module_names = [type(module).__name__ for module in st]
    del st
    if device == "cuda":
        torch.cuda.empty_cache()

    # --- plain transformers: AutoModel + pooling + Dense + Normalize written out here ------------------
    auto_min_cosine = None
    auto_max_relative_error = None
    if not args.skip_automodel:
        from transformers import AutoModel

        started = time.time()
        model = AutoModel.from_pretrained(
            str(model_dir),
            attn_implementation=args.attn,
            trust_remote_code=False,
            **{dtype_key(transformers.__version__): torch.float32},
        )
        model.to(device).eval()
        dense = [load_dense_weights(model_dir, layer) for layer in pipeline["dense"]]
        log(f"AutoModel {type(model).__name__} loaded in {time.time() - started:.1f} s")
        auto_min_cosine = 1.0
        auto_max_relative_error = 0.0
        with torch.inference_mode():
            for item, st_vector in zip(items, st_vectors):
                ids = torch.tensor([item["tokenIds"]], dtype=torch.long, device=device)
                inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
                if config.get("type_vocab_size"):
                    inputs["token_type_ids"] = torch.zeros_like(ids)
                states = model(**inputs).last_hidden_state[0].float().cpu()
                if pipeline["pooling"] == "cls":
                    pooled = states[0]
                elif pipeline["pooling"] == "lasttoken":
                    pooled = states[-1]
                elif pipeline["pooling"] == "mean":
                    skip = 0 if pipeline["includePrompt"] else item["promptLength"]
                    pooled = states[skip:].mean(dim=0)
                else:
                    raise SystemExit(f"the AutoModel check does not implement {pipeline['pooling']} pooling")
                vector = pooled.double()
                for (weight, bias), layer in zip(dense, pipeline["dense"]):
                    vector = vector @ weight.double().T + (bias.double() if bias is not None else 0)
                    if layer["activation"] == "tanh":
                        vector = torch.tanh(vector)
                if pipeline["normalize"]:
                    vector = vector / vector.norm()
                vector = vector.numpy()
                item["autoModelCosine"] = cosine(vector, st_vector)
                auto_min_cosine = min(auto_min_cosine, item["autoModelCosine"])
                auto_max_relative_error = max(auto_max_relative_error, relative_error(vector, st_vector))
        log(f"AutoModel vs sentence-transformers: min cosine {auto_min_cosine:.10f}, "
            f"max relative error {auto_max_relative_error:.2e}")
        del model
        if device == "cuda":
            torch.cuda.empty_cache()

    # --- optional: sentence-transformers in bf16 against the fp32 vectors ------------------------------
    bf16_min_cosine = None
    if args.bf16_baseline:
        started = time.time()
        st16 = SentenceTransformer(
            str(model_dir),
            device=device,
            trust_remote_code=False,
            model_kwargs={"attn_implementation": "sdpa", dtype_key(transformers.__version__): torch.bfloat16},
        )
        st16.default_prompt_name = None
        bf16_min_cosine = {str(d): 1.0 for d in dims}
        for item, st_vector in zip(items, st_vectors):
            vector = np.asarray(st_encode(st16, item["text"], item["prompt"]), np.float64)
            for d in dims:
                c = cosine(vector[:d], st_vector[:d])
                bf16_min_cosine[str(d)] = min(bf16_min_cosine[str(d)], c)
        log(f"sentence-transformers bf16 vs fp32 min cosine per size {bf16_min_cosine} ({time.time() - started:.1f} s)")
        del st16
        if device == "cuda":
            torch.cuda.empty_cache()

    # --- fixture ---------------------------------------------------------------------------------------
    fixture_items = []
    for item, vector in zip(items, st_vectors):
        vectors = matryoshka(vector, dims, pipeline["normalize"])
        fixture_items.append(
            {
                "id": item["id"],
                "kind": item["kind"],
                "instruction": item["instruction"],
                "promptName": item["promptName"],
                "prompt": item["prompt"],
                "promptLength": item["promptLength"],
                "text": item["text"],
                "input": item["input"],
                "tokenIds": item["tokenIds"],
                "truncated": item["truncated"],
                "embeddings": {dim: to_base64_f32(v) for dim, v in vectors.items()},
                **({"autoModelCosine": round(item["autoModelCosine"], 12)} if "autoModelCosine" in item else {}),
            }
        )
    weights = {path.name: sha256_file(path) for path in weight_files(model_dir)}
    for layer in pipeline["dense"]:
        for candidate in ("model.safetensors", "pytorch_model.bin"):
            path = model_dir / layer["path"] / candidate
            if path.exists():
                weights[f"{layer['path']}/{candidate}"] = sha256_file(path)
    agree = (
        not problems
        and batch_min_cosine >= AGREEMENT_MIN_COSINE
        and (auto_min_cosine is None or auto_min_cosine >= AGREEMENT_MIN_COSINE)
        and (auto_max_relative_error is None or auto_max_relative_error <= AGREEMENT_MAX_RELATIVE_ERROR)
    )
    eos_id = tokenizer.eos_token_id
    fixture = {
        "format": 1,
        "description": (
            "sentence-transformers reference embeddings (fp32) for test/fixtures/parity-texts.json; "
            "see scripts/reference/st_reference.py"
        ),
        "name": name,
        "family": config.get("model_type"),
        "generator": {
            "command": "checkpoint generate",
            "args": shlex.split(args.generator_args) if args.generator_args else None,
        },
        "pooling": pipeline["pooling"],
        "includePrompt": pipeline["includePrompt"],
        "normalize": pipeline["normalize"],
        "dense": pipeline["dense"],
        "outputDimension": output_dimension,
        "maxSeqLength": max_seq_length,
        "prompts": prompts,
        "model": {
            "name": model_dir.name,
            "modelType": config.get("model_type"),
            "hiddenSize": hidden,
            "numHiddenLayers": config.get("num_hidden_layers"),
            "weightsSha256": weights,
        },
        "reference": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentenceTransformers": sentence_transformers.__version__,
            "tokenizers": __import__("tokenizers").__version__,
            "device": device if device == "cpu" else torch.cuda.get_device_name(0),
            "dtype": "float32",
            "tf32": False,
            "attnImplementation": args.attn,
            "numpy": np.__version__,
            "modules": st_module_names,
        },
        "eosTokenId": eos_id,
        "dimensions": dims,
        "encoding": (
            "base64 little-endian float32, truncated to each size then L2-normalised"
            if pipeline["normalize"]
            else "base64 little-endian float32, truncated to each size (no Normalize module: not normalised)"
        ),
        "agreement": {
            "autoModelVsSentenceTransformersMinCosine": auto_min_cosine,
            "autoModelVsSentenceTransformersMaxRelativeError": auto_max_relative_error,
            "batchedVsSingleMinCosine": batch_min_cosine,
            "sentenceTransformersBfloat16VsFloat32MinCosine": bf16_min_cosine,
            "threshold": AGREEMENT_MIN_COSINE,
            "maxRelativeError": AGREEMENT_MAX_RELATIVE_ERROR,
            "tokenizerProblems": problems,
            "ok": agree,
        },
        "items": fixture_items,
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    norms_ok = not pipeline["normalize"] or all(
        math.isclose(float(np.linalg.norm(np.frombuffer(base64.b64decode(v), dtype="<f4"))), 1.0, abs_tol=1e-5)
        for item in fixture_items
        for v in item["embeddings"].values()
    )
    print(
        json.dumps(
            {
                "fixture": str(out_path),
                "name": name,
                "family": config.get("model_type"),
                "pooling": pipeline["pooling"],
                "items": len(fixture_items),
                "dims": dims,
                "autoModelMinCosine": auto_min_cosine,
                "autoModelMaxRelativeError": auto_max_relative_error,
                "batchMinCosine": batch_min_cosine,
                "bf16MinCosine": bf16_min_cosine,
                "truncated": sum(1 for i in fixture_items if i["truncated"]),
                "tokenizerProblems": len(problems),
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
