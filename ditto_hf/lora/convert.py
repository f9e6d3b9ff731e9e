"""Convert a Wan LoRA state dict of any known spelling to diffusers' names, checked against a transformer.

The result is what ``pipe.load_lora_weights`` reads natively: ``transformer.<module>.lora_A.weight``
/ ``lora_B.weight`` (and ``lora_B.bias``) with no alpha. Scales are folded into ``lora_A`` the way
DiffSynth merges a file: a key with ``.alpha`` is scaled by ``alpha / rank``, a key without one by 1
(DiffSynth trains with PEFT at alpha = rank). diffusers loads alpha-free files with alpha = rank, so
``set_adapters(name, w)`` gives ``W + w * B @ A``, DiffSynth's ``W += w * B @ A``.

Nothing is dropped silently: every key is placed on a layer of the model, folded in, or (deltas
``.diff`` / ``.diff_b`` / ``.diff_m`` of parameters outside linear layers -- norms, modulation tables,
convolutions -- which no LoRA layer can carry; diffusers' own Wan conversion skips them too) checked
against the model's parameter and reported in :attr:`ConvertedLora.dropped`. Anything else is a
:class:`LoraMismatchError` naming the file and the keys, raised before any model is touched.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from ditto_hf.errors import DittoError
from ditto_hf.lora.keys import LoraKey, parse_key, strip_prefix
from ditto_hf.lora.layout import TransformerLayout

#: How many offending keys an error message lists before "... and N more".
LISTED_KEYS = 6


class LoraMismatchError(DittoError):
    """A LoRA or weights file does not fit the transformer (keys it cannot place, shapes that do not fit)."""


def mismatch_error(source: str, layout: TransformerLayout, problems: list[str]) -> LoraMismatchError:
    shown = "; ".join(problems[:LISTED_KEYS])
    more = f"; ... and {len(problems) - LISTED_KEYS} more" if len(problems) > LISTED_KEYS else ""
    return LoraMismatchError(f"{source} does not fit {layout.describe()}: {len(problems)} problem(s): {shown}{more}")


@dataclass(frozen=True)
class ConvertedLora:
    """A LoRA in diffusers' names, alpha folded in, checked against a transformer."""

    #: The file (or name) it came from.
    source: str
    #: ``transformer.<module>.lora_A.weight`` / ``.lora_B.weight`` / ``.lora_B.bias`` tensors.
    state_dict: dict[str, torch.Tensor]
    #: The spelling the file used, in words.
    spelling: str
    #: Adapted module -> rank.
    ranks: dict[str, int]
    #: Which parts of the transformer it adapts: ``"vace"`` (the VACE branch) and/or ``"main"``.
    branches: tuple[str, ...]
    #: Deltas of parameters outside linear layers (norms, modulation, convolutions) that LoRA layers
    #: cannot carry (keys as in the file); each names a parameter of the model, with its shape.
    dropped: tuple[str, ...] = ()
    #: Largest absolute value among the dropped deltas (0: they changed nothing).
    dropped_max: float = 0.0

    def describe(self) -> str:
        ranks = sorted(set(self.ranks.values()))
        rank = f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {ranks[0]}-{ranks[-1]}"
        where = " and ".join({"vace": "the VACE branch", "main": "the main blocks"}[branch] for branch in self.branches)
        text = f"{self.source}: {self.spelling}, {len(self.ranks)} layers ({rank}) on {where}"
        if self.dropped:
            text += (
                f"; ignored {len(self.dropped)} weight delta(s) of parameters outside linear layers (norms, modulation, "
                f"convolutions), which LoRA layers cannot carry (largest |delta| {self.dropped_max:.3g})"
            )
        return text


def convert_lora(state_dict: dict[str, torch.Tensor], layout: TransformerLayout, *, source: str) -> ConvertedLora:
    """Convert ``state_dict`` (any known spelling) for the transformer ``layout`` describes.

    Raises :class:`LoraMismatchError` listing every key that names no layer of the model, every
    factor without its partner and every shape that does not fit.
    """
    if not state_dict:
        raise DittoError(f"{source}: the file holds no tensors")
    problems: list[str] = []
    modules: dict[str, dict[str, tuple[LoraKey, torch.Tensor]]] = defaultdict(dict)
    for key, tensor in state_dict.items():
        parsed = parse_key(key, layout.vace_layers)
        if parsed is None:
            problems.append(f"{key}: not a LoRA key")
        elif parsed.factor in modules[parsed.module]:
            problems.append(f"{key}: same layer as {modules[parsed.module][parsed.factor][0].key}")
        else:
            modules[parsed.module][parsed.factor] = (parsed, tensor)

    converted: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    dropped: list[tuple[str, torch.Tensor]] = []
    for module, factors in modules.items():
        if module not in layout.linears:
            if set(factors) <= {"diff", "bias"}:
                module_problems = _parameter_delta_problems(module, factors, layout)
                problems += module_problems
                dropped += [] if module_problems else [(parsed.key, tensor) for parsed, tensor in factors.values()]
            else:
                problems += [f"{parsed.key}: no layer {module} in the model" for parsed, _ in factors.values()]
            continue
        tensors, module_problems = _lora_factors(module, factors, layout.linears[module])
        if module_problems:
            problems += module_problems
            continue
        for name, tensor in tensors.items():
            converted[f"transformer.{module}.{name}"] = tensor
        ranks[module] = tensors["lora_A.weight"].shape[0]
    if problems:
        raise mismatch_error(source, layout, problems)
    if not converted:
        raise DittoError(f"{source}: no LoRA layers found (only weight deltas of norm/modulation parameters)")
    _add_zero_biases(converted)
    parsed_keys = [parsed for factors in modules.values() for parsed, _ in factors.values()]
    return ConvertedLora(
        source=source,
        state_dict=converted,
        spelling=_spelling(parsed_keys),
        ranks=ranks,
        branches=tuple(branch for branch in ("vace", "main") if any(key.branch == branch for key in parsed_keys if key.module in ranks)),
        dropped=tuple(key for key, _ in dropped),
        dropped_max=max((tensor.abs().max().item() for _, tensor in dropped), default=0.0),
    )


