"""How many tokens/s the 4B shape's matrix products alone allow on this GPU: a ceiling for a forward.

One layer's four GEMMs of Qwen3-4B (fused q/k/v, o_proj, fused gate/up, down_proj) in bf16 through
torch.matmul (cuBLAS) at T tokens, timed back to back with CUDA events, times 36 layers. Attention,
norms, RoPE, activations and everything outside the forward come on top, so no bf16 forward of this
shape can serve more tokens/s than this on the same card (docs/benchmarks.md, Reranking).

    python3 scripts/reference/gemm_ceiling.py        # GPU host; one JSON line
"""

import json

import torch

HIDDEN, Q_WIDTH, KV_WIDTH, INTERMEDIATE, LAYERS = 2560, 4096, 1024, 9728, 36
SHAPES = [(HIDDEN, Q_WIDTH + 2 * KV_WIDTH), (Q_WIDTH, HIDDEN), (HIDDEN, 2 * INTERMEDIATE), (INTERMEDIATE, HIDDEN)]
REPEATS = 20


def main() -> None:
    device = torch.device("cuda")
    out = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "runs": []}
    for tokens in (8192, 16384, 32768):
        pairs = [
            (
                torch.randn(tokens, k, device=device, dtype=torch.bfloat16),
                torch.randn(k, n, device=device, dtype=torch.bfloat16),
            )
            for k, n in SHAPES
        ]
        flops = sum(2 * tokens * k * n for k, n in SHAPES)
        for _ in range(5):
            for a, b in pairs:
                a @ b
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(REPEATS):
            for a, b in pairs:
                a @ b
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1000 / REPEATS
        out["runs"].append(
            {
                "tokens": tokens,
                "layerGemmMs": seconds * 1000,
                "tflops": flops / seconds / 1e12,
                "ceilingTokensPerSecond": tokens / (seconds * LAYERS),
            }
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
