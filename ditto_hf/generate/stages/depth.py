"""``depth``: the depth video that VACE is conditioned on.

The paper uses Video Depth Anything, which no installable library provides. This stage runs the
transformers Depth Anything (V2) model on every frame, in batches, and then makes the per-frame
relative depths temporally consistent: each frame's prediction is fitted by least squares (a
scale and a shift) to the previous aligned frame (or to the first frame), and the whole clip is
normalised to 0–255 with one range, so brightness does not flicker from frame to frame. Near is
bright, as in VACE's depth annotator. The result is written as a grey RGB mp4 at the clip's size
and frame rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import Resources, Stage, StageConfig


def fit_scale_shift(prediction: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """Least-squares ``(scale, shift)`` with ``scale * prediction + shift ≈ reference``.

    A flat prediction (no variance) gets scale 1 and only the shift.
    """
    x, y = prediction.double().flatten(), reference.double().flatten()
    x_mean, y_mean = x.mean(), y.mean()
    variance = (x - x_mean).square().mean()
    if variance <= 1e-12:
        return 1.0, float(y_mean - x_mean)
    scale = ((x - x_mean) * (y - y_mean)).mean() / variance
    return float(scale), float(y_mean - scale * x_mean)


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


class DepthStage(Stage):
    """Source clip → ``depth/<id>.mp4`` (per-frame Depth Anything with temporal alignment)."""

    name = "depth"
    resources = Resources(gpus=1, cpus=2, memory_gb=4)  # V2-Small: 25M parameters; V2-Large: 335M

    @dataclass
    class Config(StageConfig):
        """Settings of the ``depth`` stage (a stand-in for the paper's Video Depth Anything)."""

        #: A transformers Depth Anything checkpoint with its image processor (relative depth).
        #: ``depth-anything/Depth-Anything-V2-Large-hf`` is closer to the paper's ViT-L video model.
        model: ModelSpec = field(default_factory=lambda: ModelSpec("depth-anything/Depth-Anything-V2-Small-hf"))
        #: Frames per forward pass.
        frames_per_batch: int = 16
        #: Reference each frame's depth is fitted to: the ``previous`` aligned frame or the ``first``.
        align_to: Literal["previous", "first"] = "previous"

        def __post_init__(self) -> None:
            if self.align_to not in ("previous", "first"):
                raise DittoError(f"depth: align_to must be 'previous' or 'first', got {self.align_to!r}")
            if self.frames_per_batch < 1:
                raise DittoError(f"depth: frames_per_batch must be at least 1, got {self.frames_per_batch}")

    def setup(self) -> None:
        from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

        self.processor = self.context.registry.load(AutoImageProcessor, self.config.model)
        self.model = self.context.registry.load(DepthAnythingForDepthEstimation, self.config.model)

    @torch.inference_mode()
    def predict(self, frames: torch.Tensor) -> torch.Tensor:
        """Relative depth (larger = nearer) of ``(T, C, H, W)`` uint8 frames, at frame size."""
        height, width = frames.shape[-2:]
        device = self.model.device
        depths = []
        for batch in frames.split(self.config.frames_per_batch):
            inputs = self.processor(images=list(batch), return_tensors="pt").to(device)
            outputs = self.model(pixel_values=inputs["pixel_values"].to(self.model.dtype))
            results = self.processor.post_process_depth_estimation(outputs, target_sizes=[(height, width)] * len(batch))
            depths.extend(result["predicted_depth"].float().cpu() for result in results)
        return torch.stack(depths)

    def process_sample(self, sample: Sample) -> None:
        from ditto_hf.video import probe, read_frames, write_video

        if not sample.video:
            raise DittoError(f"sample {sample.sample_id}: depth needs the standardised video (run standardise first)")
        source = self.context.resolve(sample.video)
        frames = read_frames(source, layout="TCHW")
        depth = to_grey_video(align_depths(self.predict(frames), self.config.align_to))
        absolute, relative = self.context.path_for("depth", sample, ".mp4")
        write_video(absolute, depth, probe(source).fps)
        sample.depth = relative
