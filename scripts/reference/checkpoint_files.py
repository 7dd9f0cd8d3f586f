"""What the reference scripts record of a checkpoint: its weight files and their sha256 (the fixtures'
weightsSha256, which the TypeScript side compares with a regenerated checkpoint's)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(16 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_files(model_dir: Path) -> list[Path]:
    """The weight files transformers loads: the index's shards, else the single file (safetensors first)."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = model_dir / index_name
        if index.exists():
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [model_dir / name for name in names]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).exists():
            return [model_dir / name]
    return []
