"""``vace``: Wan2.1-VACE renders the edited video from the depth video and the edited keyframe (in-context generation).

diffusers' ``WanVACEPipeline`` receives the sample's depth video as the control ``video`` (mask
all ones: every pixel is generated under depth guidance), the edited keyframe as the single
``reference_images`` entry (centre-cropped to the output size like the depth frames, so both share
one framing) and the edit instruction as the prompt. Portrait clips get a portrait output size. A step-distillation LoRA (e.g.
CausVid) in any known spelling (ComfyUI, DiffSynth, diffusers) is converted and loaded by
:mod:`ditto_hf.lora`, the editing pipeline's loader; precision comes from the model spec's dtype
(the VAE stays in ``vae_dtype``), and ``quantization`` on the spec quantises the transformer on load.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import Resources, Stage, StageConfig
from ditto_hf.generate.helpers.wan import (
    WAN_NEGATIVE_PROMPT,
    check_frame_count,
    check_size,
    load_vae,
    oriented_size,
    read_clip,
    read_image,
    sample_generator,
    set_flow_shift,
    to_uint8_frames,
)

LORA_ADAPTER = "distill"


class VaceStage(Stage):
    """Depth video + edited keyframe + instruction → ``generated/<id>.mp4`` (Wan2.1-VACE)."""

    name = "vace"
    # bf16: ~17B-parameter VACE transformer (~34 GB) + UMT5-XXL encoder (~11 GB) + VAE; less with offload
    resources = Resources(gpus=1, cpus=4, memory_gb=48)

    @dataclass
    class Config(StageConfig):
        """Settings of the ``vace`` stage. Defaults: full-quality Wan2.1-VACE-14B at Ditto-1M's
        1280x720, 101 frames; the official few-step recipe (``fast`` and ``paper``) adds the CausVid
        v2 LoRA at 1.0 with 4 UniPC steps, guidance 1.2, shift 2 and conditioning 0.975."""

        #: The VACE pipeline repo (diffusers layout). ``dtype`` sets the transformer / text encoder precision.
        model: ModelSpec = field(default_factory=lambda: ModelSpec("Wan-AI/Wan2.1-VACE-14B-diffusers"))
        #: Precision of the Wan VAE (float32 as in the official examples).
        vae_dtype: str = "float32"
        #: Shown to the model as what not to produce (Wan's published negative prompt).
        negative_prompt: str = WAN_NEGATIVE_PROMPT
        #: Denoising steps (Ditto's official inference: 50; with a CausVid LoRA: ~4).
        num_inference_steps: int = 50
        #: Classifier-free guidance (official: 5.0; official CausVid recipe: 1.2; 1.0 skips the negative pass).
        guidance_scale: float = 5.0
        #: Flow-matching shift of the scheduler (official: 5.0; ComfyUI CausVid recipe: 2.0); None keeps the repo's.
        flow_shift: float | None = 5.0
        #: Strength of the control (depth) stream in the VACE blocks (official CausVid recipe: 0.975).
        conditioning_scale: float = 1.0
        #: Frames to generate, 4k+1; a shorter depth video is cut to its largest 4k+1 prefix.
        num_frames: int = 101
        #: Output width and height (multiples of 16), landscape orientation.
        width: int = 1280
        height: int = 720
        #: Swap width/height for portrait clips so the output keeps the source orientation.
        match_orientation: bool = True
        #: Text-encoder sequence length.
        max_sequence_length: int = 512
        #: Stage seed, mixed with the run seed and the sample id.
        seed: int = 0
        #: Optional step-distillation LoRA (any spelling ``ditto_hf.lora`` reads): a Hub repo, a local folder, or a ``.safetensors`` file.
        lora: str | None = None
        #: File inside ``lora`` when it is a repo/folder holding several weight files.
        lora_weight_name: str | None = None
        #: Adapter weight given to ``set_adapters``.
        lora_scale: float = 1.0

        def __post_init__(self) -> None:
            check_size("vace", self.width, self.height)
            check_frame_count("vace", self.num_frames)
            if self.num_inference_steps < 1:
                raise DittoError(f"vace: num_inference_steps must be at least 1, got {self.num_inference_steps}")

    def setup(self) -> None:
        from diffusers import WanVACEPipeline

        spec = self.config.model
        # A quantised transformer cannot take a LoRA: load it in full precision, fuse, then quantise.
        fuse_then_quantize = spec.quantization if self.config.lora else None
        if fuse_then_quantize is not None:
            fuse_then_quantize.check_device(spec.id, spec.resolved_device())
            spec = spec.without_quantization()
        vae = load_vae(self.context.registry, spec, self.config.vae_dtype)
        self.pipeline = self.context.registry.load(WanVACEPipeline, spec, vae=vae)
        self.pipeline.set_progress_bar_config(disable=True)
        set_flow_shift(self.pipeline, self.config.flow_shift)
        if self.config.lora:
            self._load_lora()
        if fuse_then_quantize is not None:
            self._fuse_and_quantize(fuse_then_quantize)

    def _load_lora(self) -> None:
        """Convert the LoRA (any known spelling) for this transformer, load it once into the (possibly
        shared) pipeline and weight it."""
        from ditto_hf.lora import LoraSpec, load_adapters

        spec = LoraSpec(self.config.lora, self.config.lora_weight_name, scale=self.config.lora_scale, adapter_name=LORA_ADAPTER)
        load_adapters(self.pipeline, [spec])

    def _fuse_and_quantize(self, quantization) -> None:
        """Fold the weighted LoRA into the transformer's weights (diffusers' ``fuse_lora``), drop the
        adapter, then quantise the transformer in place."""
        if LORA_ADAPTER in self.pipeline.get_list_adapters().get("transformer", []):
            self.pipeline.fuse_lora(components=["transformer"], adapter_names=[LORA_ADAPTER])
            self.pipeline.unload_lora_weights()
        quantization.quantize(self.pipeline.transformer)

    def pipeline_inputs(self, sample: Sample) -> dict:
        """The keyword arguments of the VACE call for ``sample`` (everything but the generator)."""
        if not sample.depth or not sample.edited_keyframe:
            raise DittoError(f"sample {sample.sample_id}: vace needs the depth video and the edited keyframe")
        depth_path = self.context.resolve(sample.depth)
        width, height = oriented_size(self.config.width, self.config.height, depth_path, self.config.match_orientation)
        depth_frames, _ = read_clip(depth_path, (width, height), self.config.num_frames)
        keyframe_path = self.context.resolve(sample.edited_keyframe)
        keyframe = read_image(keyframe_path, (width, height), f"sample {sample.sample_id}: edited keyframe")
        return {
            "prompt": sample.instruction,
            "negative_prompt": self.config.negative_prompt,
            "video": depth_frames,
            "reference_images": [keyframe],
            "conditioning_scale": self.config.conditioning_scale,
            "height": height,
            "width": width,
            "num_frames": len(depth_frames),
            "num_inference_steps": self.config.num_inference_steps,
            "guidance_scale": self.config.guidance_scale,
            "max_sequence_length": self.config.max_sequence_length,
            "output_type": "np",
        }

    def process_sample(self, sample: Sample) -> None:
        from ditto_hf.video import probe, write_video

        if not sample.instruction:
            raise DittoError(f"sample {sample.sample_id}: vace needs an edit instruction")
        inputs = self.pipeline_inputs(sample)
        generator = sample_generator(self.context.seed, self.config.seed, sample.sample_id)
        frames = self.pipeline(**inputs, generator=generator).frames[0]
        absolute, relative = self.context.path_for("generated", sample, ".mp4")
        write_video(absolute, to_uint8_frames(frames), probe(self.context.resolve(sample.depth)).fps)
        sample.generated = relative
