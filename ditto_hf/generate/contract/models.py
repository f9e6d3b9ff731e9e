"""One registry through which every stage loads its models.

A :class:`ModelSpec` names a model by Hub id or local directory, with revision, dtype, device,
offload policy and an optional :class:`Quantization`; the recipe can override any of them, so every
stage can point at local folders. Weights load from safetensors only and ``trust_remote_code`` is
never enabled.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from ditto_hf.errors import DittoError

Offload = Literal["none", "model", "sequential"]

#: ``Quantization.type`` -> torchao config class (weight-only ``wo``, dynamic activation + weight ``dq``).
TORCHAO_TYPES = {
    "int8wo": "Int8WeightOnlyConfig",
    "int8dq": "Int8DynamicActivationInt8WeightConfig",
    "float8wo": "Float8WeightOnlyConfig",
    "float8dq": "Float8DynamicActivationFloat8WeightConfig",
}
#: float8 kernels need a CUDA GPU with compute capability 8.9+ (Ada, Hopper and later).
FLOAT8_MIN_CAPABILITY = (8, 9)


@dataclass(frozen=True)
class Quantization:
    """Weights quantised on load by diffusers' / transformers' own ``quantization_config`` (torchao).

    ``int8wo`` runs everywhere (CPU included); ``float8wo`` / ``float8dq`` need a GPU with compute
    capability 8.9+. For a pipeline, only ``components`` are quantised (the big transformers by
    default; add ``text_encoder`` for UMT5 / Qwen2.5-VL); a single model is quantised whole.
    """

    backend: Literal["torchao"] = "torchao"
    type: str = "int8wo"
    components: tuple[str, ...] = ("transformer", "transformer_2")
    #: Module names kept in full precision (passed as ``modules_to_not_convert``).
    skip_modules: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.backend != "torchao":
            raise DittoError(f"quantization backend {self.backend!r} is not supported; use 'torchao'")
        if self.type not in TORCHAO_TYPES:
            raise DittoError(f"quantization type {self.type!r} is unknown; choose one of {', '.join(TORCHAO_TYPES)}")
        object.__setattr__(self, "components", tuple(self.components))
        object.__setattr__(self, "skip_modules", tuple(self.skip_modules))

    @classmethod
    def coerce(cls, value: Quantization | dict | str | None) -> Quantization | None:
        """Accept a quantization, a mapping of its fields (as in recipes), a bare type, or None."""
        if value is None or isinstance(value, Quantization):
            return value
        if isinstance(value, str):
            return cls(type=value)
        return cls(**value)

    @property
    def needs_float8_gpu(self) -> bool:
        return self.type.startswith("float8")

    def check_device(self, model_id: str, device: str) -> None:
        """Raise a one-line :class:`DittoError` when the device cannot run this quantization."""
        if not self.needs_float8_gpu:
            return
        import torch

        if not device.startswith("cuda"):
            raise DittoError(
                f"model {model_id}: quantization {self.type} runs on CUDA GPUs with compute capability "
                f"{FLOAT8_MIN_CAPABILITY[0]}.{FLOAT8_MIN_CAPABILITY[1]}+ only, not on {device}; use type int8wo there"
            )
        capability = torch.cuda.get_device_capability(torch.device(device))
        if capability < FLOAT8_MIN_CAPABILITY:
            raise DittoError(
                f"model {model_id}: quantization {self.type} needs compute capability 8.9+ (L40S, H100, ...), "
                f"this GPU has {capability[0]}.{capability[1]}; use type int8wo"
            )

    def config(self, library: str):
        """The ``TorchAoConfig`` of ``library`` (``diffusers`` or ``transformers``)."""
        if library == "diffusers":
            from diffusers import TorchAoConfig
        else:
            from transformers import TorchAoConfig
        return TorchAoConfig(self._torchao_config(), modules_to_not_convert=list(self.skip_modules) or None)

    def quantize(self, module) -> None:
        """Quantise an already loaded ``module`` in place with torchao's own ``quantize_`` (e.g. after a
        LoRA was fused into its weights, which a quantised model cannot take)."""
        from torchao.quantization import quantize_

        def selected(layer, name: str) -> bool:
            import torch

            return isinstance(layer, torch.nn.Linear) and not any(name == skip or name.startswith(f"{skip}.") for skip in self.skip_modules)

        quantize_(module, self._torchao_config(), filter_fn=selected)

    def _torchao_config(self):
        try:
            import torchao.quantization as torchao_quantization
        except ImportError as exc:
            raise DittoError(f"quantization needs torchao: pip install 'ditto-hf[quant]' ({exc})") from exc
        return getattr(torchao_quantization, TORCHAO_TYPES[self.type])()


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from and how to place it."""

    id: str
    revision: str | None = None
    subfolder: str | None = None
    dtype: str = "auto"  # "auto" = bfloat16 on CUDA, float32 on CPU; or float32 / bfloat16 / float16
    device: str = "auto"  # "auto" = cuda if available else cpu
    offload: Offload = "none"  # diffusers CPU offload policy on CUDA
    quantization: Quantization | None = None  # weights quantised on load (see Quantization)

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantization", Quantization.coerce(self.quantization))

    @classmethod
    def coerce(cls, value: ModelSpec | str | dict) -> ModelSpec:
        """Accept a spec, a bare id, or a mapping of spec fields (as written in recipes)."""
        if isinstance(value, ModelSpec):
            return value
        if isinstance(value, str):
            return cls(id=value)
        return cls(**value)

    def with_overrides(self, **changes: Any) -> ModelSpec:
        return replace(self, **{key: value for key, value in changes.items() if value is not None})

    def to_dict(self) -> dict:
        return asdict(self)

    def without_quantization(self, **changes: Any) -> ModelSpec:
        """This spec in full precision (e.g. the VAE next to a quantised transformer), with ``changes``."""
        return replace(self.with_overrides(**changes), quantization=None)

    def resolved_device(self) -> str:
        import torch

        if self.device != "auto":
            return self.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    def resolved_dtype(self):
        import torch

        if self.dtype == "auto":
            return torch.bfloat16 if self.resolved_device().startswith("cuda") else torch.float32
        return getattr(torch, self.dtype)


