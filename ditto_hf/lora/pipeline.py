"""LoRAs (and whole-weight files) into a diffusers Wan pipeline, in two steps.

:func:`prepare_adapters` finds, reads, converts and checks every file against a
:class:`~ditto_hf.lora.layout.TransformerLayout` (which needs only the model's config), so a bad
file fails before a 14B model is loaded; :func:`apply_adapters` then loads the converted LoRAs with
diffusers' ``load_lora_weights`` (one adapter per file) and weights them with ``set_adapters``.
:func:`load_adapters` does both on an already loaded pipeline. Several adapters work together
(e.g. a Ditto LoRA on the VACE branch and a CausVid LoRA on the main blocks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ditto_hf.errors import DittoError
from ditto_hf.lora.convert import ConvertedLora, convert_lora
from ditto_hf.lora.files import read_weights, resolve_weights_file
from ditto_hf.lora.layout import TransformerLayout
from ditto_hf.lora.weights import convert_weights, describe_weights, is_lora, load_weights


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA (or whole VACE-branch weights) to load, and its weight."""

    #: A ``.safetensors`` file, a folder, or a Hub model repo id.
    source: str
    #: The file inside a folder or repo (optional for a folder holding one ``.safetensors``).
    weight_name: str | None = None
    #: The adapter weight given to ``set_adapters`` (DiffSynth's ``alpha``).
    scale: float = 1.0
    #: The adapter's name in the pipeline.
    adapter_name: str = "lora"
    revision: str | None = None


@dataclass(frozen=True)
class PreparedAdapter:
    """A spec, its file, and the file converted for one transformer layout."""

    spec: LoraSpec
    path: str
    #: The converted LoRA, or ``None`` for a whole-weight file.
    lora: ConvertedLora | None = None
    #: Parameter name -> tensor of a whole-weight file.
    weights: dict[str, torch.Tensor] | None = None

    def describe(self) -> str:
        if self.lora is not None:
            return f"{self.lora.describe()}, weight {self.spec.scale:g}"
        return describe_weights(self.weights, self.name)

    @property
    def name(self) -> str:
        """The file as the user named it: a local path, or ``repo/file`` on the Hub."""
        if Path(self.spec.source).expanduser().exists():
            return self.path
        return f"{self.spec.source}/{self.spec.weight_name}"


def prepare_adapters(specs: Sequence[LoraSpec], layout: TransformerLayout) -> list[PreparedAdapter]:
    """Resolve, read, convert and check every spec against ``layout``; nothing is loaded."""
    names = [spec.adapter_name for spec in specs]
    if len(set(names)) != len(names):
        raise DittoError(f"adapter names must differ, got {names}")
    prepared = []
    for spec in specs:
        adapter = PreparedAdapter(spec, str(resolve_weights_file(spec.source, spec.weight_name, revision=spec.revision)))
        state_dict = read_weights(adapter.path)
        if is_lora(state_dict):
            prepared.append(replace(adapter, lora=convert_lora(state_dict, layout, source=adapter.name)))
            continue
        if spec.scale != 1.0:
            raise DittoError(f"{adapter.name}: whole weights (not a LoRA) cannot be weighted, got weight {spec.scale:g}")
        prepared.append(replace(adapter, weights=convert_weights(state_dict, layout, source=adapter.name)))
    return prepared


def apply_adapters(pipeline, prepared: Sequence[PreparedAdapter]) -> None:
    """Load the prepared files into ``pipeline.transformer``: whole weights first, then each LoRA as its
    own adapter (skipped when an adapter of that name is already loaded), then ``set_adapters``."""
    for adapter in prepared:
        if adapter.weights is not None:
            load_weights(pipeline.transformer, adapter.weights)
    loras = [adapter for adapter in prepared if adapter.lora is not None]
    if not loras:
        return
    loaded = set(pipeline.get_list_adapters().get("transformer", []))
    for adapter in loras:
        if adapter.spec.adapter_name not in loaded:
            pipeline.load_lora_weights(dict(adapter.lora.state_dict), adapter_name=adapter.spec.adapter_name)
    pipeline.set_adapters([adapter.spec.adapter_name for adapter in loras], [adapter.spec.scale for adapter in loras])


def load_adapters(pipeline, specs: Sequence[LoraSpec]) -> list[PreparedAdapter]:
    """Convert ``specs`` for ``pipeline.transformer`` and load them (see :func:`apply_adapters`)."""
    prepared = prepare_adapters(specs, TransformerLayout.from_module(pipeline.transformer))
    apply_adapters(pipeline, prepared)
    return prepared
