"""Official ``.pth`` checkpoints → safetensors, once, and the shared ``from_pretrained``.

Video Depth Anything and CoTracker3 are released as pickled PyTorch state dicts. They are read in
exactly one place, :func:`load_torch_checkpoint` (``torch.load(weights_only=True)``: tensors only,
no code runs), checked against the architecture, and written as ``model.safetensors`` — the
official tensor names and values, unchanged — next to a ``config.json`` that records the
architecture's sizes and the weights' licence. Everything else loads safetensors only.

``from_pretrained(id)`` accepts a folder or Hub repo holding ``model.safetensors`` + ``config.json``
(what ``python -m ditto_hf.models.convert`` writes, uploadable as is), an official ``.pth`` file, or
a folder / Hub repo holding the official file (e.g. ``depth-anything/Video-Depth-Anything-Small``,
``facebook/cotracker3``). An official file is converted on first use into
``$DITTO_HF_CACHE/converted/`` (default ``~/.cache/ditto_hf/converted/``), keyed by the file, and
read from there afterwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ditto_hf.errors import DittoError

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


# -- the one-time conversion ------------------------------------------------------------------------
def load_torch_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth`` state dict, read with ``torch.load(weights_only=True)``.

    The only place the project unpickles weights. A ``{"model": ...}`` or ``{"state_dict": ...}``
    wrapper (training checkpoints) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise DittoError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DittoError(f"{path}: not a PyTorch state dict torch.load(weights_only=True) can read ({reason})") from exc
    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise DittoError(f"{path}: holds no state dict of tensors (got {type(state).__name__})")
    return dict(state)


def _atomic_write(target: Path, write: Callable[[str], None]) -> None:
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        write(tmp_name)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def save_weights(directory: str | os.PathLike, state: dict[str, torch.Tensor], config: dict, metadata: dict | None = None) -> Path:
    """Write ``directory/model.safetensors`` and ``directory/config.json`` (each atomically)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().contiguous().cpu() for key, value in state.items()}
    target = directory / WEIGHTS_NAME
    _atomic_write(target, lambda name: save_file(tensors, name, metadata={"format": "pt", **(metadata or {})}))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    _atomic_write(directory / CONFIG_NAME, lambda name: Path(name).write_text(text))
    return target


def read_weights(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and config a :func:`save_weights` folder holds."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise DittoError(
            f"{directory}: {WEIGHTS_NAME} has no {CONFIG_NAME} next to it; convert the checkpoint with python -m ditto_hf.models.convert"
        )
    return load_file(str(directory / WEIGHTS_NAME)), json.loads(config_path.read_text())


