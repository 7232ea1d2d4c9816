"""A cost table for ``specs replay`` ESTIMATED from public hardware figures (not measured).

Until ``benchmarks/gpu_step_costs.py`` runs on a GPU, this writes the same table
(``specs-step-costs/1``, ``"source": "roofline estimate ..."``) from a roofline model of the
paper's setup (Qwen2.5-1.5B draft, Qwen2.5-7B target, a 7B PRM, bf16) on a GPU's public
figures (default: NVIDIA H100 SXM, 3.35 TB/s HBM3 and 989 TFLOP/s dense bf16, from NVIDIA's
datasheet), with stated efficiencies:

- a decode iteration (``n`` sequences, one token each) reads every weight once and each
  sequence's KV cache: ``max(bytes / (bandwidth x bw_eff), 2 x params x n / (flops x mfu))`` plus
  ``overhead_ms`` of framework time per iteration (kernel launches and Python in an eager
  transformers loop: the figure that dominates small models, and the least certain one);
- a prefill of ``T`` tokens: ``2 x params x T / (flops x mfu)`` plus attention over the prefix,
  at least one read of the weights;
- ``draft_generate`` / ``target_generate``: ``L`` decode iterations after a prefill of the
  previous step (``L`` tokens; the prompt's KV is cached); ``target_verify``: a prefill of
  ``n x L`` tokens after ``P``; ``prm_score``: a prefill of ``n x (P + L)`` tokens.

    python benchmarks/roofline_costs.py --out benchmarks/results/replay/h100-roofline.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# parameters, layers, hidden size, KV heads, head dimension (Qwen2.5 configurations)
MODELS = {
    "draft": {"params": 1.54e9, "layers": 28, "hidden": 1536, "kv_heads": 2, "head_dim": 128},
    "target": {"params": 7.62e9, "layers": 28, "hidden": 3584, "kv_heads": 4, "head_dim": 128},
    "prm": {"params": 7.07e9, "layers": 28, "hidden": 3584, "kv_heads": 4, "head_dim": 128},
}


def kv_bytes_per_token(m: dict[str, Any]) -> float:
    return 2 * m["layers"] * m["kv_heads"] * m["head_dim"] * 2  # K and V, bf16


def prefill_s(m: dict[str, Any], tokens: float, context: float, hw: dict[str, float]) -> float:
    flops = 2 * m["params"] * tokens + 4 * m["layers"] * m["hidden"] * tokens * context
    compute = flops / (hw["flops"] * hw["mfu"])
    weights = 2 * m["params"] / (hw["bandwidth"] * hw["bw_eff"])
    return max(compute, weights) + hw["overhead_s"]


def decode_s(m: dict[str, Any], n: int, context: float, hw: dict[str, float]) -> float:
    read = 2 * m["params"] + n * context * kv_bytes_per_token(m)
    memory = read / (hw["bandwidth"] * hw["bw_eff"])
    compute = 2 * m["params"] * n / (hw["flops"] * hw["mfu"])
    return max(memory, compute) + hw["overhead_s"]


def generate_s(m: dict[str, Any], n: int, length: int, prefix: int, hw: dict[str, float]) -> float:
    total = prefill_s(m, min(prefix, length), prefix, hw)
    for i in range(length):
        total += decode_s(m, n, prefix + i, hw)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--gpu", default="NVIDIA H100 SXM (public datasheet figures)")
    parser.add_argument("--bandwidth-tbs", type=float, default=3.35)
    parser.add_argument("--tflops", type=float, default=989.0, help="dense bf16")
    parser.add_argument("--bw-eff", type=float, default=0.7, help="achieved share of bandwidth")
    parser.add_argument("--mfu", type=float, default=0.4, help="achieved share of peak FLOP/s")
    parser.add_argument("--overhead-ms", type=float, default=8.0, help="per forward pass")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    hw = {
        "bandwidth": args.bandwidth_tbs * 1e12,
        "flops": args.tflops * 1e12,
        "bw_eff": args.bw_eff,
        "mfu": args.mfu,
        "overhead_s": args.overhead_ms / 1000,
    }
    entries = []
    for n in (4, 8):
        for length in (64, 256):
            for prefix in (256, 1024):
                rows = {
                    "draft_generate": generate_s(MODELS["draft"], n, length, prefix, hw),
                    "target_generate": generate_s(MODELS["target"], n, length, prefix, hw),
                    "target_verify": prefill_s(MODELS["target"], n * length, prefix, hw),
                    "prm_score": prefill_s(MODELS["prm"], n * (prefix + length), prefix, hw),
                }
                entries += [
                    {"op": op, "n": n, "L": length, "P": prefix, "seconds": round(s, 6)}
                    for op, s in rows.items()
                ]
    table = {
        "format": "specs-step-costs/1",
        "source": "roofline estimate from public hardware figures, NOT measured",
        "device": args.gpu,
        "dtype": "bfloat16",
        "assumptions": {
            "bandwidth_TB_s": args.bandwidth_tbs,
            "dense_bf16_TFLOP_s": args.tflops,
            "bandwidth_efficiency": args.bw_eff,
            "mfu": args.mfu,
            "overhead_ms_per_forward": args.overhead_ms,
        },
        "models": {
            "draft": "Qwen2.5-1.5B-Instruct shape",
            "target": "Qwen2.5-7B-Instruct shape",
            "prm": "7B, 2-class token head (Qwen2.5-Math-PRM-7B shape)",
        },
        "grid": {"n": [4, 8], "L": [64, 256], "P": [256, 1024]},
        "entries": entries,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=2) + "\n")
    for e in entries:
        print(f"{e['op']:>16} n={e['n']} L={e['L']:>4} P={e['P']:>5}: {e['seconds']:.4f} s")
    print(f"estimated cost table: {args.out}")


if __name__ == "__main__":
    main()
