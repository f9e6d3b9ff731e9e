"""Whole-weight files: the VACE branch (or a whole transformer) in Wan's original names.

ComfyUI workflows ship fine-tuned VACE branches as plain weights (``vace_blocks.{i}.self_attn.q.weight``,
``vace_patch_embedding.weight``, ...), not as LoRAs. Their names are mapped with diffusers' own
Wan single-file conversion (``convert_wan_transformer_to_diffusers``, the one ``from_single_file``
uses for the official checkpoints) and checked against the transformer: the file must hold the
whole VACE branch, and every tensor must name a parameter of the model with its shape.
"""

from __future__ import annotations

import torch

from ditto_hf.lora.convert import mismatch_error
from ditto_hf.lora.keys import parse_key, strip_prefix
from ditto_hf.lora.layout import TransformerLayout

VACE_PREFIXES = ("vace_blocks.", "vace_patch_embedding.")


def is_lora(state_dict: dict[str, torch.Tensor]) -> bool:
    """True when some key is a LoRA factor (``lora_A``, ``lora_down``, ``alpha``, ``diff`` ...)."""
    return any(parse_key(key, ()) is not None for key in state_dict)


def convert_weights(state_dict: dict[str, torch.Tensor], layout: TransformerLayout, *, source: str) -> dict[str, torch.Tensor]:
    """Map a whole-weight file to the transformer's parameter names; raise
    :class:`~ditto_hf.lora.convert.LoraMismatchError` listing what does not fit."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    converted, problems = {}, []
    for key, tensor in state_dict.items():
        (name,) = convert_wan_transformer_to_diffusers({strip_prefix(key): tensor})
        expected = layout.parameters.get(name)
        if expected is None:
            problems.append(f"{key}: no parameter {name} in the model")
        elif tuple(tensor.shape) != expected:
            problems.append(f"{key}: shape {tuple(tensor.shape)}, the model's {name} is {expected}")
        else:
            converted[name] = tensor
    missing = [name for name in layout.parameters if name.startswith(VACE_PREFIXES) and name not in converted]
    problems += [f"{name}: missing (the file must hold the whole VACE branch)" for name in missing]
    if problems:
        raise mismatch_error(source, layout, problems)
    return converted


def describe_weights(weights: dict[str, torch.Tensor], source: str) -> str:
    vace = sum(name.startswith(VACE_PREFIXES) for name in weights)
    rest = len(weights) - vace
    return f"{source}: whole weights, {vace} VACE-branch tensors" + (f" + {rest} main-model tensors" if rest else "")


def load_weights(transformer, weights: dict[str, torch.Tensor]) -> None:
    """Copy ``weights`` (parameter names as :func:`convert_weights` returns them) into ``transformer``,
    also when LoRA adapters already wrap some of its layers."""
    actual = {key.replace(".base_layer.", "."): key for key in transformer.state_dict()}
    renamed = {actual[name]: tensor for name, tensor in weights.items()}
    result = transformer.load_state_dict(renamed, strict=False)
    if result.unexpected_keys:  # convert_weights checked every name: this would be a bug, not bad input
        raise RuntimeError(f"unexpected keys while loading weights: {result.unexpected_keys[:5]}")
