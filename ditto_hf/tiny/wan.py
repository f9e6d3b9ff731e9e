"""Tiny random Wan checkpoints: a Wan2.1-VACE pipeline, a Wan2.2 two-expert pipeline and a LoRA.

Component sizes follow diffusers' own Wan pipeline tests; the text encoder is a tiny
``UMT5EncoderModel`` and the tokenizer a ``T5Tokenizer`` built from an in-memory unigram
vocabulary, so nothing is downloaded. Each ``save_tiny_*`` writes a folder laid out like the real
Hub repo (``model_index.json`` + one subfolder per component, safetensors weights) that loads back
through ``from_pretrained``.

Where the real checkpoints' structure matters, the tiny ones copy it: the schedulers are built from
the real repos' ``scheduler_config.json`` and the Wan2.2 pipeline takes ``boundary_ratio`` from the
real ``model_index.json`` (both kept as data in ``configs/<repo name>/``, as diffusers'
``scripts/convert_wan_to_diffusers.py`` writes them: UniPC with flow sigmas and ``flow_shift=3.0``
for Wan2.1-VACE-14B and Wan2.2-T2V-A14B, ``boundary_ratio=0.875`` for the latter), so a stage that
relies on the repo's scheduler defaults gets the real ones in tests too.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

#: Words given a higher unigram score than single characters, so common prompts tokenize to words.
_WORDS = (
    "a", "the", "of", "and", "in", "on", "with", "to", "it", "into", "make", "turn", "change", "add", "remove",
    "replace", "style", "video", "scene", "person", "car", "sky", "tree", "water", "city", "night", "day", "red",
    "blue", "green", "painting", "anime", "sketch", "real", "domain",
)  # fmt: skip
TEXT_DIM = 32  # width of the tiny text encoder = the transformers' text_dim
VACE_LAYERS = (0, 2)
#: Folder of the real repos' configs kept as data (one subfolder per repo, named like the repo).
REAL_CONFIGS = Path(__file__).parent / "configs"
VACE_REPO = "Wan-AI/Wan2.1-VACE-14B-diffusers"
WAN22_REPO = "Wan-AI/Wan2.2-T2V-A14B-Diffusers"


def real_config(repo_id: str, filename: str) -> dict:
    """``filename`` (e.g. ``scheduler_config.json``) of the real Hub repo ``repo_id``, as kept in :data:`REAL_CONFIGS`."""
    return json.loads((REAL_CONFIGS / repo_id.split("/")[-1] / filename).read_text())


#: Wan2.2 A14B T2V: the low-noise expert takes timesteps below boundary_ratio x 1000 (= 875).
BOUNDARY_RATIO = real_config(WAN22_REPO, "model_index.json")["boundary_ratio"]


def tiny_umt5_vocabulary() -> list[tuple[str, float]]:
    """(piece, score) pairs: T5 specials, the word-start marker, printable characters, a few words."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    characters = string.ascii_letters + string.digits + string.punctuation
    pieces += [(character, -5.0) for character in characters]
    pieces += [(f"▁{word}", -1.0) for word in _WORDS]
    return pieces


def tiny_umt5_tokenizer():
    """A ``T5Tokenizer`` (the class the Wan pipelines use for UMT5) over the tiny vocabulary."""
    from transformers import T5Tokenizer

    return T5Tokenizer(vocab=tiny_umt5_vocabulary(), extra_ids=0)


def tiny_umt5_encoder(vocab_size: int):
    """A two-layer ``UMT5EncoderModel`` whose hidden size matches the tiny transformers."""
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(
        vocab_size=vocab_size,
        d_model=TEXT_DIM,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
    )
    torch.manual_seed(0)
    return UMT5EncoderModel(config).eval()


