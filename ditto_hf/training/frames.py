"""Frame-level view of a triplet for training, with DiffSynth-Studio's convention.

DiffSynth-Studio's video loader (``LoadVideo`` + ``ImageCropAndResize``) keeps the first
``num_frames`` frames (fewer: the largest ``4k+1`` that fits), scales each frame as a PIL image
with bilinear filtering so it covers ``width x height`` (``scale = max(W / w, H / h)``, sides
rounded), then centre-crops it (torchvision's ``center_crop``). :func:`diffsynth_crop_resize` runs
those same PIL / torchvision calls, so frames prepared here equal what its loader makes of the
original file.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ditto_hf.video import VideoSource, read_frames

#: DiffSynth's Wan/VACE training defaults: 81 frames at 832x480.
DEFAULT_NUM_FRAMES = 81
DEFAULT_SIZE = (832, 480)


def diffsynth_crop_resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``(T, C, H, W)`` frames scaled to cover ``size=(width, height)`` and centre-cropped to
    it, frame by frame through PIL as DiffSynth's ``ImageCropAndResize`` does."""
    import torchvision.transforms.functional as TF
    from PIL import Image
    from torchvision.transforms import InterpolationMode

    width, height = size
    source_height, source_width = frames.shape[-2:]
    if (source_width, source_height) == (width, height):
        return frames
    scale = max(width / source_width, height / source_height)
    scaled = (round(source_height * scale), round(source_width * scale))
    out = []
    for frame in frames:
        image = Image.fromarray(frame.permute(1, 2, 0).contiguous().numpy())
        image = TF.resize(image, scaled, interpolation=InterpolationMode.BILINEAR)
        image = TF.center_crop(image, (height, width))
        out.append(torch.from_numpy(np.array(image)).permute(2, 0, 1))
    return torch.stack(out)


def diffsynth_frames(source: VideoSource, *, num_frames: int, size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``(T, C, H, W)``: the frames DiffSynth's loader takes from ``source`` (first
    ``num_frames``, or the largest ``4k+1`` that fits), cropped and resized to ``size``."""
    return diffsynth_crop_resize(read_frames(source, num_frames=num_frames, four_k_plus_one=True, layout="TCHW"), size)


def triplet_frames(
    row: dict,
    *,
    num_frames: int = DEFAULT_NUM_FRAMES,
    size: tuple[int, int] = DEFAULT_SIZE,
    four_k_plus_one: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``(source_frames, edited_frames, instruction)``: uint8 ``(T, C, H, W)`` tensors of the first
    ``num_frames`` frames, resized and centre-cropped to ``size=(width, height)`` as DiffSynth does.

    ``row`` is a triplet as the ``ditto_1m`` builder yields it; its videos may be decoded
    (``VideoDecoder``) or raw ``{"bytes", "path"}`` dicts. Both videos keep the same frame count: the
    shorter one decides (cut to ``4k+1`` with ``four_k_plus_one``).
    """
    options = {"num_frames": num_frames, "four_k_plus_one": four_k_plus_one, "layout": "TCHW"}
    source = read_frames(row["source"], **options)
    edited = read_frames(row["edited"], **options)
    count = min(len(source), len(edited))
    if four_k_plus_one:
        count = (count - 1) // 4 * 4 + 1
    return diffsynth_crop_resize(source[:count], size), diffsynth_crop_resize(edited[:count], size), row["instruction"]


def frames_transform(**options) -> Callable[[dict], dict]:
    """A ``dataset.map`` function adding ``source_frames`` / ``edited_frames`` (options as :func:`triplet_frames`)."""

    def add_frames(row: dict) -> dict:
        source, edited, _ = triplet_frames(row, **options)
        return {"source_frames": source, "edited_frames": edited}

    return add_frames


def image_pixels(image, what: str = "image") -> torch.Tensor:
    """uint8 ``(C, H, W)`` RGB pixels of a PIL image, a file path, raw bytes or a ``datasets.Image``
    ``{"bytes", "path"}`` dict; a missing or unreadable image is a :class:`DittoError` naming ``what``."""
    import io
    import os

    from PIL import Image, UnidentifiedImageError

    from ditto_hf.errors import DittoError

    if isinstance(image, dict):
        image = image.get("bytes") or image.get("path")
    if isinstance(image, bytes):
        image = io.BytesIO(image)
    try:
        opened = image if isinstance(image, Image.Image) else Image.open(image)
        pixels = np.array(opened.convert("RGB"))
    except (OSError, UnidentifiedImageError, AttributeError) as exc:
        name = os.fspath(image) if isinstance(image, (str, os.PathLike)) else type(image).__name__
        raise DittoError(f"{what}: cannot read {name} as an image ({exc})") from exc
    return torch.from_numpy(pixels).permute(2, 0, 1)
