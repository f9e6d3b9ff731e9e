"""Editto settings as data: the presets and the released Ditto LoRAs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ditto_hf.errors import DittoError
from ditto_hf.generate.helpers.wan import check_frame_count, check_size
from ditto_hf.lora import LoraSpec

DEFAULT_MODEL = "Wan-AI/Wan2.1-VACE-14B-diffusers"
DITTO_REPO = "QingyanBai/Ditto_models"
#: ``--lora`` names -> file in :data:`DITTO_REPO`.
DITTO_LORAS = {name: f"models/ditto_{name}.safetensors" for name in ("global", "global_style", "local", "sim2real")}
DITTO_ADAPTER = "ditto"
#: Frame rate of the edited video (the official inference writes 20 fps).
OUTPUT_FPS = 20.0

#: Wan's default negative prompt, as the official Ditto inference passes it.
WAN_DEFAULT_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，"
    "多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)

#: The step-distillation LoRA of the official ComfyUI workflow (Wan2.1-T2V-14B CausVid, main blocks).
CAUSVID_LORA = LoraSpec("Kijai/WanVideo_comfy", "Wan21_CausVid_14B_T2V_lora_rank32_v2.safetensors", scale=1.0, adapter_name="causvid")


@dataclass(frozen=True)
class EditPreset:
    """How an edit is generated; every field can be overridden per call."""

    name: str
    description: str
    width: int
    height: int
    #: Frames to edit (4k+1): the first ``num_frames`` of the input.
    num_frames: int
    num_inference_steps: int
    guidance_scale: float
    #: Flow-matching shift of the sampler's sigmas.
    flow_shift: float
    #: ``flow_match_euler`` (DiffSynth's sampler and sigma schedule) or ``unipc`` (ComfyUI's, the Wan repos' default).
    scheduler: Literal["flow_match_euler", "unipc"]
    #: Strength of the VACE context (the source video) in the VACE blocks.
    conditioning_scale: float = 1.0
    seed: int = 1
    negative_prompt: str = WAN_DEFAULT_NEGATIVE_PROMPT
    #: LoRAs the preset adds besides the Ditto LoRA (e.g. step distillation).
    extra_loras: tuple[LoraSpec, ...] = field(default_factory=tuple)

    def check(self) -> EditPreset:
        """Raise a :class:`DittoError` unless the settings suit Wan2.1-VACE; return ``self``."""
        check_size("edit", self.width, self.height)
        check_frame_count("edit", self.num_frames)
        if self.num_inference_steps < 1:
            raise DittoError(f"edit: the number of steps must be at least 1, got {self.num_inference_steps}")
        if self.scheduler not in ("flow_match_euler", "unipc"):
            raise DittoError(f"edit: unknown scheduler {self.scheduler!r}: flow_match_euler or unipc")
        return self


PRESETS: dict[str, EditPreset] = {
    "quality": EditPreset(
        name="quality",
        description="the official inference (DiffSynth): 50 flow-matching Euler steps on DiffSynth's schedule, guidance 5, shift 5",
        width=832,
        height=480,
        num_frames=73,
        num_inference_steps=50,
        guidance_scale=5.0,
        flow_shift=5.0,
        scheduler="flow_match_euler",
    ),
    "fast": EditPreset(
        name="fast",
        description="the official ComfyUI recipe: CausVid LoRA, 4 UniPC steps, guidance 1.2, shift 2, VACE strength 0.975",
        width=832,
        height=480,
        num_frames=73,
        num_inference_steps=4,
        guidance_scale=1.2,
        flow_shift=2.0,
        scheduler="unipc",
        conditioning_scale=0.975,
        extra_loras=(CAUSVID_LORA,),
    ),
}


def get_preset(name: str) -> EditPreset:
    if name not in PRESETS:
        raise DittoError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def ditto_lora(lora: str | None, scale: float) -> LoraSpec | None:
    """The spec of ``--lora``: a Ditto LoRA name, a local ``.safetensors`` file, or ``none`` / ``None``."""
    if lora is None or lora == "none":
        return None
    if lora in DITTO_LORAS:
        return LoraSpec(DITTO_REPO, DITTO_LORAS[lora], scale=scale, adapter_name=DITTO_ADAPTER)
    if lora.endswith(".safetensors"):
        return LoraSpec(lora, scale=scale, adapter_name=DITTO_ADAPTER)
    raise DittoError(f"unknown LoRA {lora!r}: use {', '.join(DITTO_LORAS)}, a .safetensors file or none")
