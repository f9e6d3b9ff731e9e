"""LoRA and weight files in every known Wan spelling for the tiny VACE transformer, and the
DiffSynth way of merging them, written independently of ``ditto_hf.lora``.

Wan's original module names of a diffusers state dict come from :func:`wan_names`; each renaming
is checked against diffusers' own single-file conversion (``convert_wan_transformer_to_diffusers``),
so the reference merge happens in the original names, exactly as DiffSynth merges a file into its
``vace`` module (``W += alpha * B @ A``, ``A`` scaled by ``.alpha / rank`` when the file has alphas).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from ditto_hf.tiny.wan import VACE_LAYERS

#: What the Ditto LoRAs adapt in each VACE block (DiffSynth's lora_target_modules "q,k,v,o,ffn.0,ffn.2").
BLOCK_TARGETS = tuple(f"{attn}.{p}" for attn in ("self_attn", "cross_attn") for p in "qkvo") + ("ffn.0", "ffn.2")
DIFFUSERS_TARGETS = dict(
    zip(
        BLOCK_TARGETS,
        [f"{attn}.{p}" for attn in ("attn1", "attn2") for p in ("to_q", "to_k", "to_v", "to_out.0")] + ["ffn.net.0.proj", "ffn.net.2"],
        strict=True,
    )
)
TINY_DIM, TINY_FFN = 24, 32  # the tiny transformers' width and feed-forward width

#: spelling -> (key template, factor names, with alpha): {block} is "vace_blocks.{i}" or "blocks.{L}.vace".
SPELLINGS = {
    "diffsynth": ("vace_blocks.{i}.{m}.{f}", ("lora_A.default.weight", "lora_B.default.weight"), False),
    "diffsynth-prefixed": ("diffusion_model.vace_blocks.{i}.{m}.{f}", ("lora_A.default.weight", "lora_B.default.weight"), False),
    "vace-attached": ("blocks.{L}.vace.{m}.{f}", ("lora_A.weight", "lora_B.weight"), False),
    "down-up-alpha": ("vace_blocks.{i}.{m}.{f}", ("lora_down.weight", "lora_up.weight"), True),
    "comfy-main": ("diffusion_model.blocks.{i}.{m}.{f}", ("lora_down.weight", "lora_up.weight"), True),
    "diffusers": ("transformer.vace_blocks.{i}.{d}.{f}", ("lora_A.weight", "lora_B.weight"), False),
}


def _shape(target: str) -> tuple[int, int]:
    """(out, in) of a block layer of the tiny transformers."""
    return {"ffn.0": (TINY_FFN, TINY_DIM), "ffn.2": (TINY_DIM, TINY_FFN)}.get(target, (TINY_DIM, TINY_DIM))


def lora_state_dict(spelling: str, *, rank: int = 4, alpha: float = 8.0, seed: int = 0, scale: float = 0.05) -> dict[str, torch.Tensor]:
    """Random LoRA factors for every VACE block (main blocks 0-2 for ``comfy-main``) of the tiny transformer.

    ``comfy-main`` also carries what ComfyUI files extracted from a fine-tune carry: bias deltas
    (``diff_b``) on some layers and zero-valued deltas of norms and modulation tables (``norm3.diff``,
    ``norm3.diff_b``, ``diff_m``).
    """
    template, (down_name, up_name), with_alpha = SPELLINGS[spelling]
    generator = torch.Generator().manual_seed(seed)
    blocks = range(3) if spelling == "comfy-main" else range(len(VACE_LAYERS))
    state = {}
    for index in blocks:
        for target in BLOCK_TARGETS:
            out_features, in_features = _shape(target)
            attached_to = VACE_LAYERS[index] if spelling != "comfy-main" else index
            fields = {"i": index, "L": attached_to, "m": target, "d": DIFFUSERS_TARGETS[target]}
            state[template.format(**fields, f=down_name)] = torch.randn(rank, in_features, generator=generator) * scale
            state[template.format(**fields, f=up_name)] = torch.randn(out_features, rank, generator=generator) * scale
            if with_alpha:
                state[template.format(**fields, f="alpha")] = torch.tensor(alpha)
        if spelling == "comfy-main":
            state[f"diffusion_model.blocks.{index}.ffn.2.diff_b"] = torch.randn(TINY_DIM, generator=generator) * scale
            state[f"diffusion_model.blocks.{index}.norm3.diff"] = torch.zeros(TINY_DIM)
            state[f"diffusion_model.blocks.{index}.norm3.diff_b"] = torch.zeros(TINY_DIM)
            state[f"diffusion_model.blocks.{index}.diff_m"] = torch.zeros(1, 6, TINY_DIM)
    return state


def write_lora(path: Path, spelling: str, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(lora_state_dict(spelling, **options), str(path))
    return path


# --- Wan's original names and the DiffSynth merge ------------------------------------------------------------

_TO_WAN = [
    (r"\.attn1\.to_out\.0\.", ".self_attn.o."),
    (r"\.attn2\.to_out\.0\.", ".cross_attn.o."),
    (r"\.attn1\.to_([qkv])\.", r".self_attn.\1."),
    (r"\.attn2\.to_([qkv])\.", r".cross_attn.\1."),
    (r"\.attn1\.norm_([qk])\.", r".self_attn.norm_\1."),
    (r"\.attn2\.norm_([qk])\.", r".cross_attn.norm_\1."),
    (r"\.ffn\.net\.0\.proj\.", ".ffn.0."),
    (r"\.ffn\.net\.2\.", ".ffn.2."),
    (r"^(vace_blocks\.\d+)\.proj_in\.", r"\1.before_proj."),
    (r"^(vace_blocks\.\d+)\.proj_out\.", r"\1.after_proj."),
    (r"^((?:vace_)?blocks\.\d+)\.scale_shift_table$", r"\1.modulation"),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"^condition_embedder\.time_embedder\.linear_([12])\.", lambda m: f"time_embedding.{2 * int(m[1]) - 2}."),
    (r"^condition_embedder\.text_embedder\.linear_([12])\.", lambda m: f"text_embedding.{2 * int(m[1]) - 2}."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
]


def wan_name(diffusers_name: str) -> str:
    """Wan's original name of a diffusers parameter (norm2 and norm3 trade places)."""
    name = re.sub(r"\.norm([23])\.", lambda m: ".norm" + {"2": "3", "3": "2"}[m[1]] + ".", diffusers_name)
    for pattern, replacement in _TO_WAN:
        name = re.sub(pattern, replacement, name)
    return name


