"""What LoRA and weight files are checked against: the layers of a Wan transformer.

A :class:`TransformerLayout` lists a transformer's ``nn.Linear`` layers (what a LoRA can adapt), all
its parameter shapes and its ``vace_layers``. It is read from a loaded model, or built from a config
on the ``meta`` device (no weights are read or allocated), so a file can be checked against a 14B
model in well under a second and before anything is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from ditto_hf.errors import DittoError

#: ``transformer/config.json`` of ``Wan-AI/Wan2.1-VACE-14B-diffusers``: the default layout, so a
#: conversion needs no download.
WAN_VACE_14B_TRANSFORMER_CONFIG: dict = {
    "_class_name": "WanVACETransformer3DModel",
    "added_kv_proj_dim": None,
    "attention_head_dim": 128,
    "cross_attn_norm": True,
    "eps": 1e-06,
    "ffn_dim": 13824,
    "freq_dim": 256,
    "image_dim": None,
    "in_channels": 16,
    "num_attention_heads": 40,
    "num_layers": 40,
    "out_channels": 16,
    "patch_size": [1, 2, 2],
    "pos_embed_seq_len": None,
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 1024,
    "text_dim": 4096,
    "vace_in_channels": 96,
    "vace_layers": [0, 5, 10, 15, 20, 25, 30, 35],
}
DEFAULT_LAYOUT_NAME = "Wan2.1-VACE-14B"


@dataclass(frozen=True)
class TransformerLayout:
    """The layers a file is checked against."""

    #: Where the layout comes from (a model id, folder or "Wan2.1-VACE-14B"), for messages.
    name: str
    #: ``nn.Linear`` module name -> ``(out_features, in_features)``.
    linears: dict[str, tuple[int, int]]
    #: Parameter name -> shape, for whole-weight files.
    parameters: dict[str, tuple[int, ...]]
    #: Main-block index each VACE block is attached to (empty for a plain Wan transformer).
    vace_layers: tuple[int, ...]
    num_layers: int

    @classmethod
    def from_module(cls, transformer, name: str = "the pipeline's transformer") -> TransformerLayout:
        """The layout of an instantiated (possibly ``meta``) Wan transformer."""
        import torch

        linears = {}
        for module_name, module in transformer.named_modules():
            base = getattr(module, "base_layer", module)  # a PEFT-wrapped layer keeps its Linear as base_layer
            if isinstance(base, torch.nn.Linear) and ".lora_" not in module_name and not module_name.endswith(".base_layer"):
                linears[module_name] = (base.out_features, base.in_features)
        parameters = {
            key.replace(".base_layer.", "."): tuple(tensor.shape) for key, tensor in transformer.state_dict().items() if ".lora_" not in key
        }
        config = transformer.config
        return cls(name, linears, parameters, tuple(config.get("vace_layers") or ()), int(config["num_layers"]))

    @classmethod
    def from_config(cls, config: dict, name: str) -> TransformerLayout:
        """Instantiate the transformer of ``config`` on the ``meta`` device and read its layout."""
        import torch
        from diffusers import WanTransformer3DModel, WanVACETransformer3DModel

        model_class = WanVACETransformer3DModel if config.get("vace_layers") else WanTransformer3DModel
        try:
            with torch.device("meta"):
                transformer = model_class.from_config(dict(config))
        except (TypeError, ValueError, KeyError) as exc:
            raise DittoError(f"{name}: not a Wan transformer config ({exc})") from exc
        return cls.from_module(transformer, name)

    @classmethod
    def for_model(cls, model: str | None = None) -> TransformerLayout:
        """The layout of ``model`` (a diffusers repo id or folder, or a transformer folder), read from its
        ``transformer/config.json`` only; ``None``: Wan2.1-VACE-14B without any download."""
        if model is None:
            return cls.from_config(WAN_VACE_14B_TRANSFORMER_CONFIG, DEFAULT_LAYOUT_NAME)
        return cls.from_config(read_transformer_config(model), model)

    def describe(self) -> str:
        if not self.vace_layers:
            return f"{self.name} ({self.num_layers} blocks, no VACE branch)"
        return f"{self.name} ({self.num_layers} blocks, VACE blocks at {list(self.vace_layers)})"


def read_transformer_config(model: str) -> dict:
    """``transformer/config.json`` of a pipeline repo or folder (or ``config.json`` of a transformer folder)."""
    from diffusers import WanVACETransformer3DModel
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    failure = None
    for subfolder in ("transformer", None):
        try:
            return dict(WanVACETransformer3DModel.load_config(model, subfolder=subfolder))
        except (OSError, ValueError, HfHubHTTPError, LocalEntryNotFoundError) as exc:
            failure = failure or exc
    first_line = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
    raise DittoError(f"cannot read the transformer config of {model}: {first_line}")
