"""Finding, reading and writing LoRA / weights files (safetensors only)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from ditto_hf.errors import DittoError
from ditto_hf.lora.convert import ConvertedLora

_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


def resolve_weights_file(source: str | os.PathLike, weight_name: str | None = None, *, revision: str | None = None) -> Path:
    """The local path of a weights file given as a ``.safetensors`` path, a folder (+ ``weight_name``,
    optional when the folder holds one ``.safetensors``) or a Hub model repo + ``weight_name``
    (downloaded with ``huggingface_hub.hf_hub_download``, cached)."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if weight_name:
            if not (path / weight_name).is_file():
                raise DittoError(f"{path / weight_name}: no such file")
            return path / weight_name
        candidates = sorted(path.glob("*.safetensors"))
        if len(candidates) != 1:
            names = ", ".join(candidate.name for candidate in candidates) or "none"
            raise DittoError(f"{path}: name the weights file to use (safetensors files there: {names})")
        return candidates[0]
    if path.suffix or not _REPO_ID.fullmatch(str(source)):
        raise DittoError(f"{source}: no such file or folder")
    if not weight_name:
        raise DittoError(f"{source}: name the file inside the Hub repo to download (weight_name)")
    return download(str(source), weight_name, revision=revision)


def download(repo_id: str, filename: str, *, revision: str | None = None) -> Path:
    """``hf_hub_download`` with its failures (offline, missing repo or file, network) as one-line errors."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DittoError(f"cannot download {filename} from the Hub repo {repo_id}: {reason}") from exc


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a ``.safetensors`` file (the only format read)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise DittoError(f"{path}: weights are read from .safetensors files only")
    if not path.is_file():
        raise DittoError(f"{path}: no such file")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as exc:
        raise DittoError(f"{path}: not a readable safetensors file ({exc})") from exc


def write_diffusers_lora(lora: ConvertedLora, path: str | os.PathLike) -> Path:
    """Write ``lora`` with diffusers' ``save_lora_weights`` (the file ``pipe.load_lora_weights(path)``
    reads without ditto-hf). The file appears atomically."""
    from diffusers import WanVACEPipeline

    path = Path(path)
    if path.suffix != ".safetensors":
        raise DittoError(f"{path}: the output must be a .safetensors file")
    path.parent.mkdir(parents=True, exist_ok=True)
    layers = {key.removeprefix("transformer."): tensor.contiguous() for key, tensor in lora.state_dict.items()}
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))
    try:
        WanVACEPipeline.save_lora_weights(scratch, transformer_lora_layers=layers, weight_name=path.name, safe_serialization=True)
        os.replace(scratch / path.name, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path