def wan_names(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` under Wan's original names, checked against diffusers' single-file conversion."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    original = {wan_name(name): tensor for name, tensor in state_dict.items()}
    back = convert_wan_transformer_to_diffusers(dict(original))
    assert set(back) == set(state_dict), f"renaming disagrees with diffusers: {sorted(set(back) ^ set(state_dict))[:6]}"
    return original


def diffsynth_merge(transformer, lora: dict[str, torch.Tensor], weight: float = 1.0) -> dict[str, torch.Tensor]:
    """The diffusers state dict of ``transformer`` after merging ``lora`` the DiffSynth way, in Wan's names.

    DiffSynth's ``GeneralLoRALoader``: the target is the key without its ``lora_B`` / ``lora_up``
    (and ``default``) part and without ``diffusion_model.``; ``W += weight * B @ (A * alpha / rank)``.
    ComfyUI adds ``diff_b`` to the bias the same way. ``blocks.{L}.vace.`` names the VACE block of
    main block ``L``; diffusers-named files are merged in diffusers' names.
    """
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    diffusers_named = any(key.startswith("transformer.") for key in lora)
    weights = {name: tensor.clone() for name, tensor in transformer.state_dict().items()}
    if not diffusers_named:
        weights = wan_names(weights)
    for key, up in lora.items():
        match = re.fullmatch(r"(?:diffusion_model\.|transformer\.)?(.+)\.(lora_B|lora_up)(?:\.default)?\.weight", key)
        if match:
            target = _vace_target(match[1])
            down = lora[key.replace(match[2], {"lora_B": "lora_A", "lora_up": "lora_down"}[match[2]])]
            alpha_key = key[: key.index(f".{match[2]}")] + ".alpha"
            if alpha_key in lora:
                down = down * (lora[alpha_key] / down.shape[0])
            weights[f"{target}.weight"] += weight * torch.mm(up, down)
        elif key.endswith(".diff_b"):
            weights[_vace_target(key.removeprefix("diffusion_model.").removesuffix(".diff_b")) + ".bias"] += weight * lora[key]
    return weights if diffusers_named else convert_wan_transformer_to_diffusers(weights)


def _vace_target(name: str) -> str:
    attached = re.fullmatch(r"blocks\.(\d+)\.vace\.(.+)", name)
    return f"vace_blocks.{VACE_LAYERS.index(int(attached[1]))}.{attached[2]}" if attached else name


def write_vace_branch(path: Path, transformer, *, prefix: str = "") -> Path:
    """The VACE branch of ``transformer`` as a whole-weight file in Wan's names (the ComfyUI layout)."""
    original = wan_names(transformer.state_dict())
    branch = {prefix + name: tensor.contiguous() for name, tensor in original.items() if name.startswith(("vace_blocks.", "vace_patch"))}
    save_file(branch, str(path))
    return path


def transformer_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    """Fixed inputs of one tiny VACE transformer call (2 latent frames of 4x4)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "hidden_states": torch.randn(1, 16, 2, 4, 4, generator=generator),
        "timestep": torch.tensor([500]),
        "encoder_hidden_states": torch.randn(1, 8, 32, generator=generator),
        "control_hidden_states": torch.randn(1, 96, 2, 4, 4, generator=generator),
    }


def run_transformer(transformer, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return transformer(**inputs, return_dict=False)[0]