class ModelRegistry:
    """Loads models from specs and shares instances between stages of one process.

    ``overrides`` maps a model id (as a recipe names it) to another spec, e.g. a local directory,
    so a user can redirect any stage without editing the recipe.
    """

    def __init__(self, overrides: dict[str, ModelSpec | str | dict] | None = None):
        self.overrides = {key: ModelSpec.coerce(value) for key, value in (overrides or {}).items()}
        self._cache: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def resolve(self, spec: ModelSpec | str | dict) -> ModelSpec:
        spec = ModelSpec.coerce(spec)
        override = self.overrides.get(spec.id)
        return spec if override is None else override

    def load(self, loader: Any, spec: ModelSpec | str | dict, **kwargs: Any) -> Any:
        """``loader.from_pretrained(spec.id, ...)`` with safetensors only, placed on the spec's device.

        ``loader`` is any transformers / diffusers class with ``from_pretrained`` (a model, a
        pipeline, a processor). Results are cached per (loader, spec, kwargs).
        """
        spec = self.resolve(spec)
        key = (loader, spec, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._load(loader, spec, kwargs)
            return self._cache[key]

    def _load(self, loader: Any, spec: ModelSpec, kwargs: dict[str, Any]) -> Any:
        options: dict[str, Any] = {"revision": spec.revision}
        if spec.subfolder:
            options["subfolder"] = spec.subfolder
        is_processor = any(word in loader.__name__ for word in ("Processor", "Tokenizer", "FeatureExtractor"))
        is_pipeline = loader.__module__.startswith("diffusers") and "Pipeline" in loader.__name__
        if not is_processor:
            options["use_safetensors"] = True
            options["dtype"] = spec.resolved_dtype()  # transformers 5 and diffusers 0.42 both take `dtype`
        device = spec.resolved_device()
        if spec.quantization is not None and not is_processor:
            spec.quantization.check_device(spec.id, device)
            quantization_config = quantization_config_for(loader, spec, is_pipeline, kwargs)
            if quantization_config is not None:
                options["quantization_config"] = quantization_config
        options.update(kwargs)
        if options.get("trust_remote_code"):
            raise ValueError("trust_remote_code is never enabled by ditto-hf")
        model = loader.from_pretrained(spec.id, **options)
        if is_processor:
            return model
        if is_pipeline and device.startswith("cuda") and spec.offload == "model":
            model.enable_model_cpu_offload()
        elif is_pipeline and device.startswith("cuda") and spec.offload == "sequential":
            model.enable_sequential_cpu_offload()
        elif hasattr(model, "to"):
            model = model.to(device)
        if hasattr(model, "eval") and not is_pipeline:
            model.eval()
        return model

    def clear(self) -> None:
        """Drop cached models (engines call this in teardown)."""
        with self._lock:
            self._cache.clear()


def quantization_config_for(loader: Any, spec: ModelSpec, is_pipeline: bool, passed: dict[str, Any]):
    """The ``quantization_config`` argument of ``loader.from_pretrained`` for ``spec.quantization``.

    A model gets its library's ``TorchAoConfig``; a diffusers pipeline a ``PipelineQuantizationConfig``
    mapping each listed component it loads itself (not those passed in ``passed``) to the config of the
    component's library, as named in the repo's ``model_index.json``. None when nothing is left to quantise.
    """
    quantization = spec.quantization
    if not is_pipeline:
        return quantization.config("diffusers" if loader.__module__.startswith("diffusers") else "transformers")
    from diffusers import PipelineQuantizationConfig

    index = loader.load_config(spec.id, revision=spec.revision)
    accepted = inspect.signature(loader.__init__).parameters
    mapping = {
        component: quantization.config(index[component][0])
        for component in quantization.components
        if component in accepted and component not in passed and isinstance(index.get(component), list)
    }
    return PipelineQuantizationConfig(quant_mapping=mapping) if mapping else None
