"""The spellings of Wan LoRA keys, and the diffusers module each one names.

A key is ``[prefix.]<module>.<factor>``:

- prefix: none, ``diffusion_model.`` / ``model.diffusion_model.`` (ComfyUI), ``model.``,
  ``transformer.`` (diffusers), ``pipe.vace.`` / ``pipe.dit.`` (DiffSynth before ``--remove_prefix_in_ckpt``);
- module, in Wan / DiffSynth names (``vace_blocks.{i}.self_attn.q``, ``blocks.{i}.ffn.0``,
  ``head.head`` ...), in the ``blocks.{L}.vace.…`` form (the VACE block attached to main block ``L``,
  mapped through the transformer's ``vace_layers``), or already in diffusers names (``attn1.to_q`` ...);
- factor: ``lora_A`` / ``lora_down`` (optionally ``.default``, PEFT's adapter name), ``lora_B`` /
  ``lora_up``, ``.alpha`` (scale alpha / rank), ``.diff_b`` or ``lora_B.bias`` (a bias delta),
  ``.diff`` (a full weight delta) and ``.diff_m`` (a delta of a block's modulation table).

The renames are those of diffusers' Wan checkpoint conversion (``self_attn.q`` -> ``attn1.to_q``,
``cross_attn`` -> ``attn2``, ``ffn.0`` -> ``ffn.net.0.proj``, ``ffn.2`` -> ``ffn.net.2``,
``before_proj`` / ``after_proj`` -> ``proj_in`` / ``proj_out``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Key prefixes the trainers and UIs add, longest first.
PREFIXES = ("model.diffusion_model.", "diffusion_model.", "pipe.vace.", "pipe.dit.", "transformer.", "model.")

#: Key ending -> factor.
FACTORS = {
    ".lora_A.default.weight": "lora_A",
    ".lora_A.weight": "lora_A",
    ".lora_down.weight": "lora_A",
    ".lora_B.default.weight": "lora_B",
    ".lora_B.weight": "lora_B",
    ".lora_up.weight": "lora_B",
    ".lora_B.default.bias": "bias",
    ".lora_B.bias": "bias",
    ".diff_b": "bias",
    ".alpha": "alpha",
    ".diff": "diff",
}

#: Wan / DiffSynth module names inside a (main or VACE) block -> diffusers names.
BLOCK_MODULES = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    "before_proj": "proj_in",
    "after_proj": "proj_out",
}

#: Wan module names outside the blocks -> diffusers names.
TOP_MODULES = {
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "head.head": "proj_out",
}

_BLOCK = re.compile(r"(?P<kind>vace_blocks|blocks)\.(?P<index>\d+)\.(?P<attached>vace\.)?(?P<rest>.+)")


@dataclass(frozen=True)
class LoraKey:
    """One key of a LoRA file, parsed."""

    key: str  #: as written in the file
    module: str  #: the diffusers module it adapts (checked against the model later)
    factor: str  #: lora_A | lora_B | bias | alpha | diff
    branch: str  #: "vace" | "main"
    names: str  #: "wan" (Wan / DiffSynth module names) | "diffusers"


def strip_prefix(key: str) -> str:
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def parse_key(key: str, vace_layers: tuple[int, ...]) -> LoraKey | None:
    """Parse ``key``; ``None`` when it is no LoRA key in any known spelling.

    A ``blocks.{L}.vace.…`` key whose ``L`` has no VACE block keeps an unmapped module name, so
    the check against the model reports it.
    """
    body = strip_prefix(key)
    if body.endswith(".diff_m"):  # lightx2v-style files: the delta of ``<block>.modulation``
        body = body.removesuffix(".diff_m") + ".modulation.diff"
    ending = next((ending for ending in FACTORS if body.endswith(ending)), None)
    if ending is None:
        return None
    factor, path = FACTORS[ending], body[: -len(ending)]
    block = _BLOCK.fullmatch(path)
    if block is None:
        module = TOP_MODULES.get(path, path)
        return LoraKey(key, module, factor, "main", "wan" if path in TOP_MODULES else "diffusers")
    kind, index, rest = block["kind"], int(block["index"]), block["rest"]
    names = "wan" if rest in BLOCK_MODULES else "diffusers"
    rest = BLOCK_MODULES.get(rest, rest)
    if block["attached"]:
        if index not in vace_layers:
            return LoraKey(key, path, factor, "vace", names)
        return LoraKey(key, f"vace_blocks.{vace_layers.index(index)}.{rest}", factor, "vace", names)
    return LoraKey(key, f"{kind}.{index}.{rest}", factor, "vace" if kind == "vace_blocks" else "main", names)
