"""Where a run's source clips come from: a folder, a list file, or a ``datasets`` source.

``discover_samples(src, run)`` returns one :class:`Sample` per source clip with a stable id, so
rerunning the same command finds the same samples (and their resume markers):

- a folder: every video file below it (sorted);
- a list file (``.txt`` / ``.lst`` / ``.list``): one path per line, relative to the file's folder,
  ``#`` starts a comment;
- a single video file;
- anything else is opened with ``datasets.load_dataset(NAME, split=SPLIT, streaming=True)``
  (written ``NAME``, ``NAME@SPLIT`` or ``NAME:CONFIG@SPLIT``, e.g. a Hub dataset id); the first
  ``Video`` column is used and each clip is copied to ``RUN_DIR/inputs/``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.run.rundir import RunDir, atomic_write

logger = logging.getLogger(__name__)
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
LIST_EXTENSIONS = (".txt", ".lst", ".list")


def discover_samples(src: str | os.PathLike | None, run: RunDir, limit: int | None = None) -> list[Sample]:
    """The samples of a run, at most ``limit``; ``src=None`` means the bundled sample clips."""
    if src is None:
        from ditto_hf.samples import sample_dir

        src = sample_dir()
    path = Path(src)
    videos = _videos_in(path) if path.is_dir() else []
    if videos:
        samples = (_local_sample(video) for video in videos)
    elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
        samples = (_local_sample(video) for video in _list_file(path))
    elif path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
        samples = iter([_local_sample(path)])
    else:
        samples = _dataset_samples(str(src), run)
    found = list(islice(_unique(samples), limit))
    if not found:
        raise DittoError(f"{src}: no source videos found (looked for {', '.join(VIDEO_EXTENSIONS)})")
    return found


def _unique(samples: Iterator[Sample]) -> Iterator[Sample]:
    """Drop repeated sources (same id), logging each one."""
    seen: set[str] = set()
    for sample in samples:
        if sample.sample_id in seen:
            logger.warning("skipping %s: listed more than once", sample.input_path)
            continue
        seen.add(sample.sample_id)
        yield sample


def count_sources(src: str | os.PathLike | None, limit: int | None = None) -> int | None:
    """How many clips a run on ``src`` would use (``None``: unknown), copying and writing nothing.

    Raises the same one-line error a run would when ``src`` does not resolve (no such folder, a bad
    line in a list file, a dataset that cannot be opened or has no ``Video`` column)."""
    path = Path(src) if src is not None else None
    if path is None or path.is_file() or (path.is_dir() and _videos_in(path)):
        return len(discover_samples(src, RunDir(os.devnull), limit))
    stream = _open_stream(str(src))
    _video_column(stream.features, str(src))
    splits = stream.info.splits or {}
    split = _parse_dataset_source(str(src))[2]
    total = splits[split].num_examples if split in splits else None
    return total if limit is None or total is None else min(limit, total)


def sample_id_for(name: str, key: str) -> str:
    """A readable, stable id: the file stem (slugged) plus a short hash of ``key``."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(name).stem).strip("-")[:40] or "clip"
    return f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def _local_sample(path: Path) -> Sample:
    path = path.absolute()
    return Sample(sample_id=sample_id_for(path.name, str(path)), input_path=str(path))


def _videos_in(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file())


def _list_file(path: Path) -> Iterator[Path]:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        video = Path(entry) if Path(entry).is_absolute() else path.parent / entry
        if not video.is_file():
            raise DittoError(f"{path}:{number}: {entry!r} is not a file; fix or remove the line")
        yield video


def _dataset_samples(src: str, run: RunDir) -> Iterator[Sample]:
    """Stream a ``datasets`` source and copy each clip into ``RUN_DIR/inputs/``."""
    import datasets

    stream = _open_stream(src)
    column = _video_column(stream.features, src)
    stream = stream.cast_column(column, datasets.Video(decode=False))
    for index, row in enumerate(stream):
        yield _materialise(row[column], index, src, run)


def _open_stream(src: str):
    """``NAME[:CONFIG][@SPLIT]`` opened with ``datasets.load_dataset(..., streaming=True)``."""
    import datasets

    name, config, split = _parse_dataset_source(src)
    try:
        return datasets.load_dataset(name, config, split=split, streaming=True)
    except Exception as exc:
        message = " ".join(str(exc).split())[:300]
        from ditto_hf.registration import unregistered_hint

        what = f"{type(exc).__name__}: {message}{unregistered_hint(name)}"
        raise DittoError(f"--input {src!r} is not a folder, list file, video or loadable dataset ({what})") from exc


def _parse_dataset_source(src: str) -> tuple[str, str | None, str]:
    name, _, split = src.partition("@")
    name, _, config = name.partition(":")
    return name, config or None, split or "train"


def _video_column(features, src: str) -> str:
    import datasets

    columns = [name for name, feature in (features or {}).items() if isinstance(feature, datasets.Video)]
    if not columns:
        raise DittoError(f"--input {src!r}: the dataset has no Video column (columns: {', '.join(features or {}) or 'unknown'})")
    return columns[0]


def _materialise(cell: dict, index: int, src: str, run: RunDir) -> Sample:
    name = cell.get("path") or f"row{index:08d}.mp4"
    sample_id = sample_id_for(name, f"{src}#{index}:{name}")
    relative = f"inputs/{sample_id}{Path(name).suffix or '.mp4'}"
    target = run.root / relative
    if not target.exists():
        data = cell.get("bytes")
        if data is None:
            if not (cell.get("path") and os.path.isfile(cell["path"])):
                raise DittoError(f"--input {src!r}, row {index}: the video has neither bytes nor a readable path")
            data = Path(cell["path"]).read_bytes()
        atomic_write(target, data)
    return Sample(sample_id=sample_id, input_path=relative)
