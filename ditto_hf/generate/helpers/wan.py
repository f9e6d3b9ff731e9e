"""What the two Wan stages (``generate`` and ``refine``) share: clip I/O, sizes, seeds, the VAE."""

from __future__ import annotations

import zlib
from pathlib import Path

import torch

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelRegistry, ModelSpec

#: Wan's published negative prompt (English form used in the diffusers examples).
WAN_NEGATIVE_PROMPT = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
    "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly "
    "drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy "
    "background, three legs, many people in the background, walking backwards"
)
#: Wan latents are 8x smaller than pixels and the transformers patch 2x2: sizes are multiples of 16.
SIZE_MULTIPLE = 16


def check_size(stage: str, width: int, height: int) -> None:
    """Raise a :class:`DittoError` unless ``width`` x ``height`` suits the Wan VAE and transformer."""
    if width <= 0 or height <= 0 or width % SIZE_MULTIPLE or height % SIZE_MULTIPLE:
        raise DittoError(f"{stage}: width and height must be positive multiples of {SIZE_MULTIPLE}, got {width}x{height}")


def check_frame_count(stage: str, num_frames: int) -> None:
    """Raise a :class:`DittoError` unless ``num_frames`` is ``4k+1`` (the Wan VAE's temporal stride)."""
    if num_frames < 1 or num_frames % 4 != 1:
        raise DittoError(f"{stage}: num_frames must be 4k+1 (e.g. 81, 101), got {num_frames}")


def oriented_size(width: int, height: int, source: str | Path, match_orientation: bool) -> tuple[int, int]:
    """``(width, height)``, swapped when ``match_orientation`` and the source clip's orientation differs."""
    if not match_orientation:
        return width, height
    from ditto_hf.video import probe

    portrait_source = probe(source).is_portrait
    return (min(width, height), max(width, height)) if portrait_source else (max(width, height), min(width, height))


def read_clip(source: str | Path, size: tuple[int, int] | None, num_frames: int | None = None) -> tuple[list, float]:
    """The first ``4k+1`` frames (at most ``num_frames``) of ``source`` at ``size`` (``None``: as
    stored), as PIL images, and the clip's frame rate."""
    from PIL import Image

    from ditto_hf.video import probe, read_frames

    frames = read_frames(source, num_frames=num_frames, four_k_plus_one=True, size=size, layout="THWC")
    return [Image.fromarray(frame.numpy()) for frame in frames], probe(source).fps


def read_image(path: str | Path, size: tuple[int, int], what: str):
    """An RGB image centre-cropped and resized to ``size`` like the clip frames (so it keeps their
    framing), or a :class:`DittoError` naming the missing ``what``."""
    import numpy as np
    from PIL import Image

    from ditto_hf.video import center_crop_resize

    path = Path(path)
    if not path.is_file():
        raise DittoError(f"{what} {path} does not exist: run the stage that produces it first")
    with Image.open(path) as image:
        pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    resized = center_crop_resize(pixels[None], size)[0]
    return Image.fromarray(resized.permute(1, 2, 0).numpy())


def to_uint8_frames(frames) -> torch.Tensor:
    """Pipeline output (``output_type="np"``: floats in [0, 1], ``(T, H, W, C)``) as uint8."""
    return torch.from_numpy(frames).mul(255).round_().clamp_(0, 255).to(torch.uint8)


def sample_generator(run_seed: int, stage_seed: int, sample_id: str) -> torch.Generator:
    """A CPU generator seeded from the run, the stage and the sample: reruns give the same video,
    samples get different noise."""
    seed = zlib.crc32(f"{run_seed}:{stage_seed}:{sample_id}".encode())
    return torch.Generator(device="cpu").manual_seed(seed)


def load_vae(registry: ModelRegistry, spec: ModelSpec, dtype: str):
    """The repo's ``vae`` subfolder in its own dtype, never quantised (the Wan VAE is kept in float32 by default)."""
    from diffusers import AutoencoderKLWan

    return registry.load(AutoencoderKLWan, spec.without_quantization(subfolder="vae", dtype=dtype))


def set_flow_shift(pipeline, flow_shift: float | None) -> None:
    """Rebuild the pipeline's scheduler with ``flow_shift`` (``None`` keeps the repo's).

    UniPC (what the Wan repos ship) calls it ``flow_shift``, flow-matching Euler ``shift``.
    """
    if flow_shift is None:
        return
    config = pipeline.scheduler.config
    key = "flow_shift" if "flow_shift" in config else "shift"
    pipeline.scheduler = type(pipeline.scheduler).from_config(config, **{key: flow_shift})