def _lora_factors(module: str, factors: dict, shape: tuple[int, int]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``lora_A.weight`` / ``lora_B.weight`` (/ ``lora_B.bias``) of one layer, or the problems found."""
    out_features, in_features = shape
    key = {factor: parsed.key for factor, (parsed, _) in factors.items()}
    tensor = {factor: value for factor, (_, value) in factors.items()}
    down, up, bias, diff, alpha = (tensor.get(name) for name in ("lora_A", "lora_B", "bias", "diff", "alpha"))
    if diff is not None:
        if down is not None or up is not None:
            return {}, [f"{key['diff']}: a full weight delta and LoRA factors for the same layer {module}"]
        if tuple(diff.shape) != shape:
            return {}, [f"{key['diff']}: shape {_shape(diff)}, the layer {module} is {out_features}x{in_features}"]
        down, up = _delta_as_lora(diff)
    elif down is None and up is None and bias is not None:
        down, up = bias.new_zeros(1, in_features), bias.new_zeros(out_features, 1)  # a bias delta alone
    if down is None or up is None:
        present, missing = ("lora_A", "lora_B") if down is not None else ("lora_B", "lora_A")
        first = key.get(present) or key.get("alpha") or next(iter(key.values()))
        return {}, [f"{first}: {missing} missing for the layer {module}"]
    problems = []
    if down.ndim != 2 or down.shape[1] != in_features:
        problems.append(f"{key.get('lora_A', key.get('diff'))}: shape {_shape(down)}, the layer {module} wants rank x {in_features}")
    if up.ndim != 2 or up.shape[0] != out_features or (down.ndim == 2 and up.shape[1] != down.shape[0]):
        problems.append(f"{key.get('lora_B', key.get('diff'))}: shape {_shape(up)}, the layer {module} wants {out_features} x rank")
    if bias is not None and tuple(bias.shape) != (out_features,):
        problems.append(f"{key['bias']}: shape {_shape(bias)}, the layer {module} has {out_features} outputs")
    if alpha is not None and alpha.numel() != 1:
        problems.append(f"{key['alpha']}: an alpha must be one number, got shape {_shape(alpha)}")
    if problems:
        return {}, problems
    if alpha is not None:
        down = down * (alpha.reshape(()) / down.shape[0])  # DiffSynth's (and ComfyUI's) alpha / rank
    tensors = {"lora_A.weight": down, "lora_B.weight": up}
    if bias is not None:
        tensors["lora_B.bias"] = bias
    return tensors, []


def _parameter_delta_problems(module: str, factors: dict, layout: TransformerLayout) -> list[str]:
    """Deltas of a module that is no linear layer must each name a parameter of the model, with its shape."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    problems = []
    for factor, (parsed, tensor) in factors.items():
        candidates = [f"{module}.bias"] if factor == "bias" else [module, f"{module}.weight"]  # a table or a layer's weight
        if not parsed.key.startswith("transformer."):  # Wan names -> diffusers names, as single-file loading renames them
            candidates = [next(iter(convert_wan_transformer_to_diffusers({name: tensor}))) for name in candidates]
        name = next((name for name in candidates if name in layout.parameters), None)
        if name is None:
            problems.append(f"{parsed.key}: no parameter {module} in the model")
        elif tuple(tensor.shape) != layout.parameters[name]:
            problems.append(f"{parsed.key}: shape {_shape(tensor)}, the model's {name} is {'x'.join(map(str, layout.parameters[name]))}")
    return problems


def _delta_as_lora(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A full weight delta ``D`` (out x in) as an exact LoRA ``B @ A`` of rank ``min(out, in)``."""
    out_features, in_features = delta.shape
    if out_features <= in_features:
        return delta, torch.eye(out_features, dtype=delta.dtype)
    return torch.eye(in_features, dtype=delta.dtype), delta


def _add_zero_biases(converted: dict[str, torch.Tensor]) -> None:
    """PEFT gives every ``lora_B`` a bias once one layer has one: make the others explicit zeros."""
    if not any(key.endswith(".lora_B.bias") for key in converted):
        return
    for key in [key for key in converted if key.endswith(".lora_B.weight")]:
        bias_key = key.removesuffix(".weight") + ".bias"
        if bias_key not in converted:
            converted[bias_key] = converted[key].new_zeros(converted[key].shape[0])


def _spelling(keys: list[LoraKey]) -> str:
    if all(key.names == "diffusers" for key in keys):
        return "diffusers names"
    originals = [key.key for key in keys]
    bodies = [strip_prefix(key) for key in originals]
    parts = ["Wan/DiffSynth names"]
    if any(".vace." in body and body.startswith("blocks.") for body in bodies):
        parts.append("VACE blocks as blocks.L.vace")
    parts.append("lora_down/lora_up" if any(".lora_down." in key for key in originals) else "lora_A/lora_B")
    if any(key.factor == "alpha" for key in keys):
        parts.append("alpha")
    prefixes = {key[: len(key) - len(body)] for key, body in zip(originals, bodies, strict=True)} - {""}
    if prefixes:
        parts.append("prefix " + ", ".join(sorted(prefixes)))
    return ", ".join(parts)


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(str(size) for size in tensor.shape) or "scalar"
