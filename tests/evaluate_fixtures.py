"""Shared material for the evaluation tests: tiny CLIP / Qwen2.5-VL checkpoints and a small benchmark on disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ditto_hf.video import write_video

#: A copy of the judge prompt whose reason is capped at 24 characters, so the tiny model answers fast.
SHORT_REASON = 24


@dataclass
class Bench:
    """A folder of edits, a folder of their sources and the instruction file."""

    edits: Path
    sources: Path
    instructions: Path
    names: list[str]


def moving_bar(frames: int, size: tuple[int, int] = (64, 32), tint: int = 40, channel: int = 0) -> torch.Tensor:
    """``THWC`` uint8 frames: a bright bar moving right over a tinted background."""
    width, height = size
    video = torch.full((frames, height, width, 3), tint, dtype=torch.uint8)
    for t in range(frames):
        video[t, :, 6 * t : 6 * t + 8, channel] = 250
    return video


def write_bench(root: Path, frames: int = 9) -> Bench:
    """Four edits with sources and instructions: three moving clips and a still one (every frame the same)."""
    edits, sources = root / "edits", root / "sources"
    names = ["bar0.mp4", "bar1.mp4", "bar2.mp4", "still.mp4"]
    for index, name in enumerate(names[:3]):
        write_video(sources / name, moving_bar(frames, tint=30 * index, channel=index), fps=8)
        write_video(edits / name, moving_bar(frames, tint=30 * index + 100, channel=(index + 1) % 3), fps=8)
    write_video(sources / "still.mp4", torch.full((frames, 32, 64, 3), 90, dtype=torch.uint8), fps=8)
    write_video(edits / "still.mp4", torch.full((frames, 32, 64, 3), 200, dtype=torch.uint8), fps=8)
    rows = [
        {"video": "bar0.mp4", "instruction": "Turn the bar into a red ribbon.", "category": "local_replace"},
        {"video": "bar1.mp4", "instruction": "Make it look like a watercolour painting.", "category": "global_style"},
        {"video": "bar2.mp4", "instruction": "Make it snow.", "category": "global_freeform"},
        {"video": "still.mp4", "instruction": "Make it look like a watercolour painting.", "category": "global_style"},
    ]
    instructions = root / "instructions.jsonl"
    instructions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return Bench(edits, sources, instructions, names)


def write_short_judge_prompt(folder: Path) -> Path:
    """The packaged judge prompt with its reason capped at :data:`SHORT_REASON` characters (a custom prompt file)."""
    from importlib import resources

    packaged = resources.files("ditto_hf.evaluate") / "prompts"
    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "judge_short.txt"
    text.write_text((packaged / "judge_v1.txt").read_text())
    schema = json.loads((packaged / "judge_v1.json").read_text())
    schema["properties"]["reason"]["maxLength"] = SHORT_REASON
    text.with_suffix(".json").write_text(json.dumps(schema))
    return text
