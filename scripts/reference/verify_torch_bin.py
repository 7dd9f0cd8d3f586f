#!/usr/bin/env python3
"""Proves the generator's pytorch_model.bin is what PyTorch itself reads.

Runs on the GPU host (torch, safetensors; no network). For each pair of checkpoint directories
generated from the same preset and seed, one with --format safetensors and one with --format bin,
loads every .bin shard with torch.load(weights_only=True) (PyTorch's restricted unpickler), once
read into memory and once memory-mapped (mmap=True needs the storages where the zip says), and
checks that every tensor equals the safetensors copy: same names, dtype, shape and bits.

It also writes, with torch.save, small files the project's readers are tested against (--fixtures):
an OrderedDict state_dict of an nn.Module in bf16/f16/f32, a plain dict (also in pickle protocol 4),
a sharing-storage dict, and the legacy (pre-1.6, non-zip) format.

    python3 scripts/reference/verify_torch_bin.py --pair SAFETENSORS_DIR BIN_DIR [--pair ...] \
        [--fixtures OUT_DIR] [--json RESULT.json]

Exit status: 0 when every pair matches, 2 when some tensor differs or fails to load, 1 on usage errors.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_safetensors_dir(directory: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors file in {directory}")
    tensors = {}
    for path in files:
        tensors.update(load_file(str(path)))
    return tensors


def bin_files(directory: Path) -> list[Path]:
    index = directory / "pytorch_model.bin.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [directory / name for name in sorted(set(weight_map.values()))]
    single = directory / "pytorch_model.bin"
    if not single.is_file():
        raise FileNotFoundError(f"no pytorch_model.bin (or its index) in {directory}")
    return [single]


def load_bin_dir(directory: Path, mmap: bool) -> dict:
    import torch

    tensors = {}
    for path in bin_files(directory):
        loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
        if not isinstance(loaded, dict):
            raise TypeError(f"{path}: top level is {type(loaded).__name__}, not a dict")
        for name, value in loaded.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{path}: {name} is {type(value).__name__}, not a tensor")
            if name in tensors:
                raise ValueError(f"{path}: {name} is also in another shard")
            tensors[name] = value
    return tensors


def compare(expected: dict, actual: dict) -> list[str]:
    import torch

    problems = []
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    if missing:
        problems.append(f"missing from .bin: {missing[:5]}")
    if extra:
        problems.append(f"only in .bin: {extra[:5]}")
    for name in sorted(set(expected) & set(actual)):
        a, b = expected[name], actual[name]
        if a.dtype != b.dtype or a.shape != b.shape:
            problems.append(f"{name}: {b.dtype} {list(b.shape)} vs safetensors {a.dtype} {list(a.shape)}")
        elif not b.is_contiguous():
            problems.append(f"{name}: not contiguous (stride {b.stride()})")
        elif not torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)):
            problems.append(f"{name}: values differ")
    return problems


def check_pair(safetensors_dir: Path, bin_dir: Path) -> dict:
    result = {"safetensors": str(safetensors_dir), "bin": str(bin_dir), "problems": []}
    try:
        expected = load_safetensors_dir(safetensors_dir)
        result["tensors"] = len(expected)
        result["files"] = [path.name for path in bin_files(bin_dir)]
        for mmap in (False, True):
            problems = compare(expected, load_bin_dir(bin_dir, mmap))
            result["problems"] += [f"{'mmap' if mmap else 'read'}: {p}" for p in problems]
    except Exception as error:  # noqa: BLE001 - any failure to load is the finding
        result["problems"].append(f"{type(error).__name__}: {error}")
    result["ok"] = not result["problems"]
    return result


def write_fixtures(out: Path) -> list[str]:
    """Small torch.save files for the readers' tests (deterministic values, not random).

    torch-fixtures.json holds the values each file was saved from; the zip files are also read back
    with torch.load(weights_only=True) where this torch can (its restricted unpickler reads protocol
    4 from PyTorch 2.0 on).
    """
    import torch

    out.mkdir(parents=True, exist_ok=True)
    saved = {}
    for dtype, tag in ((torch.float32, "f32"), (torch.float16, "f16"), (torch.bfloat16, "bf16")):
        module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3)).to(dtype)
        with torch.no_grad():
            for index, parameter in enumerate(module.parameters()):
                values = torch.arange(parameter.numel(), dtype=torch.float32) / 8 - index
                parameter.copy_(values.reshape(parameter.shape).to(dtype))
        saved[f"torch-state-dict-{tag}.bin"] = (module.state_dict(), {})  # OrderedDict with _metadata
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    plain = {"a.weight": base.clone(), "b.bias": torch.tensor([0.5, -1.25], dtype=torch.bfloat16)}
    saved["torch-plain-dict.bin"] = (plain, {})
    # Two tensors over one storage (tied weights): the second starts 4 elements in.
    shared = torch.arange(8, dtype=torch.float16)
    saved["torch-shared-storage.bin"] = (collections.OrderedDict([("x", shared[:4]), ("y", shared[4:])]), {})
    # Protocol 4 (FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL), as pickle_protocol=4 writes it.
    saved["torch-protocol4.bin"] = (plain, {"pickle_protocol": 4})
    for name, (state_dict, options) in saved.items():
        torch.save(state_dict, out / name, **options)
        try:
            loaded = torch.load(out / name, weights_only=True)
        except Exception as error:  # noqa: BLE001 - an older torch's restricted unpickler
            log(f"{name}: torch {torch.__version__} cannot read it with weights_only=True ({error})")
            continue
        if list(loaded) != list(state_dict) or not all(torch.equal(loaded[k], state_dict[k]) for k in loaded):
            raise AssertionError(f"{name}: torch.load returned other tensors than were saved")
    torch.save(plain, out / "torch-legacy.bin", _use_new_zipfile_serialization=False)
    expected = {
        name: {k: v.float().flatten().tolist() for k, v in state_dict.items()}
        for name, (state_dict, _) in saved.items()
    }
    (out / "torch-fixtures.json").write_text(json.dumps(expected, indent=1) + "\n")
    return [*saved, "torch-legacy.bin", "torch-fixtures.json"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", nargs=2, action="append", default=[], metavar=("SAFETENSORS_DIR", "BIN_DIR"))
    parser.add_argument("--fixtures", help="directory to write small torch.save fixtures into")
    parser.add_argument("--json", help="write the result as JSON here")
    args = parser.parse_args()
    if not args.pair and not args.fixtures:
        parser.error("nothing to do: give --pair and/or --fixtures")

    import torch

    log(f"torch {torch.__version__}")
    results = [check_pair(Path(a), Path(b)) for a, b in args.pair]
    for result in results:
        status = "ok" if result["ok"] else "FAILED"
        log(f"{result['bin']}: {status}, {result.get('tensors', 0)} tensors in {result.get('files', [])}")
        for problem in result["problems"][:20]:
            log(f"  {problem}")
    summary = {"torch": torch.__version__, "pairs": results}
    if args.fixtures:
        summary["fixtures"] = write_fixtures(Path(args.fixtures))
        log(f"fixtures: {', '.join(summary['fixtures'])} in {args.fixtures}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0 if all(result["ok"] for result in results) else 2


if __name__ == "__main__":
    sys.exit(main())
