"""``ditto-hf edit INPUT INSTRUCTION -o OUTPUT``: Editto on one video."""

from __future__ import annotations

import time
from dataclasses import replace

import click
from rich.console import Console

from ditto_hf.edit.pipeline import DTYPES, OFFLOAD_POLICIES
from ditto_hf.edit.presets import DEFAULT_MODEL, DITTO_LORAS, OUTPUT_FPS, PRESETS


@click.command("edit")
@click.argument("input_video", metavar="INPUT")
@click.argument("instruction")
@click.option("-o", "--output", required=True, metavar="OUTPUT.mp4", help="Where to write the edited video (written only on success).")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, metavar="ID_OR_DIR", help="Wan2.1-VACE pipeline (diffusers layout).")
@click.option(
    "--lora",
    default="global",
    show_default=True,
    metavar="NAME_OR_FILE",
    help=f"{', '.join(DITTO_LORAS)} (QingyanBai/Ditto_models), a .safetensors file (any known spelling), or none.",
)
@click.option("--lora-scale", type=float, default=1.0, show_default=True, help="Weight of the Ditto LoRA.")
@click.option(
    "--preset", default="quality", show_default=True, metavar="|".join(PRESETS), help="quality: the official inference; fast: ComfyUI's."
)
@click.option("--num-frames", type=int, help="Frames to edit, 4k+1 (the first ones of INPUT). [preset: 73]")
@click.option("--width", type=int, help="Output width, a multiple of 16. [preset: 832, upright for portrait input]")
@click.option("--height", type=int, help="Output height, a multiple of 16. [preset: 480]")
@click.option("--steps", type=int, help="Denoising steps. [quality: 50, fast: 4]")
@click.option("--guidance", type=float, help="Classifier-free guidance. [quality: 5, fast: 1.2]")
@click.option("--shift", type=float, help="Flow-matching shift. [quality: 5, fast: 2]")
@click.option("--seed", type=int, help="[preset: 1]")
@click.option("--negative-prompt", help="[preset: Wan's default negative prompt]")
@click.option("--fps", type=float, default=OUTPUT_FPS, show_default=True, help="Frame rate of OUTPUT.")
@click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True, help="auto: bfloat16 on CUDA, float32 on CPU.")
@click.option("--device", default="auto", show_default=True, help="auto: cuda if available, else cpu.")
@click.option("--offload", type=click.Choice(OFFLOAD_POLICIES), default="none", show_default=True, help="diffusers CPU offload (CUDA).")
def edit_command(input_video, instruction, output, model, lora, lora_scale, preset, fps, dtype, device, offload, **overrides) -> None:
    """Edit INPUT as INSTRUCTION says (e.g. "Make it the LEGO style.") and write OUTPUT.

    INPUT of any size, frame rate and length is centre-cropped and resized to the output size and
    cut to its first 4k+1 frames, as the official inference does.
    """
    from ditto_hf.cli import UserError
    from ditto_hf.edit import EdittoPipeline
    from ditto_hf.edit.presets import get_preset
    from ditto_hf.video import probe

    if not output.endswith(".mp4"):
        raise UserError(f"{output}: the output must be an .mp4 file")
    if fps <= 0:
        raise UserError(f"--fps must be positive, got {fps:g}")
    probe(input_video)  # a bad input or bad settings fail before the model loads
    settings = {
        "num_frames": overrides["num_frames"],
        "width": overrides["width"],
        "height": overrides["height"],
        "num_inference_steps": overrides["steps"],
        "guidance_scale": overrides["guidance"],
        "flow_shift": overrides["shift"],
        "seed": overrides["seed"],
        "negative_prompt": overrides["negative_prompt"],
    }
    settings = {name: value for name, value in settings.items() if value is not None}
    replace(get_preset(preset), **settings).check()
    console = Console(stderr=True, soft_wrap=True)
    started = time.monotonic()
    editto = EdittoPipeline.from_pretrained(
        model, lora=lora, lora_scale=lora_scale, preset=preset, dtype=dtype, device=device, offload=offload
    )
    for line in editto.describe():
        console.print(line, highlight=False, markup=False)
    result = editto(input_video, instruction, **settings)
    console.print(result.note, highlight=False, markup=False)
    result.save(output, fps=fps)
    used = result.settings
    console.print(
        f"wrote {output}: {used.num_frames} frames, {used.width}x{used.height} at {fps:g} fps "
        f"({used.num_inference_steps} steps {used.scheduler} shift {used.flow_shift:g}, guidance {used.guidance_scale:g}, "
        f"seed {used.seed}) in {time.monotonic() - started:.1f} s",
        highlight=False,
        markup=False,
    )