def tiny_wan_vae():
    """An ``AutoencoderKLWan`` with 3 base channels (8x spatial, 4x temporal compression)."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])


def real_scheduler(repo_id: str):
    """The scheduler the real repo ``repo_id`` ships, built from its ``scheduler_config.json``."""
    from diffusers import UniPCMultistepScheduler

    config = real_config(repo_id, "scheduler_config.json")
    if config["_class_name"] != UniPCMultistepScheduler.__name__:
        raise ValueError(f"{repo_id}: unexpected scheduler {config['_class_name']}")
    return UniPCMultistepScheduler.from_config(config)


def _transformer_kwargs() -> dict:
    return {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 2,
        "attention_head_dim": 12,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": TEXT_DIM,
        "freq_dim": 256,
        "ffn_dim": 32,
        "num_layers": 3,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "rope_max_seq_len": 32,
    }


def tiny_wan_vace_transformer(seed: int = 0):
    """A three-block ``WanVACETransformer3DModel`` with control blocks at layers 0 and 2."""
    from diffusers import WanVACETransformer3DModel

    torch.manual_seed(seed)
    # control input = inactive + reactive latents (2 x 16) + the 8x8 pixel mask folded into 64 channels
    return WanVACETransformer3DModel(**_transformer_kwargs(), vace_layers=list(VACE_LAYERS), vace_in_channels=96)


def tiny_wan_transformer(seed: int = 0):
    """A three-block ``WanTransformer3DModel`` (text-to-video expert)."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(**_transformer_kwargs())


def _text_components() -> dict:
    tokenizer = tiny_umt5_tokenizer()
    return {"tokenizer": tokenizer, "text_encoder": tiny_umt5_encoder(len(tokenizer))}


def tiny_wan_vace_pipeline():
    """A ``WanVACEPipeline`` with tiny random components (Wan2.1-VACE layout)."""
    from diffusers import WanVACEPipeline

    return WanVACEPipeline(
        transformer=tiny_wan_vace_transformer(),
        vae=tiny_wan_vae(),
        scheduler=real_scheduler(VACE_REPO),
        **_text_components(),
    )


def tiny_wan_refiner_pipeline():
    """A ``WanPipeline`` with two tiny experts and ``boundary_ratio`` (the Wan2.2 A14B layout:
    ``transformer`` = high-noise expert, ``transformer_2`` = low-noise expert)."""
    from diffusers import WanPipeline

    return WanPipeline(
        transformer=tiny_wan_transformer(seed=0),
        transformer_2=tiny_wan_transformer(seed=1),
        boundary_ratio=BOUNDARY_RATIO,
        vae=tiny_wan_vae(),
        scheduler=real_scheduler(WAN22_REPO),
        **_text_components(),
    )


def save_tiny_wan_vace(directory: Path) -> Path:
    """Save a tiny Wan2.1-VACE pipeline (like ``Wan-AI/Wan2.1-VACE-14B-diffusers``) to ``directory``."""
    directory = Path(directory)
    tiny_wan_vace_pipeline().save_pretrained(directory, safe_serialization=True)
    return directory


def save_tiny_wan_refiner(directory: Path) -> Path:
    """Save a tiny Wan2.2 two-expert pipeline (like ``Wan-AI/Wan2.2-T2V-A14B-Diffusers``)."""
    directory = Path(directory)
    tiny_wan_refiner_pipeline().save_pretrained(directory, safe_serialization=True)
    return directory


def save_tiny_wan_lora(directory: Path, *, rank: int = 4, seed: int = 0) -> Path:
    """Save a random LoRA for the tiny VACE transformer's attention projections.

    The adapter is added with peft, its (non-zero) weights are taken back out with
    ``get_peft_model_state_dict`` and written by ``WanVACEPipeline.save_lora_weights``: the
    diffusers LoRA format, as step-distillation LoRAs are loaded. Returns the ``.safetensors`` path.
    """
    from diffusers import WanVACEPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = tiny_wan_vace_transformer()
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    transformer.add_adapter(config)
    directory = Path(directory)
    WanVACEPipeline.save_lora_weights(directory, transformer_lora_layers=get_peft_model_state_dict(transformer), safe_serialization=True)
    return directory / "pytorch_lora_weights.safetensors"
