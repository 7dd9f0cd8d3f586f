#!/usr/bin/env python3
"""Checks that transformers and sentence-transformers load generated checkpoints of every family cleanly.

Runs on the GPU host only (torch, transformers 5, sentence-transformers, tokenizers; no network). For
each checkpoint directory given (written by `admin checkpoint generate --preset <family>-tiny ...`):

- AutoConfig names the expected model_type and AutoModel builds the class config.json names, with no
  missing, unexpected or mismatched weights and no warning logged by transformers while loading;
- AutoTokenizer (the class tokenizer_config.json names) gives the same ids as the raw tokenizer.json
  read by `tokenizers` (what the service reads), with the family's special tokens, for every text;
- SentenceTransformer loads the directory (modules.json, Pooling, Dense, Normalize) and encodes the
  texts to finite vectors of the expected size, unit length unless Normalize is absent.

    python3 scripts/reference/check_generated_families.py --texts test/fixtures/parity-texts.json \
        --out $OUT/generated-families.json DIR [DIR ...]

Exit status: 0 when every directory passes, 2 when one fails (each failure named in the JSON), 1 on
usage errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="generated checkpoint directories")
    parser.add_argument("--texts", default="test/fixtures/parity-texts.json", help="texts to tokenize and encode")
    parser.add_argument("--out", required=True, help="JSON report to write")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    return parser.parse_args()


class CollectingHandler(logging.Handler):
    """Keeps every transformers warning logged while a model loads."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check_model(directory: Path, texts: list[str], device: str) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    problems: list[str] = []
    config_json = json.loads((directory / "config.json").read_text())
    config = AutoConfig.from_pretrained(directory)
    if config.model_type != config_json["model_type"]:
        problems.append(f"AutoConfig model_type {config.model_type} != {config_json['model_type']}")

    handler = CollectingHandler()
    hf_logger = hf_logging.get_logger("transformers")
    hf_logger.addHandler(handler)
    try:
        model, info = AutoModel.from_pretrained(directory, dtype=torch.float32, output_loading_info=True)
    finally:
        hf_logger.removeHandler(handler)
    expected_class = config_json["architectures"][0]
    if type(model).__name__ != expected_class:
        problems.append(f"AutoModel built {type(model).__name__}, config.json names {expected_class}")
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if info.get(key):
            problems.append(f"{key}: {sorted(map(str, info[key]))[:8]}")
    problems.extend(f"transformers warned: {message}" for message in handler.messages)

    raw = Tokenizer.from_file(str(directory / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(directory)
    mismatches = 0
    for text in texts:
        if auto(text)["input_ids"] != raw.encode(text, add_special_tokens=True).ids:
            mismatches += 1
    if mismatches:
        problems.append(f"AutoTokenizer ({type(auto).__name__}) and tokenizer.json disagree on {mismatches} texts")
    sample = raw.encode("Hello world", add_special_tokens=True).tokens

    st = SentenceTransformer(str(directory), device=device)
    vectors = st.encode(texts, convert_to_numpy=True, batch_size=8)
    modules = [type(module).__name__ for module in st]
    norms = [math.sqrt(float((row * row).sum())) for row in vectors]
    if not all(math.isfinite(n) and n > 0 for n in norms):
        problems.append("sentence-transformers produced a non-finite or zero vector")
    # The checkpoints are bf16 and sentence-transformers encodes in the checkpoint's dtype here: a
    # normalised bf16 row has a norm within about 0.4% of 1 (the first GPU run saw no more).
    if "Normalize" in modules and any(abs(n - 1) > 1e-2 for n in norms):
        worst = max(abs(n - 1) for n in norms)
        problems.append(f"Normalize is in modules.json but vectors are not unit length (max |norm - 1| {worst:.2e})")
    return {
        "model": str(directory),
        "modelType": config.model_type,
        "autoModel": type(model).__name__,
        "tokenizerClass": type(auto).__name__,
        "sampleTokens": sample,
        "modules": modules,
        "dimension": int(vectors.shape[1]),
        "ok": not problems,
        "problems": problems,
    }


def main() -> int:
    args = parse_args()
    spec = json.loads(Path(args.texts).read_text())
    texts = [item["text"] for item in spec["texts"]]
    results = []
    for model in args.models:
        try:
            results.append(check_model(Path(model), texts, args.device))
        except Exception as error:  # noqa: BLE001 - one broken directory must not hide the others
            results.append({"model": model, "ok": False, "problems": [f"{type(error).__name__}: {error}"]})
        status = "ok" if results[-1]["ok"] else "FAILED " + "; ".join(results[-1]["problems"])
        print(f"{model}: {status}", file=sys.stderr, flush=True)
    Path(args.out).write_text(json.dumps({"results": results}, indent=2) + "\n")
    return 0 if all(result["ok"] for result in results) else 2


if __name__ == "__main__":
    sys.exit(main())
