"""``depth``: the depth video that VACE is conditioned on.

Two backends, chosen by ``backend``:

- ``video-depth-anything`` (the paper's, default): Video Depth Anything
  (:mod:`ditto_hf.models.video_depth_anything`), a temporal model run in overlapping 32-frame
  windows with keyframe scale/shift alignment, so depth is consistent through the clip.
- ``depth-anything-v2``: the transformers Depth Anything (V2) model on every frame, in batches;
  each frame's prediction is then fitted by least squares (a scale and a shift) to the previous
  aligned frame (or to the first frame) so brightness does not flicker.

Either way the whole clip is normalised to 0–255 with one range; near is bright, as in VACE's depth
annotator. The result is written as a grey RGB mp4 at the clip's size and frame rate.

The models are small (25–30M parameters for the Small variants), so they run in float32 unless the
model spec names another dtype: the scale/shift alignment is sensitive to precision, and bf16 would
save nothing that matters next to the 14B generators.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelRegistry, ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import Resources, Stage, StageConfig
from ditto_hf.models.video_depth_anything import fit_scale_shift


def align_depths(depths: torch.Tensor, align_to: str = "previous") -> torch.Tensor:
    """Fit every frame of ``(T, H, W)`` relative depths to a reference frame (the previous aligned
    frame, or the first frame) so that scale and shift stay consistent through the clip."""
    aligned = [depths[0]]
    for frame in depths[1:]:
        reference = aligned[-1] if align_to == "previous" else aligned[0]
        scale, shift = fit_scale_shift(frame, reference)
        aligned.append(frame * scale + shift)
    return torch.stack(aligned)


def to_grey_video(depths: torch.Tensor) -> torch.Tensor:
    """Normalise ``(T, H, W)`` depths to 0–255 with the clip's range; uint8 ``(T, H, W, 3)``."""
    low, high = depths.min(), depths.max()
    scaled = (depths - low) / (high - low) if high > low else torch.zeros_like(depths)
    grey = scaled.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    return grey.unsqueeze(-1).expand(*grey.shape, 3).contiguous()


#: What ``dtype: auto`` means for the depth models.
DEPTH_DTYPE = "float32"


class DepthBackend(ABC):
    """Relative depth of a clip: ``predict`` maps uint8 ``(T, C, H, W)`` frames to ``(T, H, W)`` (larger = nearer)."""

    name: ClassVar[str]
    default_model: ClassVar[str]

    @abstractmethod
    def __init__(self, config: DepthStage.Config, registry: ModelRegistry): ...

    @abstractmethod
    def predict(self, frames: torch.Tensor) -> torch.Tensor: ...


class VideoDepthAnythingBackend(DepthBackend):
    """Video Depth Anything over the whole clip (reference windows, keyframes and alignment)."""

    name = "video-depth-anything"
    default_model = "depth-anything/Video-Depth-Anything-Small"

    def __init__(self, config: DepthStage.Config, registry: ModelRegistry):
        from ditto_hf.models.video_depth_anything import VideoDepthAnything

        self.model = registry.load(VideoDepthAnything, config.model)
        self.input_size = config.input_size

    def predict(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.predict_video(frames, input_size=self.input_size)


class DepthAnythingV2Backend(DepthBackend):
    """transformers Depth Anything per frame, then least-squares alignment from frame to frame."""

    name = "depth-anything-v2"
    default_model = "depth-anything/Depth-Anything-V2-Small-hf"

    def __init__(self, config: DepthStage.Config, registry: ModelRegistry):
        from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

        self.processor = registry.load(AutoImageProcessor, config.model)
        self.model = registry.load(DepthAnythingForDepthEstimation, config.model)
        self.frames_per_batch = config.frames_per_batch
        self.align_to = config.align_to

    @torch.inference_mode()
    def predict_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Per-frame relative depth of ``(T, C, H, W)`` uint8 frames, at frame size (not aligned)."""
        height, width = frames.shape[-2:]
        depths = []
        for batch in frames.split(self.frames_per_batch):
            inputs = self.processor(images=list(batch), return_tensors="pt").to(self.model.device)
            outputs = self.model(pixel_values=inputs["pixel_values"].to(self.model.dtype))
            results = self.processor.post_process_depth_estimation(outputs, target_sizes=[(height, width)] * len(batch))
            depths.extend(result["predicted_depth"].float().cpu() for result in results)
        return torch.stack(depths)

    def predict(self, frames: torch.Tensor) -> torch.Tensor:
        return align_depths(self.predict_frames(frames), self.align_to)


BACKENDS: dict[str, type[DepthBackend]] = {backend.name: backend for backend in (VideoDepthAnythingBackend, DepthAnythingV2Backend)}


class DepthStage(Stage):
    """Source clip → ``depth/<id>.mp4`` (a grey depth video, near = bright)."""

    name = "depth"
    resources = Resources(gpus=1, cpus=2, memory_gb=4)  # VDA-Small: 29M parameters, Large: 384M; V2-Small 25M

    @dataclass
    class Config(StageConfig):
        """Settings of the ``depth`` stage."""

        #: ``video-depth-anything`` (the paper's) or ``depth-anything-v2`` (per-frame).
        backend: str = "video-depth-anything"
        #: Weights. Default per backend: ``depth-anything/Video-Depth-Anything-Small`` (**Apache-2.0**;
        #: the official ``.pth`` is converted to safetensors once, on first use) or
        #: ``depth-anything/Depth-Anything-V2-Small-hf``. ``…/Video-Depth-Anything-Base`` and
        #: ``…-Large`` (closer to the paper's quality) are **CC-BY-NC-4.0**: non-commercial use only.
        #: ``dtype: auto`` means float32 here (not bf16 on CUDA).
        model: ModelSpec = field(default_factory=lambda: ModelSpec(""))
        #: video-depth-anything: frames are resized so both sides are at least this (multiples of 14).
        input_size: int = 518
        #: depth-anything-v2: frames per forward pass.
        frames_per_batch: int = 16
        #: depth-anything-v2: reference each frame's depth is fitted to, the ``previous`` aligned frame or the ``first``.
        align_to: Literal["previous", "first"] = "previous"

        def __post_init__(self) -> None:
            if self.backend not in BACKENDS:
                raise DittoError(f"depth: backend {self.backend!r} is unknown; available: {', '.join(BACKENDS)}")
            if self.align_to not in ("previous", "first"):
                raise DittoError(f"depth: align_to must be 'previous' or 'first', got {self.align_to!r}")
            if self.frames_per_batch < 1 or self.input_size < 14:
                raise DittoError(
                    f"depth: frames_per_batch must be at least 1 and input_size at least 14, got {self.frames_per_batch}, {self.input_size}"
                )
            self.model = ModelSpec.coerce(self.model)
            if not self.model.id:
                self.model = self.model.with_overrides(id=BACKENDS[self.backend].default_model)
            if self.model.dtype == "auto":
                self.model = self.model.with_overrides(dtype=DEPTH_DTYPE)

    def setup(self) -> None:
        self.backend = BACKENDS[self.config.backend](self.config, self.context.registry)

    def process_sample(self, sample: Sample) -> None:
        from ditto_hf.video import probe, read_frames, write_video

        if not sample.video:
            raise DittoError(f"sample {sample.sample_id}: depth needs the standardised video (run standardise first)")
        source = self.context.resolve(sample.video)
        frames = read_frames(source, layout="TCHW")
        depth = to_grey_video(self.backend.predict(frames))
        absolute, relative = self.context.path_for("depth", sample, ".mp4")
        write_video(absolute, depth, probe(source).fps)
        sample.depth = relative
