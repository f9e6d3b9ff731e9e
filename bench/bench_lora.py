"""Cost of checking and converting a Ditto LoRA for Wan2.1-VACE-14B, against just reading the file.

A file shaped like the released Ditto LoRAs (rank 128 on q, k, v, o, ffn.0, ffn.2 of the self- and
cross-attention of the 8 VACE blocks, bfloat16, DiffSynth keys) is written with random values; the
bench then times reading it and copying its tensors once (the baseline: what any loader does),
building the 14B layout on the meta device, converting and checking, and writing the diffusers
file, and reports the peak RSS.

    python bench/bench_lora.py [--rank 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ditto_hf.lora import TransformerLayout, convert_lora, write_diffusers_lora

TARGETS = {f"{attn}.{p}": (5120, 5120) for attn in ("self_attn", "cross_attn") for p in "qkvo"} | {
    "ffn.0": (13824, 5120),
    "ffn.2": (5120, 13824),
}


def ditto_shaped_lora(rank: int) -> dict[str, torch.Tensor]:
    state = {}
    for block in range(8):
        for name, (out_features, in_features) in TARGETS.items():
            state[f"vace_blocks.{block}.{name}.lora_A.default.weight"] = torch.randn(rank, in_features, dtype=torch.bfloat16) * 0.01
            state[f"vace_blocks.{block}.{name}.lora_B.default.weight"] = torch.randn(out_features, rank, dtype=torch.bfloat16) * 0.01
    return state


def best_of(repeats: int, action) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch) / "ditto_global.safetensors", Path(scratch) / "ditto_global_diffusers.safetensors"
        save_file(ditto_shaped_lora(args.rank), str(source))
        read_s, state = best_of(args.repeats, lambda: {key: tensor.clone() for key, tensor in load_file(source).items()})
        layout_s, layout = best_of(args.repeats, TransformerLayout.for_model)
        convert_s, lora = best_of(args.repeats, lambda: convert_lora(state, layout, source=source.name))
        write_s, _ = best_of(args.repeats, lambda: write_diffusers_lora(lora, target))
        size_mb = source.stat().st_size / 1e6
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"LoRA file: {size_mb:.0f} MB, {len(state)} tensors, rank {args.rank}; {lora.describe()}")
    print(f"{'step':<40}{'seconds':>10}{'x read':>10}")
    for step, seconds in [
        ("read the file, copy it once (baseline)", read_s),
        ("14B layout on the meta device", layout_s),
        ("convert + check", convert_s),
        ("write the diffusers file", write_s),
    ]:
        print(f"{step:<40}{seconds:>10.3f}{seconds / read_s:>10.2f}")
    print(f"peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
