"""Recipes: the YAML files that fix every stage's models, thresholds, sizes, steps and seeds.

A recipe is a mapping with a ``name``, a ``seed``, optional ``model_overrides`` (model id -> local
folder or spec, applied to every stage), optional ``torch_threads`` (intra-op threads per worker;
tiny CPU models run fastest with 1), optional ``gpu_class`` (the GPU the estimates are for) and an
ordered ``stages`` mapping of stage name to that stage's ``Config`` fields (as documented on each
stage). These keys of a stage entry belong to the engine and the ``--dry-run`` plan, not to the
stage config:

- ``class``: ``module:Class`` of a stage outside the built-in chain (default: the registered stage);
- ``estimate_seconds``: seconds per sample on the recipe's ``gpu_class``, used by ``--dry-run``;
- ``estimate_source``: where that figure comes from (a published figure, a measurement, a scaling);
- ``pass_rate``: the fraction of the samples reaching the stage that it passes on (filters), so the
  plan can give GPU-minutes per kept sample;
- ``workers``: the most workers (actors) the ray engine may start for the stage.

Strings may contain ``{tiny}``: it is replaced by the folder of the tiny random checkpoints, which is
built on first use (:func:`ditto_hf.testing.tiny.build_tiny_checkpoints`).
"""

from __future__ import annotations

import importlib
import os
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.stage import Resources, Stage, StageConfig

ENGINE_KEYS = ("class", "estimate_seconds", "estimate_source", "pass_rate", "workers")
#: The top-level keys of a recipe and the type of each.
TOP_LEVEL_KEYS: dict[str, Any] = {
    "name": str,
    "description": str,
    "seed": int,
    "gpu_class": str | None,
    "torch_threads": int | None,
    "model_overrides": dict[str, Any] | None,
    "stages": dict,
}
TINY_PLACEHOLDER = "{tiny}"


def bundled_recipes() -> dict[str, Path]:
    """Recipe name -> path of the YAML files shipped in the package."""
    folder = Path(str(resources.files("ditto_hf.generate").joinpath("recipes")))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


@dataclass
class StageSpec:
    """One stage of a recipe: which class, with which config, and the engine hints."""

    name: str
    config: dict[str, Any]
    class_path: str | None = None
    estimate_seconds: float | None = None
    estimate_source: str = ""
    pass_rate: float = 1.0
    workers: int | None = None

    def stage_class(self) -> type[Stage]:
        """The stage class (imported on use, so a worker imports only its own stage).

        The recipe key is the stage's one name (markers, scores, timings, reports): a ``class:``
        entry must sit under the name its class declares.
        """
        if self.class_path is None:
            from ditto_hf.generate.stages import stage_class

            return stage_class(self.name)
        module_name, _, class_name = self.class_path.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise DittoError(f"stage {self.name!r}: cannot import class {self.class_path!r} ({exc})") from exc
        if not (isinstance(cls, type) and issubclass(cls, Stage)):
            raise DittoError(f"stage {self.name!r}: {self.class_path} is not a Stage subclass")
        if cls.name != self.name:
            raise DittoError(f"stage {self.name!r}: class {self.class_path} is the stage {cls.name!r}; use {cls.name!r} as its recipe key")
        return cls

    @property
    def resources(self) -> Resources:
        return self.stage_class().resources

    def build_config(self) -> StageConfig:
        """The stage's typed config; unknown keys are rejected with the list of known ones, values of
        the wrong type with the field, the value and the type its ``Config`` declares."""
        config_class = self.stage_class().Config
        check_types(config_class, self.config, f"recipe stage {self.name!r}")
        try:
            return config_class.from_dict(self.config)
        except DittoError as exc:
            raise DittoError(f"recipe stage {self.name!r}: {exc}") from exc
        except TypeError as exc:
            raise DittoError(f"recipe stage {self.name!r}: bad config ({exc})") from exc

    @property
    def batch_size(self) -> int:
        """Samples per ``process`` call, from the typed config."""
        return max(1, self.build_config().batch_size)


@dataclass
class Recipe:
    """A parsed recipe; ``text`` is the exact YAML (placeholders resolved) a run records."""

    name: str
    seed: int
    stages: list[StageSpec]
    description: str = ""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    torch_threads: int | None = None
    gpu_class: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=False, allow_unicode=True)

    def validate(self) -> None:
        """Import every stage and build every config, so a typo fails before any work starts."""
        for spec in self.stages:
            spec.build_config()

    @classmethod
    def from_mapping(cls, data: dict[str, Any], origin: str) -> Recipe:
        if not isinstance(data, dict) or not isinstance(data.get("stages"), dict) or not data["stages"]:
            raise DittoError(f"{origin}: a recipe needs a non-empty 'stages' mapping (stage name -> config)")
        unknown = sorted(set(data) - set(TOP_LEVEL_KEYS), key=str)
        if unknown:
            raise DittoError(f"{origin}: unknown top-level key(s) {unknown}; a recipe has {', '.join(TOP_LEVEL_KEYS)}")
        for key, expected in TOP_LEVEL_KEYS.items():
            if key in data and not _accepts(expected, data[key]):
                raise DittoError(f"{origin}: {key} must be {_type_name(expected)}, got {data[key]!r}")
        stages = [_stage_spec(name, entry, origin) for name, entry in data["stages"].items()]
        return cls(
            name=str(data.get("name") or Path(origin).stem),
            seed=int(data.get("seed", 0)),
            stages=stages,
            description=str(data.get("description", "")),
            model_overrides=dict(data.get("model_overrides") or {}),
            torch_threads=data.get("torch_threads"),
            gpu_class=str(data.get("gpu_class") or ""),
            data=data,
        )


