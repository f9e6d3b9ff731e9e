"""What ``ditto-hf export`` reads: the triplets of a SOURCE, as a stream of :class:`Triplet` s.

SOURCE is one of

- a **generate run directory** (it holds ``manifest.parquet``): its kept triplets, with the edited
  keyframe the ``keyframe`` stage made;
- a **builder config** ``ditto_1m:CONFIG`` with ``data_dir`` (the release, local or ``hf://``):
  the rows of ``training_metadata/<CONFIG>.json``;
- a **datasets source** ``NAME[:CONFIG][@SPLIT]`` (a Hub repo such as a ``ditto-hf mirror`` or a
  published run, or a local folder of parquet files) with ``source`` / ``edited`` video columns and
  an ``instruction`` string column; an ``edited_keyframe`` image column is used when present.

Rows are streamed, never loaded whole; videos stay undecoded until the exporter reads them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ditto_hf.errors import DittoError
from ditto_hf.generate.run.rundir import MANIFEST, RunDir
from ditto_hf.sources import stream_dataset, undecoded

BUILDER_PREFIX = "ditto_1m:"
#: Columns of a datasets row that can hold the edited keyframe image.
KEYFRAME_COLUMNS = ("edited_keyframe",)


@dataclass(frozen=True)
class Triplet:
    """One row to export: its videos (a path or a ``{"bytes", "path"}`` dict), their names inside
    the export folder (shared sources share a name), the instruction and the keyframe if any."""

    key: str
    where: str  # for messages: "runs/r1 sample x", "ditto_1m:local row 3"
    source: object
    source_name: str
    edited: object
    edited_name: str
    instruction: str
    keyframe: object | None = None  # a path, bytes or {"bytes", "path"}; None: the source has none


class TrainingSource:
    """The triplets of one SOURCE, streamed in its own order."""

    def __init__(self, spec: str):
        self.spec = spec

    def triplets(self) -> Iterator[Triplet]:
        raise NotImplementedError

    def count(self) -> int | None:
        """The number of rows, when known without reading them."""
        return None


class RunTrainingSource(TrainingSource):
    """The kept triplets of a finished ``ditto-hf generate`` run."""

    def __init__(self, root: str | os.PathLike):
        super().__init__(os.fspath(root))
        self.run = RunDir(root)
        self.columns = self.run.manifest_columns()

    def count(self) -> int:
        return len(self.columns["sample_id"])

    def triplets(self) -> Iterator[Triplet]:
        columns = self.columns
        for index, sample_id in enumerate(columns["sample_id"]):
            keyframe = columns["edited_keyframe_path"][index]
            yield Triplet(
                key=sample_id,
                where=f"{self.spec} sample {sample_id}",
                source=columns["source"][index],
                source_name=file_name(columns["source_path"][index], columns["source"][index]),
                edited=columns["edited"][index],
                edited_name=file_name(columns["edited_path"][index], columns["edited"][index]),
                instruction=columns["instruction"][index] or "",
                keyframe=str(self.run.root / keyframe) if keyframe else None,
            )


class DatasetTrainingSource(TrainingSource):
    """A ``datasets`` stream of triplet rows (the ``ditto_1m`` builder, a Hub repo, a parquet folder)."""

    def __init__(self, spec: str, stream, split: str = "train"):
        import datasets

        super().__init__(spec)
        features = stream.features or {}
        instruction = features.get("instruction")
        is_text = isinstance(instruction, datasets.Value) and instruction.dtype in ("string", "large_string")
        videos = all(isinstance(features.get(column), datasets.Video) for column in ("source", "edited"))
        if not videos or not is_text:
            raise DittoError(
                f"{spec}: needs 'source' and 'edited' Video columns and an 'instruction' string column "
                f"(columns: {', '.join(features) or 'unknown'})"
            )
        self.keyframe_column = next((column for column in KEYFRAME_COLUMNS if isinstance(features.get(column), datasets.Image)), None)
        self.stream = undecoded(stream)
        self.split = split

    def count(self) -> int | None:
        splits = self.stream.info.splits or {}
        return splits[self.split].num_examples or None if self.split in splits else None

    def triplets(self) -> Iterator[Triplet]:
        for index, row in enumerate(self.stream):
            where = f"{self.spec} row {index}"
            for column in ("source", "edited"):
                if not row[column] or not (row[column].get("bytes") or row[column].get("path")):
                    raise DittoError(f"{where}: the row has no {column} video")
            keyframe = row.get(self.keyframe_column) if self.keyframe_column else None
            yield Triplet(
                key=str(row.get("sample_id") or row.get("edited_path") or f"row-{index:08d}"),
                where=where,
                source=row["source"],
                source_name=file_name(row.get("source_path"), row["source"]),
                edited=row["edited"],
                edited_name=file_name(row.get("edited_path"), row["edited"]),
                instruction=row["instruction"] or "",
                keyframe=keyframe if keyframe and (keyframe.get("bytes") or keyframe.get("path")) else None,
            )


def file_name(path: str | None, video) -> str:
    """The video's relative name in the export folder: its ``source_path`` / ``edited_path`` when
    that is a plain relative path (so one source shared by several edits gets one name), else a
    name made from a digest of its bytes or path."""
    if path:
        parts = PurePosixPath(path.replace("\\", "/")).parts
        if parts and not PurePosixPath(path).is_absolute() and ".." not in parts:
            return str(PurePosixPath(*parts).with_suffix(".mp4"))
    data = video.get("bytes") if isinstance(video, dict) else None
    identity = data or os.fspath(video.get("path") if isinstance(video, dict) else video).encode()
    return f"by-digest/{hashlib.sha256(identity).hexdigest()[:32]}.mp4"


def open_training_source(spec: str, *, data_dir: str | None = None) -> TrainingSource:
    """The :class:`TrainingSource` for a SOURCE argument (a run directory, ``ditto_1m:CONFIG`` or a datasets source)."""
    path = Path(spec)
    if data_dir and not spec.startswith(BUILDER_PREFIX):
        raise DittoError(f"--data-dir is for a builder SOURCE ({BUILDER_PREFIX}CONFIG), not {spec!r}")
    if path.is_dir() and (path / MANIFEST).is_file():
        return RunTrainingSource(path)
    if spec.startswith(BUILDER_PREFIX):
        import ditto_1m

        config = spec[len(BUILDER_PREFIX) :] or ditto_1m.DEFAULT_CONFIG_NAME
        kwargs = {"data_dir": data_dir} if data_dir else {}
        try:
            stream = ditto_1m.Ditto1M(config_name=config, **kwargs).as_streaming_dataset("train")
        except ValueError as exc:
            raise DittoError(f"{spec}: {(str(exc).strip().splitlines() or [''])[0]}") from exc
        return DatasetTrainingSource(spec, stream)
    if path.is_dir() and not any(file.suffix in (".parquet", ".arrow") for file in path.rglob("*")):
        raise DittoError(f"SOURCE {spec}: a folder without {MANIFEST} or parquet files; give a run directory, ditto_1m:CONFIG or a dataset")
    stream, split = stream_dataset(spec, f"SOURCE {spec!r} is not a run directory, {BUILDER_PREFIX}CONFIG or a loadable dataset")
    return DatasetTrainingSource(spec, stream, split)
