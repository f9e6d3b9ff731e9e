"""Small real stages for exercising the engines without the model chain.

They follow the stage contract exactly and do real video work with :mod:`ditto_hf.video`: ``clip``
standardises a source (size, fps, frame count), ``brightness`` filters dark clips, ``mirror`` makes
the "edit" (a horizontal flip, optionally after a box blur to add compute, optionally with an edited
keyframe). ``mirror`` can be told
to fail for one sample while a given file exists, which is how tests exercise failure recording and
``--retry-failed``. Each stage can append ``<stage> <sample_id>`` to a call log so tests can count
how often a stage ran on a sample.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import Resources, Stage, StageConfig
from ditto_hf.video import probe, read_frames, write_video


@dataclass
class LoggedConfig(StageConfig):
    """``call_log``: file to which each processed sample appends one line (empty: no log)."""

    call_log: str = ""


class LoggedStage(Stage):
    """Appends one line per processed sample to ``config.call_log``."""

    def log_call(self, sample: Sample) -> None:
        if self.config.call_log:
            with open(self.config.call_log, "a") as log:
                log.write(f"{self.name} {sample.sample_id}\n")


class ClipStage(LoggedStage):
    """Decode the input, resample to ``fps``, keep ``num_frames``, centre-crop to ``width`` x ``height``."""

    @dataclass
    class Config(LoggedConfig):
        width: int = 64
        height: int = 64
        fps: float = 12.0
        num_frames: int = 9

    name = "clip"
    resources = Resources(cpus=1, memory_gb=0.5)

    def process_sample(self, sample: Sample) -> None:
        self.log_call(sample)
        config = self.config
        frames = read_frames(
            self.context.resolve(sample.input_path), num_frames=config.num_frames, fps=config.fps, size=(config.width, config.height)
        )
        absolute, relative = self.context.path_for("video", sample, ".mp4")
        write_video(absolute, frames, config.fps)
        sample.video = relative
        sample.caption = f"{Path(sample.input_path).stem} clip, {len(frames)} frames"


class BrightnessStage(LoggedStage):
    """Reject clips whose mean brightness (0-255) is below ``min_brightness``."""

    @dataclass
    class Config(LoggedConfig):
        min_brightness: float = 0.0

    name = "brightness"
    resources = Resources(cpus=1, memory_gb=0.5)

    def process_sample(self, sample: Sample) -> None:
        self.log_call(sample)
        brightness = float(read_frames(self.context.resolve(sample.video)).double().mean())
        sample.scores["brightness"] = brightness
        if brightness < self.config.min_brightness:
            sample.reject(self.name, f"mean brightness {brightness:.1f} < {self.config.min_brightness}", brightness=brightness)


class MirrorStage(LoggedStage):
    """The "edit": flip the clip left to right after ``smooth_passes`` 3x3 box blurs."""

    @dataclass
    class Config(LoggedConfig):
        smooth_passes: int = 0
        fail_sample: str = ""  # sample id to fail on ...
        fail_while_exists: str = ""  # ... while this file exists (empty: always)
        keyframe: bool = False  # also write the edited keyframe (the flipped first frame, darkened) as a PNG

    name = "mirror"
    resources = Resources(gpus=1, memory_gb=1)

    def process_sample(self, sample: Sample) -> None:
        self.log_call(sample)
        config = self.config
        if sample.sample_id == config.fail_sample and (not config.fail_while_exists or os.path.exists(config.fail_while_exists)):
            raise RuntimeError(f"injected fault on {sample.sample_id} (remove {config.fail_while_exists or 'fail_sample'} to heal)")
        source = self.context.resolve(sample.video)
        edited = smooth(read_frames(source, layout="TCHW"), config.smooth_passes).flip(-1)
        absolute, relative = self.context.path_for("generated", sample, ".mp4")
        write_video(absolute, edited, probe(source).fps, layout="TCHW")
        sample.generated = relative
        if config.keyframe:
            keyframe, sample.edited_keyframe = self.context.path_for("edited_keyframe", sample, ".png")
            Image.fromarray((edited[0] // 2).permute(1, 2, 0).numpy()).save(keyframe)
        sample.instruction = "Mirror the video from left to right."
        sample.edit_type = "global_freeform"


def smooth(frames: torch.Tensor, passes: int) -> torch.Tensor:
    """``passes`` 3x3 box blurs of uint8 ``(T, C, H, W)`` frames."""
    if passes <= 0:
        return frames
    work = frames.float()
    kernel = torch.full((work.shape[1], 1, 3, 3), 1 / 9)
    for _ in range(passes):
        work = F.conv2d(F.pad(work, (1, 1, 1, 1), mode="replicate"), kernel, groups=work.shape[1])
    return work.round().clamp(0, 255).to(torch.uint8)
