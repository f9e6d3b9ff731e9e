"""One registry through which every stage loads its models.

A :class:`ModelSpec` names a model by Hub id or local directory, with revision, dtype, device and
offload policy; the recipe can override any of them, so every stage can point at local folders.
Weights load from safetensors only and ``trust_remote_code`` is never enabled.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

Offload = Literal["none", "model", "sequential"]


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from and how to place it."""

    id: str
    revision: str | None = None
    subfolder: str | None = None
    dtype: str = "auto"  # "auto" = bfloat16 on CUDA, float32 on CPU; or float32 / bfloat16 / float16
    device: str = "auto"  # "auto" = cuda if available else cpu
    offload: Offload = "none"  # diffusers CPU offload policy on CUDA

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
        options.update(kwargs)
        if options.get("trust_remote_code"):
            raise ValueError("trust_remote_code is never enabled by ditto-hf")
        model = loader.from_pretrained(spec.id, **options)
        if is_processor:
            return model
        device = spec.resolved_device()
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
