"""Stage 5: Qwen-Image-Edit edits one keyframe of the clip with the instruction.

The keyframe (the first frame by default) of ``sample.video`` is saved as ``keyframe/<id>.png``,
edited by a diffusers Qwen-Image-Edit pipeline with ``sample.instruction`` as the prompt, and the
result is resized back to the video's size and saved as ``edited_keyframe/<id>.png``; the VACE
stage uses it as the reference image of the edited video.

Which pipeline class fits which checkpoint: ``Qwen/Qwen-Image-Edit`` ships
``QwenImageEditPipeline``; ``Qwen/Qwen-Image-Edit-2509`` (multi-image) ships
``QwenImageEditPlusPipeline``. Both resize the condition image to a fixed pixel area internally
(≈1024², or 384² condition + 1024² VAE input for Plus) and take no argument for it; the optional
``working_area`` caps that area (used by tests and previews; it changes the pipeline module's
``calculate_dimensions`` for the duration of one call, under a lock).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ditto_hf.errors import DittoError, VideoError
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import Resources, Stage, StageConfig
from ditto_hf.video import open_decoder

#: Pipeline classes that can run this stage (diffusers names).
PIPELINES = ("QwenImageEditPipeline", "QwenImageEditPlusPipeline")

_WORKING_AREA_LOCK = threading.Lock()


@contextlib.contextmanager
def capped_working_area(pipeline, max_area: int | None):
    """While active, the pipeline's internal image sizing uses at most ``max_area`` pixels."""
    if max_area is None:
        yield
        return
    module = sys.modules[type(pipeline).__module__]
    original = module.calculate_dimensions
    with _WORKING_AREA_LOCK:
        module.calculate_dimensions = lambda target_area, ratio: original(min(target_area, max_area), ratio)
        try:
            yield
        finally:
            module.calculate_dimensions = original


def save_png_atomically(image, path: Path) -> None:
    """Write ``image`` as PNG through a temporary file renamed into place."""
    temporary = path.with_name(f".{path.name}.tmp")
    image.save(temporary, format="PNG")
    os.replace(temporary, path)


class KeyframeStage(Stage):
    """Edit the keyframe with Qwen-Image-Edit; sets ``sample.keyframe`` and ``sample.edited_keyframe``."""

    name = "keyframe"
    resources = Resources(gpus=1, memory_gb=60)

    @dataclass
    class Config(StageConfig):
        """Model, keyframe choice and sampling options (defaults: Qwen's recommended settings)."""

        model: ModelSpec = field(default_factory=lambda: ModelSpec("Qwen/Qwen-Image-Edit"))
        """Qwen-Image-Edit checkpoint (Hub id or local folder)."""
        pipeline: str = "QwenImageEditPipeline"
        """diffusers class: ``QwenImageEditPipeline`` (Qwen-Image-Edit) or ``QwenImageEditPlusPipeline`` (-2509)."""
        frame_index: int = 0
        """Which frame of the standardised clip to edit (negative counts from the end)."""
        num_inference_steps: int = 50
        """Denoising steps."""
        true_cfg_scale: float = 4.0
        """Classifier-free guidance scale (applies when ``negative_prompt`` is set)."""
        negative_prompt: str = " "
        """Negative prompt for classifier-free guidance."""
        seed: int = 0
        """Base seed; each sample's generator is seeded from (run seed, this seed, sample id)."""
        working_area: int | None = None
        """Cap on the pixel area the pipeline works at; ``None`` keeps the pipeline's own (≈1024²)."""

        def __post_init__(self) -> None:
            if self.pipeline not in PIPELINES:
                raise DittoError(f"keyframe.pipeline must be one of {list(PIPELINES)}, got {self.pipeline!r}")
            if self.num_inference_steps < 1:
                raise DittoError(f"keyframe.num_inference_steps must be positive, got {self.num_inference_steps}")
            if self.working_area is not None and self.working_area < 32 * 32:
                raise DittoError(f"keyframe.working_area must be at least 32*32 pixels, got {self.working_area}")

    def setup(self) -> None:
        import diffusers

        self.pipeline = self.context.registry.load(getattr(diffusers, self.config.pipeline), self.config.model)
        self.pipeline.set_progress_bar_config(disable=True)

    def teardown(self) -> None:
        self.pipeline = None

    def process_sample(self, sample: Sample) -> None:
        from PIL import Image

        if not sample.instruction:
            raise DittoError(f"sample {sample.sample_id} has no instruction: run the instruct stage before keyframe")
        keyframe = self.read_keyframe(sample)
        absolute, sample.keyframe = self.context.path_for("keyframe", sample, ".png")
        save_png_atomically(keyframe, absolute)
        edited = self.edit(keyframe, sample.instruction, self.sample_seed(sample))
        absolute, sample.edited_keyframe = self.context.path_for("edited_keyframe", sample, ".png")
        save_png_atomically(edited.resize(keyframe.size, resample=Image.Resampling.BICUBIC), absolute)

    def read_keyframe(self, sample: Sample):
        """The configured frame of ``sample.video`` as an RGB PIL image."""
        from PIL import Image

        decoder = open_decoder(self.context.resolve(sample.video), layout="THWC")
        count, index = len(decoder), self.config.frame_index
        if not -count <= index < count:
            raise VideoError(f"{sample.video}: has {count} frame(s), keyframe.frame_index {index} is out of range")
        return Image.fromarray(decoder[index].numpy())

    def sample_seed(self, sample: Sample) -> int:
        """A seed reproducible from (run seed, stage seed, sample id)."""
        return zlib.crc32(f"{self.context.seed}:{self.config.seed}:{sample.sample_id}".encode())

    def edit(self, image, instruction: str, seed: int):
        """One pipeline call: ``image`` edited by ``instruction`` (a PIL image at the working size)."""
        import torch

        with capped_working_area(self.pipeline, self.config.working_area):
            result = self.pipeline(
                image=image,
                prompt=instruction,
                negative_prompt=self.config.negative_prompt,
                true_cfg_scale=self.config.true_cfg_scale,
                num_inference_steps=self.config.num_inference_steps,
                generator=torch.Generator(device="cpu").manual_seed(seed),
            )
        return result.images[0]
