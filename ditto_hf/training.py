"""Frame-level view of a triplet for training, with the DiffSynth convention.

DiffSynth-Studio's VACE training reads the first ``num_frames`` frames of the edited video (``video``)
and of the source (``vace_video``) and centre-crops/resizes both to ``width x height``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ditto_hf.video import read_frames

#: DiffSynth's Wan/VACE training defaults: 81 frames at 832x480.
DEFAULT_NUM_FRAMES = 81
DEFAULT_SIZE = (832, 480)


def triplet_frames(
    row: dict,
    *,
    num_frames: int = DEFAULT_NUM_FRAMES,
    size: tuple[int, int] = DEFAULT_SIZE,
    four_k_plus_one: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``(source_frames, edited_frames, instruction)``: uint8 ``(T, C, H, W)`` tensors of the first
    ``num_frames`` frames, centre-cropped and resized to ``size=(width, height)``.

    ``row`` is a triplet as the ``ditto_1m`` builder yields it; its videos may be decoded
    (``VideoDecoder``) or raw ``{"bytes", "path"}`` dicts. Both videos keep the same frame count: the
    shorter one decides.
    """
    options = {"num_frames": num_frames, "size": size, "four_k_plus_one": four_k_plus_one, "layout": "TCHW"}
    source = read_frames(row["source"], **options)
    edited = read_frames(row["edited"], **options)
    count = min(len(source), len(edited))
    if four_k_plus_one:
        count = (count - 1) // 4 * 4 + 1
    return source[:count], edited[:count], row["instruction"]


def frames_transform(**options) -> Callable[[dict], dict]:
    """A ``dataset.map`` function adding ``source_frames`` / ``edited_frames`` (options as :func:`triplet_frames`)."""

    def add_frames(row: dict) -> dict:
        source, edited, _ = triplet_frames(row, **options)
        return {"source_frames": source, "edited_frames": edited}

    return add_frames
