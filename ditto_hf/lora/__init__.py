"""Wan LoRAs of every known spelling in diffusers: the Ditto LoRAs, DiffSynth and ComfyUI files.

- :func:`convert_lora`: any spelling -> diffusers names, alpha folded in (DiffSynth's merge), checked
  against a :class:`TransformerLayout` (unplaceable keys and misfit shapes are one error);
- :func:`write_diffusers_lora`: a file plain ``pipe.load_lora_weights(path)`` reads;
- :func:`load_adapters` (= :func:`prepare_adapters` + :func:`apply_adapters`): files into a pipeline
  as named, weighted adapters; whole VACE-branch weight files are loaded as weights.

This package knows nothing of the generation chain or the editing pipeline; both use it.
"""

from ditto_hf.lora.convert import ConvertedLora, LoraMismatchError, convert_lora
from ditto_hf.lora.files import read_weights, resolve_weights_file, write_diffusers_lora
from ditto_hf.lora.layout import WAN_VACE_14B_TRANSFORMER_CONFIG, TransformerLayout
from ditto_hf.lora.pipeline import LoraSpec, PreparedAdapter, apply_adapters, load_adapters, prepare_adapters
from ditto_hf.lora.weights import convert_weights, is_lora, load_weights

__all__ = [
    "WAN_VACE_14B_TRANSFORMER_CONFIG",
    "ConvertedLora",
    "LoraMismatchError",
    "LoraSpec",
    "PreparedAdapter",
    "TransformerLayout",
    "apply_adapters",
    "convert_lora",
    "convert_weights",
    "is_lora",
    "load_adapters",
    "load_weights",
    "prepare_adapters",
    "read_weights",
    "resolve_weights_file",
    "write_diffusers_lora",
]