def _stage_spec(name: str, entry: Any, origin: str) -> StageSpec:
    entry = dict(entry or {})
    if not all(isinstance(key, str) for key in entry):
        raise DittoError(f"{origin}: stage {name!r} has non-string keys")
    engine = {key: entry.pop(key) for key in ENGINE_KEYS if key in entry}
    workers = engine.get("workers")
    estimate = engine.get("estimate_seconds")
    engine_types = (
        ("workers", int | None),
        ("estimate_seconds", float | None),
        ("estimate_source", str | None),
        ("pass_rate", float | None),
        ("class", str | None),
    )
    for key, expected in engine_types:
        if not _accepts(expected, engine.get(key)):
            raise DittoError(f"{origin}: stage {name!r}: {key} must be {_type_name(expected)}, got {engine[key]!r}")
    pass_rate = float(engine.get("pass_rate", 1.0))
    if not 0.0 < pass_rate <= 1.0:
        raise DittoError(f"{origin}: stage {name!r}: pass_rate must be in (0, 1], got {pass_rate}")
    return StageSpec(
        name=name,
        config=entry,
        class_path=engine.get("class"),
        estimate_seconds=None if estimate is None else float(estimate),
        estimate_source=str(engine.get("estimate_source") or ""),
        pass_rate=pass_rate,
        workers=None if workers is None else int(workers),
    )


def load_recipe(name_or_path: str | os.PathLike, *, tiny_root: Path | None = None) -> Recipe:
    """Load a bundled recipe by name (``paper``, ``fast``, ``tiny``) or a YAML file.

    ``{tiny}`` placeholders are resolved to ``tiny_root`` (default: the cached tiny checkpoints,
    built if missing).
    """
    path = _recipe_path(name_or_path)
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DittoError(f"{path}: not valid YAML ({exc})") from exc
    if TINY_PLACEHOLDER in text:
        data = _substitute(data, str(_tiny_root(tiny_root)))
    return Recipe.from_mapping(data, str(path))


def _recipe_path(name_or_path: str | os.PathLike) -> Path:
    bundled = bundled_recipes()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    path = Path(name_or_path)
    if path.is_file():
        return path
    raise DittoError(f"recipe {str(name_or_path)!r} is neither a bundled recipe ({', '.join(bundled)}) nor a YAML file")


def _tiny_root(root: Path | None) -> Path:
    from ditto_hf.tiny import build_tiny_checkpoints, default_tiny_root

    root = Path(root) if root is not None else default_tiny_root()
    build_tiny_checkpoints(root)
    return root


def _substitute(value: Any, tiny_root: str) -> Any:
    if isinstance(value, str):
        return value.replace(TINY_PLACEHOLDER, tiny_root)
    if isinstance(value, dict):
        return {key: _substitute(item, tiny_root) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, tiny_root) for item in value]
    return value


def check_types(config_class: type, values: dict[str, Any], where: str) -> None:
    """Raise naming the field when a recipe value does not have the type ``config_class`` declares."""
    hints = typing.get_type_hints(config_class)
    for key, value in values.items():
        expected = hints.get(key)
        if expected is not None and not _accepts(expected, value):
            raise DittoError(f"{where}: {key} must be {_type_name(expected)}, got {value!r}")


def _accepts(expected: Any, value: Any) -> bool:
    """Whether a YAML value fits a dataclass field type (ints pass for floats; lists for tuples)."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected is Any:
        return True
    if expected is None or expected is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in args)
    if origin is typing.Literal:
        return value in args
    if expected is ModelSpec:
        return isinstance(value, (str, dict, ModelSpec))
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (list, tuple) or expected in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_accepts(arg, item) for arg, item in zip(args, value, strict=True))
        return not args or all(_accepts(args[0], item) for item in value)
    if origin is dict or expected is dict:
        if not isinstance(value, dict):
            return False
        return not args or all(_accepts(args[0], key) and _accepts(args[1], item) for key, item in value.items())
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True  # a type this check does not know: the config itself decides


def _type_name(expected: Any) -> str:
    if typing.get_origin(expected) is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in typing.get_args(expected))
    return getattr(expected, "__name__", None) if isinstance(expected, type) else str(expected).replace("typing.", "")
