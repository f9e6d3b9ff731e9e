"""What ``ditto-hf view SOURCE`` can open, each as a row reader under a :class:`~ditto_hf.view.rows.Catalog`.

- a ``generate`` run directory: kept samples (``manifest.parquet``) and rejected / failed ones
  (``rejected.parquet``, their videos from the resume markers), with the intermediate keyframe,
  edited keyframe and depth video of each sample when present;
- a local parquet file or folder (every ``*.parquet`` under it, in path order);
- a Hub dataset ``REPO[:CONFIG]``: the config's parquet files, read by row group over HTTP;
- the builder ``ditto_1m[:CONFIG]`` on a release root (``--data-dir``), streamed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ditto_hf.errors import DittoError
from ditto_hf.generate.run.rundir import MANIFEST, REJECTED, STATE
from ditto_hf.view.rows import Catalog, ParquetPart, ParquetRows, StreamRows

BUILDER = "ditto_1m"
_REPO = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.+-]+)?$")
#: Run-relative path columns of ``manifest.parquet`` shown as intermediate media.
RUN_PATH_MEDIA = {"keyframe": "keyframe_path", "edited_keyframe": "edited_keyframe_path", "depth": "depth_path"}
#: Fields of a resume marker (``Sample``) shown as media of a rejected sample.
MARKER_MEDIA = {
    "source": "video",
    "edited": "generated",
    "generated": "generated",
    "keyframe": "keyframe",
    "edited_keyframe": "edited_keyframe",
    "depth": "depth",
}


def open_source(source: str, data_dir: str | None = None) -> Catalog:
    """The catalog of ``source``; a one-line :class:`DittoError` says what to pass when it is none of the kinds."""
    name, _, config = source.partition(":")
    if name == BUILDER:
        return builder_catalog(config or None, data_dir)
    if data_dir:
        raise DittoError(f"--data-dir goes with the builder source {BUILDER}:CONFIG, not with {source}")
    path = Path(source)
    if path.is_dir() and ((path / MANIFEST).is_file() or (path / REJECTED).is_file()):
        return run_catalog(path)
    if path.is_dir() or (path.is_file() and path.suffix == ".parquet"):
        return parquet_catalog(path)
    if not path.exists() and _REPO.match(source):
        return hub_catalog(name, config or None)
    raise DittoError(
        f"{source}: not a run directory, a parquet file or folder, a Hub dataset REPO[:CONFIG] or {BUILDER}:CONFIG with --data-dir"
    )


def run_catalog(root: Path) -> Catalog:
    root = root.absolute()
    parts = []
    if (root / MANIFEST).is_file():
        parts.append(
            ParquetPart(
                str(root / MANIFEST),
                lambda: open(root / MANIFEST, "rb"),
                base=root,
                extra={"status": "kept"},
                path_media=run_media,
            )
        )
    if (root / REJECTED).is_file():
        parts.append(
            ParquetPart(
                str(root / REJECTED), lambda: open(root / REJECTED, "rb"), base=root, path_media=lambda record: marker_media(root, record)
            )
        )
    return Catalog(ParquetRows(parts), f"run {root}")


def run_media(record: dict) -> dict[str, str]:
    """The intermediate media of a kept sample; VACE's output too when a refiner replaced it as the edit."""
    media = {name: record.get(column) or "" for name, column in RUN_PATH_MEDIA.items()}
    if record.get("generated_path") and record.get("generated_path") != record.get("edited_path"):
        media["generated"] = record["generated_path"]
    return media


def marker_media(root: Path, record: dict) -> dict[str, str]:
    """The run-relative media of a rejected / failed sample, from its marker after the stage that stopped it."""
    marker = root / STATE / (record.get("stage") or "") / f"{record.get('sample_id')}.json"
    try:
        sample = json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}
    media = {name: sample.get(field) or "" for name, field in MARKER_MEDIA.items()}
    if sample.get("refined"):
        media["edited"] = sample["refined"]
    else:
        media.pop("generated", None)
    return media


def parquet_catalog(path: Path) -> Catalog:
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        raise DittoError(f"{path}: no *.parquet files in this folder (a run directory needs {MANIFEST} or {REJECTED})")
    parts = [ParquetPart(str(file), lambda file=file: open(file, "rb"), base=file.parent) for file in files]
    return Catalog(ParquetRows(parts), str(path))


def hub_catalog(repo_id: str, config: str | None) -> Catalog:
    """A Hub dataset's config, from the parquet files ``datasets`` resolves for it (read by HTTP ranges)."""
    import datasets
    from huggingface_hub import HfFileSystem
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    shown = f"{repo_id}:{config}" if config else repo_id
    try:
        builder = datasets.load_dataset_builder(repo_id, config)
    except (RepositoryNotFoundError, datasets.exceptions.DatasetNotFoundError, FileNotFoundError) as exc:
        raise DittoError(f"{shown}: no such dataset on the Hub (or no access): {str(exc).splitlines()[0]}") from exc
    except (ValueError, HfHubHTTPError) as exc:
        raise DittoError(f"{shown}: {str(exc).splitlines()[0]}") from exc
    urls = [url for split in (builder.config.data_files or {}).values() for url in split]
    if not urls or not all(str(url).endswith(".parquet") for url in urls):
        raise DittoError(f"{shown}: the viewer reads parquet configs only; this config has {len(urls)} non-parquet data file(s)")
    fs = HfFileSystem()
    parts = [ParquetPart(str(url), lambda url=url: fs.open(str(url), "rb")) for url in urls]
    return Catalog(ParquetRows(parts), shown)


def builder_catalog(config: str | None, data_dir: str | None) -> Catalog:
    """The ``ditto_1m`` builder on a release root, streamed."""
    if not data_dir:
        raise DittoError(f"{BUILDER}:{config or 'CONFIG'}: pass --data-dir ROOT (the release root, local path or hf://...)")
    from ditto_1m import Ditto1M

    builder = Ditto1M(config_name=config, data_dir=data_dir) if config else Ditto1M(data_dir=data_dir)
    shown = f"{BUILDER}:{builder.config.name} ({data_dir})"
    return Catalog(StreamRows(builder.as_streaming_dataset("train"), shown), shown)
