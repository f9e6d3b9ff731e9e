"""Stage 1: bring every source clip to the dataset's frame rate, size and length.

Ditto-1M clips are 1280×720 (landscape) or 720×1280 (portrait), 101 frames at 20 fps. The source
is resampled to the target rate (the source frame on screen at each output tick), centre-cropped to
the aspect of its orientation's target size and resized, and its first ``num_frames`` frames are
written as H.264 mp4. Clips too short for ``num_frames`` are rejected; files that cannot be
decoded fail with the decoder's message.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import Resources, Stage, StageConfig
from ditto_hf.video import (
    VideoInfo,
    center_crop_resize,
    probe,
    read_frames,
    resample_indices,
    write_video,
)

RESIZE_CHUNK = 16  # frames resized at a time (bounds the float copy of full-resolution frames)


class StandardiseStage(Stage):
    """Resample, crop/resize by orientation and trim each source clip; write ``video/<id>.mp4``."""

    name = "standardise"
    resources = Resources(cpus=1.0, memory_gb=4.0)

    @dataclass
    class Config(StageConfig):
        """Target format of the standardised clips (defaults: the paper's)."""

        fps: float = 20.0
        """Output frame rate; each output tick takes the source frame on screen at that time."""
        landscape_size: tuple[int, int] = (1280, 720)
        """(width, height) for clips at least as wide as tall."""
        portrait_size: tuple[int, int] = (720, 1280)
        """(width, height) for clips taller than wide."""
        num_frames: int = 101
        """Frames kept from the start of the clip; must be 4k+1 (what Wan / VACE accept)."""
        crf: int = 18
        """H.264 constant rate factor of the written clip (lower = better quality, larger files)."""

        def __post_init__(self) -> None:
            self.landscape_size = tuple(self.landscape_size)
            self.portrait_size = tuple(self.portrait_size)
            if self.num_frames < 1 or (self.num_frames - 1) % 4:
                raise DittoError(f"standardise.num_frames must be 4k+1 (e.g. 17, 33, 81, 101), got {self.num_frames}")
            if self.fps <= 0:
                raise DittoError(f"standardise.fps must be positive, got {self.fps}")
            for name, (width, height) in (("landscape_size", self.landscape_size), ("portrait_size", self.portrait_size)):
                if width <= 0 or height <= 0 or width % 2 or height % 2:
                    raise DittoError(f"standardise.{name} must be positive even (width, height), got {width}x{height}")

    def process_sample(self, sample: Sample) -> None:
        info = probe(sample.input_path)
        sample.extra["source_info"] = {key: getattr(info, key) for key in ("fps", "num_frames", "width", "height", "duration")}
        available = self.frames_at_target_rate(info)
        if available < self.config.num_frames:
            reason = f"too short: {available} frame(s) at {self.config.fps:g} fps ({info.duration:.2f} s), need {self.config.num_frames}"
            sample.reject(self.name, reason, source_frames=float(available), source_duration=info.duration)
            return
        frames = read_frames(
            sample.input_path,
            num_frames=self.config.num_frames,
            fps=self.config.fps,
            min_frames=self.config.num_frames,
            layout="TCHW",
        )
        size = self.target_size(width=frames.shape[-1], height=frames.shape[-2])
        frames = torch.cat([center_crop_resize(chunk, size) for chunk in frames.split(RESIZE_CHUNK)])
        absolute, relative = self.context.path_for("video", sample, ".mp4")
        write_video(absolute, frames, self.config.fps, layout="TCHW", crf=self.config.crf)
        sample.video = relative

    def frames_at_target_rate(self, info: VideoInfo) -> int:
        """How many frames the clip yields after resampling to the target rate."""
        return len(resample_indices(info.num_frames, info.fps, self.config.fps))

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """The output (width, height) for a decoded frame's orientation (decoders apply rotation)."""
        return self.config.portrait_size if height > width else self.config.landscape_size
