"""``refine``: the Wan2.2 low-noise expert polishes the generated video, SDEdit-style.

The Wan2.2 A14B repos hold two experts: ``transformer`` (high noise) and ``transformer_2`` (low
noise, timesteps below the repo's ``boundary_ratio``). This stage loads only the low-noise expert
and runs it in diffusers' ``WanVideoToVideoPipeline``: the generated video is resized to the
output size (Ditto's enhancer: 1280x720, portrait 720x1280, so a 480p generation comes out at
720p), encoded, noised to the level of step ``(1 - strength) * num_inference_steps`` of the
schedule, and denoised through the remaining steps (40 steps x 0.1 = the last 4), with the
sample's caption or an empty prompt.

The shift of the schedule is set here, not taken from the repo: the diffusers conversion of
Wan2.2-T2V-A14B ships ``flow_shift=3.0``, where the last 4 of 40 steps start at timestep ~251
(sigma ~0.25); Ditto's enhancer uses shift 12, where they start at ~573 (sigma ~0.57).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import Resources, Stage, StageConfig
from ditto_hf.generate.helpers.wan import (
    WAN_NEGATIVE_PROMPT,
    check_size,
    load_vae,
    oriented_size,
    read_clip,
    sample_generator,
    set_flow_shift,
    to_uint8_frames,
)

logger = logging.getLogger(__name__)


class RefineStage(Stage):
    """``generated/<id>.mp4`` → ``refined/<id>.mp4`` (last denoising steps of the Wan2.2 low-noise expert)."""

    name = "refine"
    # bf16: one 14B expert (~28 GB) + UMT5-XXL encoder (~11 GB) + VAE; the high-noise expert is never loaded
    resources = Resources(gpus=1, cpus=4, memory_gb=40)

    @dataclass
    class Config(StageConfig):
        """Settings of the ``refine`` stage (paper: light noise, last 4 steps of the low-noise expert)."""

        #: A Wan2.2 two-expert repo (diffusers layout); ``dtype`` sets the expert / text encoder precision.
        model: ModelSpec = field(default_factory=lambda: ModelSpec("Wan-AI/Wan2.2-T2V-A14B-Diffusers"))
        #: Subfolder of the low-noise expert in that repo.
        expert_subfolder: str = "transformer_2"
        #: Precision of the Wan VAE.
        vae_dtype: str = "float32"
        #: Length of the full denoising schedule the refinement is cut from.
        num_inference_steps: int = 40
        #: Fraction of that schedule that is re-run: 0.1 of 40 = the last 4 steps (light noise).
        strength: float = 0.1
        #: Classifier-free guidance (Wan2.2's default for the low-noise expert: 3.0).
        guidance_scale: float = 3.0
        #: Prompt: the sample's ``caption``, or ``empty`` (pure denoising prior).
        prompt_source: Literal["caption", "empty"] = "caption"
        negative_prompt: str = WAN_NEGATIVE_PROMPT
        #: Flow-matching shift of the schedule (Ditto's enhancer: 12.0). None keeps the repo's, which for
        #: Wan2.2-T2V-A14B-Diffusers is 3.0: the refinement would start at a much lower noise level.
        flow_shift: float | None = 12.0
        #: Output width and height (multiples of 16), landscape orientation; the generated video is
        #: resized (centre crop) to it before encoding (Ditto's enhancer: 1280x720).
        width: int = 1280
        height: int = 720
        #: Swap width/height for portrait clips so the output keeps the generated video's orientation.
        match_orientation: bool = True
        #: Text-encoder sequence length.
        max_sequence_length: int = 512
        #: Stage seed, mixed with the run seed and the sample id.
        seed: int = 0

        def __post_init__(self) -> None:
            check_size("refine", self.width, self.height)
            if not 0.0 < self.strength <= 1.0:
                raise DittoError(f"refine: strength must be in (0, 1], got {self.strength}")
            if self.refine_steps < 1:
                raise DittoError(f"refine: strength {self.strength} x num_inference_steps {self.num_inference_steps} runs no step")
            if self.prompt_source not in ("caption", "empty"):
                raise DittoError(f"refine: prompt_source must be 'caption' or 'empty', got {self.prompt_source!r}")

        @property
        def refine_steps(self) -> int:
            """How many of the last schedule steps run (what the pipeline derives from ``strength``)."""
            return min(int(self.num_inference_steps * self.strength), self.num_inference_steps)

        def start_timestep(self, scheduler) -> float:
            """The timestep the refinement starts at on ``scheduler`` (its shift already set)."""
            scheduler.set_timesteps(self.num_inference_steps)
            return float(scheduler.timesteps[-self.refine_steps])

    def setup(self) -> None:
        from diffusers import WanTransformer3DModel, WanVideoToVideoPipeline

        spec, registry = self.config.model, self.context.registry
        expert = registry.load(WanTransformer3DModel, spec.with_overrides(subfolder=self.config.expert_subfolder))
        vae = load_vae(registry, spec, self.config.vae_dtype)
        self.pipeline = registry.load(WanVideoToVideoPipeline, spec, transformer=expert, vae=vae)
        self.pipeline.set_progress_bar_config(disable=True)
        set_flow_shift(self.pipeline, self.config.flow_shift)
        self._warn_if_above_boundary()

    def _warn_if_above_boundary(self) -> None:
        """The low-noise expert was trained below the repo's boundary timestep; say so if the
        configured strength starts the refinement above it."""
        from diffusers import DiffusionPipeline

        spec = self.context.registry.resolve(self.config.model)
        boundary_ratio = DiffusionPipeline.load_config(spec.id, revision=spec.revision).get("boundary_ratio")
        if not boundary_ratio:
            return
        scheduler = self.pipeline.scheduler
        start = self.config.start_timestep(scheduler)
        boundary = boundary_ratio * scheduler.config.num_train_timesteps
        if start >= boundary:
            logger.warning(
                "refine starts at timestep %.0f, above the low-noise expert's boundary %.0f: lower strength",
                start,
                boundary,
            )

    def process_sample(self, sample: Sample) -> None:
        from ditto_hf.video import write_video

        if not sample.generated:
            raise DittoError(f"sample {sample.sample_id}: refine needs the generated video (run the vace stage first)")
        generated = self.context.resolve(sample.generated)
        width, height = oriented_size(self.config.width, self.config.height, generated, self.config.match_orientation)
        frames, fps = read_clip(generated, size=(width, height))
        prompt = sample.caption if self.config.prompt_source == "caption" else ""
        output = self.pipeline(
            video=frames,
            prompt=prompt,
            negative_prompt=self.config.negative_prompt,
            height=height,
            width=width,
            num_inference_steps=self.config.num_inference_steps,
            strength=self.config.strength,
            guidance_scale=self.config.guidance_scale,
            max_sequence_length=self.config.max_sequence_length,
            generator=sample_generator(self.context.seed, self.config.seed, sample.sample_id),
            output_type="np",
        )
        absolute, relative = self.context.path_for("refined", sample, ".mp4")
        write_video(absolute, to_uint8_frames(output.frames[0]), fps)
        sample.refined = relative