def cache_root() -> Path:
    """``$DITTO_HF_CACHE`` or ``$XDG_CACHE_HOME/ditto_hf`` (default ``~/.cache/ditto_hf``)."""
    if os.environ.get("DITTO_HF_CACHE"):
        return Path(os.environ["DITTO_HF_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ditto_hf"


def converted_once(checkpoint: Path, convert: Callable[[Path, Path], Any]) -> Path:
    """The cache folder holding ``checkpoint`` converted by ``convert(checkpoint, folder)``.

    Keyed by the file's real path, size and modification time; built in a scratch folder and
    renamed into place, so concurrent or interrupted conversions never leave half a folder.
    """
    stat, real = checkpoint.stat(), checkpoint.resolve()
    key = hashlib.sha256(f"{real}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_root() / "converted" / f"{checkpoint.stem}-{key}"
    if (target / WEIGHTS_NAME).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        convert(checkpoint, scratch / "model")
        os.replace(scratch / "model", target)
    except OSError:
        if not (target / WEIGHTS_NAME).is_file():  # another process may have won the race
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info("converted %s to safetensors in %s", checkpoint, target)
    return target


def resolve_checkpoint_folder(
    model_id: str,
    *,
    revision: str | None,
    subfolder: str | None,
    official_files: tuple[str, ...],
    convert: Callable[[Path, Path], Any],
    what: str,
) -> Path:
    """A folder with ``model.safetensors`` + ``config.json`` for ``model_id`` (see the module docstring)."""
    how = f"convert an official checkpoint with `python -m ditto_hf.models.convert` (expected files: {', '.join(official_files)})"
    if not model_id:
        raise DittoError(f"{what}: no weights configured; point `model` at a folder or Hub repo, or {how}")
    path = Path(model_id).expanduser()
    if path.is_file():
        return converted_once(path, convert)
    if path.is_dir():
        folder = path / (subfolder or "")
        if (folder / WEIGHTS_NAME).is_file():
            return folder
        for name in official_files:
            if (folder / name).is_file():
                return converted_once(folder / name, convert)
        raise DittoError(f"{folder}: holds neither {WEIGHTS_NAME} nor an official {what} checkpoint; {how}")
    if model_id.startswith((".", "/", "~")) or model_id.count("/") != 1:
        raise DittoError(f"{path}: no such {what} weights folder or file; {how} (or give a Hub repo id owner/name)")
    return _from_hub(model_id, revision=revision, subfolder=subfolder, official_files=official_files, convert=convert, what=what)


def _from_hub(model_id: str, *, revision, subfolder, official_files, convert, what) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    def download(name: str) -> Path:
        return Path(hf_hub_download(model_id, name, subfolder=subfolder, revision=revision))

    last_miss: Exception | None = None
    try:
        try:
            weights = download(WEIGHTS_NAME)
            download(CONFIG_NAME)
            return weights.parent
        except EntryNotFoundError as exc:
            last_miss = exc
        for name in official_files:
            try:
                checkpoint = download(name)
            except EntryNotFoundError as exc:
                last_miss = exc
                continue
            return converted_once(checkpoint, convert)
    except DittoError:
        raise
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: one clear line
        raise DittoError(f"{what}: cannot get weights from {model_id!r} (not a local path; Hub: {type(exc).__name__}: {exc})") from exc
    from huggingface_hub.errors import LocalEntryNotFoundError

    if isinstance(last_miss, LocalEntryNotFoundError):
        raise DittoError(
            f"{what}: cannot get weights from {model_id!r}: not in the local Hub cache, and the Hub is offline (HF_HUB_OFFLINE) "
            "or unreachable; download them once online, or point `model` at a local folder"
        )
    raise DittoError(f"{what}: {model_id!r} holds neither {WEIGHTS_NAME} + {CONFIG_NAME} nor any of {', '.join(official_files)}")


# -- configs and the model base ---------------------------------------------------------------------
@dataclasses.dataclass
class ArchitectureConfig:
    """Sizes of an architecture, stored as ``config.json`` next to the weights."""

    architecture: ClassVar[str]

    #: Licence of the weights (``None`` for random weights); a non-commercial one is logged on load.
    license: str | None = None

    def to_dict(self) -> dict:
        return {"architecture": self.architecture, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> ArchitectureConfig:
        data = dict(data)
        found = data.pop("architecture", cls.architecture)
        if found != cls.architecture:
            raise DittoError(f"these weights are a {found!r} checkpoint, not {cls.architecture!r}")
        hints = typing.get_type_hints(cls)
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DittoError(f"{cls.architecture} config: unknown field(s) {unknown}")
        for name, value in data.items():
            if isinstance(value, list) and "tuple" in str(hints.get(name)):
                data[name] = tuple(value)
        return cls(**data)


class OfficialCheckpointModel(nn.Module):
    """An architecture whose weights keep the official checkpoint's tensor names on disk.

    Subclasses set ``config_class`` and ``official_files``, take their config as the only
    constructor argument, and translate names both ways in :meth:`from_official` /
    :meth:`to_official` (identity by default).
    """

    config_class: ClassVar[type[ArchitectureConfig]]
    official_files: ClassVar[tuple[str, ...]]

    def __init__(self, config: ArchitectureConfig):
        super().__init__()
        self.config = config

    # -- names ---------------------------------------------------------------------------------
    @classmethod
    def from_official(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official tensor names → this module's ``state_dict`` names."""
        return dict(state)

    @classmethod
    def to_official(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This module's ``state_dict`` names → the official tensor names."""
        return dict(state)

    @classmethod
    def config_from_official(cls, state: dict[str, torch.Tensor], filename: str, **hints: Any) -> ArchitectureConfig:
        """The config of an official checkpoint, read from its tensor shapes, file name and ``hints``."""
        raise NotImplementedError

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        return self.to_official(self.state_dict())

    # -- conversion ----------------------------------------------------------------------------
    @classmethod
    def convert_checkpoint(
        cls, checkpoint: str | os.PathLike, output: str | os.PathLike, config: ArchitectureConfig | None = None, **hints: Any
    ) -> Path:
        """Check an official ``.pth`` against the architecture and write it as safetensors + config.

        Without ``config`` it is read from the checkpoint (:meth:`config_from_official` with ``hints``).
        """
        checkpoint = Path(checkpoint)
        state = load_torch_checkpoint(checkpoint)
        config = config or cls.config_from_official(state, checkpoint.name, **hints)
        with torch.device("meta"):
            expected = {key: tuple(value.shape) for key, value in cls(config).official_state_dict().items()}
        found = {key: tuple(value.shape) for key, value in state.items()}
        problems = [f"missing {key}" for key in expected if key not in found]
        problems += [f"unexpected {key}" for key in found if key not in expected]
        problems += [
            f"{key} has shape {found[key]}, expected {shape}" for key, shape in expected.items() if key in found and found[key] != shape
        ]
        if problems:
            more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            raise DittoError(f"{checkpoint}: not a {config.architecture} checkpoint: {'; '.join(problems[:3])}{more}")
        return save_weights(output, state, config.to_dict(), metadata={"architecture": config.architecture, "source": checkpoint.name})

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the weights under their official names as ``model.safetensors`` + ``config.json``."""
        save_weights(directory, self.official_state_dict(), self.config.to_dict(), metadata={"architecture": self.config.architecture})
        return Path(directory)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model_id: str,
        *,
        revision: str | None = None,
        subfolder: str | None = None,
        dtype: torch.dtype | None = None,
        use_safetensors: bool = True,
        official_files: tuple[str, ...] | None = None,
    ):
        """Load from a converted folder / Hub repo, or convert an official checkpoint once (cached).

        ``official_files`` overrides which official file names are looked for (first found wins).
        """
        if not use_safetensors:
            raise ValueError("ditto-hf loads weights from safetensors only")
        what = cls.config_class.architecture
        folder = resolve_checkpoint_folder(
            model_id,
            revision=revision,
            subfolder=subfolder,
            official_files=tuple(official_files or cls.official_files),
            convert=lambda checkpoint, output: cls.convert_checkpoint(checkpoint, output),
            what=what,
        )
        state, config_dict = read_weights(folder)
        try:
            config = cls.config_class.from_dict(config_dict)
        except DittoError as exc:
            raise DittoError(f"{folder}: {exc}") from exc
        with torch.device("meta"):
            model = cls(config)
        try:
            model.load_state_dict(cls.from_official(state), strict=True, assign=True)
        except RuntimeError as exc:
            raise DittoError(f"{folder}: weights do not fit {what} with its config.json ({str(exc).splitlines()[0]})") from exc
        if config.license and "NC" in config.license.upper():
            logger.warning("%s weights from %s are licensed %s: non-commercial use only", what, model_id, config.license)
        model = model.to(dtype) if dtype is not None else model
        return model.eval()
