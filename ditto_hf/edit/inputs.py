"""The input video as the official inference takes it: the first 4k+1 frames, centre-cropped and resized."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ditto_hf.errors import DittoError
from ditto_hf.video import center_crop_resize, center_crop_size, describe, prefix_length, probe, read_frames


@dataclass(frozen=True)
class PreparedVideo:
    """Frames ready for the VACE context, and what was done to get them."""

    #: ``uint8`` frames ``(T, H, W, C)`` at the output size.
    frames: torch.Tensor
    #: One line: the input, what was kept, the crop and the size.
    note: str


def prepare_video(video, num_frames: int, size: tuple[int, int]) -> PreparedVideo:
    """Take the first ``num_frames`` frames of ``video`` (fewer: the largest 4k+1 prefix), centre-crop
    them to the aspect of ``size=(width, height)`` and resize.

    ``video``: a path, ``uint8`` frames ``(T, H, W, C)`` (tensor or array), or a list of PIL images.
    The frame rate is not changed (the official inference reads frames as they are).
    """
    if isinstance(video, (str, os.PathLike)):
        info = probe(video)
        source = f"{describe(video)}: {info.width}x{info.height}, {info.num_frames} frames at {info.fps:g} fps"
        frames = read_frames(video, num_frames=num_frames, four_k_plus_one=True, layout="TCHW")
    else:
        frames = _frames_tensor(video)
        source = f"input: {frames.shape[2]}x{frames.shape[1]}, {frames.shape[0]} frames"
        frames = frames[: prefix_length(frames.shape[0], num_frames, four_k_plus_one=True)].permute(0, 3, 1, 2)
    count, _, height, width = frames.shape
    crop = center_crop_size((width, height), size)
    resized = center_crop_resize(frames, size).permute(0, 2, 3, 1).contiguous()
    steps = [f"first {count} frames"]
    if crop != (width, height):
        steps.append(f"centre-cropped to {crop[0]}x{crop[1]}")
    if crop != size:
        steps.append(f"resized to {size[0]}x{size[1]}")
    return PreparedVideo(resized, f"{source} -> {', '.join(steps)}")


def input_size(video) -> tuple[int, int]:
    """``(width, height)`` of the input's frames."""
    if isinstance(video, (str, os.PathLike)):
        info = probe(video)
        return info.width, info.height
    frames = _frames_tensor(video)
    return frames.shape[2], frames.shape[1]


def _frames_tensor(video) -> torch.Tensor:
    import numpy as np

    if isinstance(video, (list, tuple)):
        video = np.stack([np.asarray(image.convert("RGB")) for image in video]) if video else np.zeros((0, 1, 1, 3), np.uint8)
    frames = torch.as_tensor(np.asarray(video) if not isinstance(video, torch.Tensor) else video)
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise DittoError(f"the input video must be uint8 RGB frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    if frames.shape[0] == 0:
        raise DittoError("the input video has no frames")
    return frames
