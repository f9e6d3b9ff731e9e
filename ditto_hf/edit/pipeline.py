"""``EdittoPipeline``: instruction-based video editing with Wan2.1-VACE and a Ditto LoRA, on diffusers.

It composes diffusers' ``WanVACEPipeline`` (kept as ``.pipe``) the way the official inference runs
Editto: the source video is the VACE context (no mask, i.e. all ones; no reference image; no depth),
the instruction is the prompt, and the Ditto LoRA adapts the VACE branch. A preset fixes the sampler
and its settings; every call can override them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ditto_hf.edit.inputs import input_size, prepare_video
from ditto_hf.edit.presets import DEFAULT_MODEL, OUTPUT_FPS, EditPreset, ditto_lora, get_preset
from ditto_hf.errors import DittoError
from ditto_hf.generate.helpers.wan import to_uint8_frames
from ditto_hf.lora import PreparedAdapter, TransformerLayout, apply_adapters, prepare_adapters

OFFLOAD_POLICIES = ("none", "model", "sequential")
DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class EdittoOutput:
    """The edited video."""

    #: ``uint8`` frames ``(T, H, W, C)``.
    frames: torch.Tensor
    #: What was done to the input (frames kept, crop, size), in one line.
    note: str
    #: The settings the edit ran with (the preset after overrides).
    settings: EditPreset

    def save(self, path: str | Path, fps: float = OUTPUT_FPS) -> Path:
        """Write the frames as H.264 mp4 (atomically)."""
        from ditto_hf.video import write_video

        return write_video(path, self.frames, fps)


class EdittoPipeline:
    """Edit videos from text instructions with Wan2.1-VACE-14B + a Ditto LoRA.

    >>> editto = EdittoPipeline.from_pretrained(lora="global", preset="quality")  # doctest: +SKIP
    >>> editto("clip.mp4", "Make it the LEGO style.").save("lego.mp4")  # doctest: +SKIP
    """

    def __init__(self, pipe, preset: EditPreset, adapters: list[PreparedAdapter], model: str = DEFAULT_MODEL):
        self.pipe = pipe
        self.preset = preset
        self.adapters = adapters
        self.model = model
        self._scheduler_config = dict(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)

    @classmethod
    def from_pretrained(
        cls,
        model: str = DEFAULT_MODEL,
        *,
        lora: str | None = "global",
        lora_scale: float = 1.0,
        preset: str | EditPreset = "quality",
        dtype: str = "auto",
        device: str = "auto",
        offload: str = "none",
        vae_dtype: str = "float32",
    ) -> EdittoPipeline:
        """Load the VACE pipeline ``model`` (a diffusers repo id or folder) with its LoRAs.

        Args:
            lora: ``global``, ``global_style``, ``local``, ``sim2real`` (the Ditto LoRAs in
                ``QingyanBai/Ditto_models``), a local ``.safetensors`` (a LoRA of any known spelling, or a
                whole VACE-branch file), or ``None`` / ``"none"``.
            lora_scale: the Ditto LoRA's weight (DiffSynth's ``alpha``).
            preset: ``quality`` (the official inference) or ``fast`` (the ComfyUI recipe, adds CausVid).
            dtype: ``auto`` = bfloat16 on CUDA, float32 on CPU; the VAE stays in ``vae_dtype``.
            device: ``auto`` = cuda if available; ``offload``: ``none``, ``model`` or ``sequential``
                (diffusers' CPU offload, CUDA only).

        Every LoRA file is found, read and checked against the model's transformer config before
        the model itself is loaded.
        """
        preset = get_preset(preset) if isinstance(preset, str) else preset
        device = _device(device)
        torch_dtype = _dtype(dtype, device)
        if offload not in OFFLOAD_POLICIES:
            raise DittoError(f"unknown offload policy {offload!r}: choose one of {', '.join(OFFLOAD_POLICIES)}")
        if offload != "none" and not device.startswith("cuda"):
            raise DittoError(f"--offload {offload} moves models between the CPU and a CUDA device; the device here is {device}")
        specs = [spec for spec in (ditto_lora(lora, lora_scale),) if spec is not None] + list(preset.extra_loras)
        adapters = prepare_adapters(specs, TransformerLayout.for_model(model))
        pipe = _load_pipeline(model, torch_dtype, _dtype(vae_dtype, device))
        apply_adapters(pipe, adapters)
        if offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        elif offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe.to(device)
        return cls(pipe, preset, adapters, model)

    def describe(self) -> list[str]:
        """What is loaded and how edits run, one line each."""
        lines = [f"model {self.model}, preset {self.preset.name}: {self.preset.description}"]
        lines += [f"LoRA {adapter.describe()}" for adapter in self.adapters] or ["no Ditto LoRA (the base VACE model)"]
        return lines

    def __call__(
        self,
        video,
        instruction: str,
        *,
        num_frames: int | None = None,
        width: int | None = None,
        height: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        flow_shift: float | None = None,
        conditioning_scale: float | None = None,
        seed: int | None = None,
        negative_prompt: str | None = None,
        max_sequence_length: int = 512,
        show_progress: bool = True,
    ) -> EdittoOutput:
        """Edit ``video`` (a path, ``uint8`` frames ``(T, H, W, C)`` or PIL images) as ``instruction`` says.

        Unset options come from the preset. Without ``width`` / ``height`` a portrait input gets the
        preset's size turned upright. The first ``num_frames`` frames (4k+1) are edited.
        """
        if not instruction or not instruction.strip():
            raise DittoError("the edit instruction is empty")
        settings = self.settings_for(
            video,
            num_frames=num_frames,
            width=width,
            height=height,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            flow_shift=flow_shift,
            conditioning_scale=conditioning_scale,
            seed=seed,
            negative_prompt=negative_prompt,
        )
        prepared = prepare_video(video, settings.num_frames, (settings.width, settings.height))
        self.pipe.scheduler = _scheduler(settings, self._scheduler_config)
        generator = torch.Generator(device="cpu").manual_seed(settings.seed)
        with _denoising_progress(settings.num_inference_steps, show_progress) as callback:
            result = self.pipe(
                prompt=instruction,
                negative_prompt=settings.negative_prompt,
                video=_pil_frames(prepared.frames),
                conditioning_scale=settings.conditioning_scale,
                height=settings.height,
                width=settings.width,
                num_frames=prepared.frames.shape[0],
                num_inference_steps=settings.num_inference_steps,
                guidance_scale=settings.guidance_scale,
                generator=generator,
                output_type="np",
                max_sequence_length=max_sequence_length,
                callback_on_step_end=callback,
            )
        return EdittoOutput(to_uint8_frames(result.frames[0]), prepared.note, replace(settings, num_frames=prepared.frames.shape[0]))

    def settings_for(self, video, **overrides) -> EditPreset:
        """The preset with the given (non-``None``) overrides; without ``width`` / ``height``, the preset's
        size turned upright for a portrait ``video``."""
        settings = replace(self.preset, **{name: value for name, value in overrides.items() if value is not None})
        if overrides.get("width") is None and overrides.get("height") is None:
            source_width, source_height = input_size(video)
            long_side, short_side = max(settings.width, settings.height), min(settings.width, settings.height)
            width, height = (short_side, long_side) if source_height > source_width else (long_side, short_side)
            settings = replace(settings, width=width, height=height)
        return settings.check()


def _device(device: str) -> str:
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype(name: str, device: str) -> torch.dtype:
    if name not in DTYPES:
        raise DittoError(f"unknown dtype {name!r}: choose one of {', '.join(DTYPES)}")
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def _load_pipeline(model: str, dtype: torch.dtype, vae_dtype: torch.dtype):
    """``WanVACEPipeline`` from ``model`` (safetensors only), the VAE in ``vae_dtype``."""
    from diffusers import AutoencoderKLWan, WanVACEPipeline
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        vae = AutoencoderKLWan.from_pretrained(model, subfolder="vae", dtype=vae_dtype, use_safetensors=True)
        return WanVACEPipeline.from_pretrained(model, vae=vae, dtype=dtype, use_safetensors=True)
    except (OSError, ValueError, HfHubHTTPError, LocalEntryNotFoundError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DittoError(f"cannot load the VACE pipeline {model}: {reason}") from exc


def _scheduler(settings: EditPreset, base_config: dict):
    """The preset's flow-matching sampler with its shift."""
    from diffusers import UniPCMultistepScheduler

    from ditto_hf.edit.schedulers import DiffSynthFlowMatchScheduler

    if settings.scheduler == "unipc":
        return UniPCMultistepScheduler.from_config(
            base_config, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=settings.flow_shift
        )
    return DiffSynthFlowMatchScheduler(num_train_timesteps=base_config.get("num_train_timesteps", 1000), shift=settings.flow_shift)


def _pil_frames(frames: torch.Tensor) -> list:
    from PIL import Image

    return [Image.fromarray(frame.numpy()) for frame in frames]


@contextmanager
def _denoising_progress(total: int, enabled: bool) -> Iterator:
    """A rich progress bar over the denoising steps, advanced by diffusers' ``callback_on_step_end``."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("denoising"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("denoising", total=total)

        def advance(pipe, step: int, timestep, tensors: dict) -> dict:
            progress.advance(task)
            return tensors

        yield advance
