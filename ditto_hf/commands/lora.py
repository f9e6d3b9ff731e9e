"""``ditto-hf lora convert IN OUT``: a Ditto / DiffSynth / ComfyUI Wan LoRA as a diffusers LoRA file."""

from __future__ import annotations

import click
from rich.console import Console


@click.group("lora")
def lora_command() -> None:
    """Wan LoRA files: convert any known spelling to the diffusers format."""


@lora_command.command("convert")
@click.argument("source", metavar="IN.safetensors")
@click.argument("target", metavar="OUT.safetensors")
@click.option(
    "--model",
    metavar="ID_OR_DIR",
    help="The transformer to fit (a diffusers repo or folder; only its config is read). Default: the Wan2.1-VACE-14B layout.",
)
def convert_command(source: str, target: str, model: str | None) -> None:
    """Convert a Wan LoRA (DiffSynth, ComfyUI or diffusers keys) to a diffusers LoRA file.

    Plain diffusers loads OUT with pipe.load_lora_weights(OUT). IN is checked against the model
    first: nothing is written when a key cannot be placed or a shape does not fit."""
    from ditto_hf.cli import UserError
    from ditto_hf.lora import TransformerLayout, convert_lora, is_lora, read_weights, write_diffusers_lora

    if not target.endswith(".safetensors"):
        raise UserError(f"{target}: the output must be a .safetensors file")
    layout = TransformerLayout.for_model(model)
    state_dict = read_weights(source)
    if not is_lora(state_dict):
        raise UserError(f"{source} holds whole weights, not a LoRA: load it with `ditto-hf edit --lora {source}`")
    lora = convert_lora(state_dict, layout, source=source)
    write_diffusers_lora(lora, target)
    console = Console(stderr=True, soft_wrap=True)
    console.print(lora.describe(), highlight=False, markup=False)
    console.print(f"wrote {target} (diffusers LoRA for {layout.describe()}): load it with pipe.load_lora_weights", highlight=False)
