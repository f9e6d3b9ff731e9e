"""What ``ditto-hf eval`` scores: the edits of one system, as a stream of :class:`Edit` s.

EDITED is one of

- a **folder of videos** with an instruction file: JSONL lines
  ``{"video": "<file name>", "instruction": "...", "source": "<optional file>", "category": "<optional>"}``
  (``file_name`` is accepted for ``video``, as in a ``datasets`` ``metadata.jsonl``; without
  ``--instructions`` the folder's own ``metadata.jsonl`` is used). ``source`` is relative to
  ``--source`` if given, else to the instruction file's folder; with ``--source`` and no ``source``
  field, the source is the file of the same name under ``--source``;
- a **generate run directory** (it holds ``manifest.parquet``): its kept triplets;
- a **datasets source** ``NAME[:CONFIG][@SPLIT]`` (a Hub repo, or a local folder of parquet / arrow
  files without a ``metadata.jsonl``), streamed: columns ``edited`` (a ``datasets.Video``) and
  ``instruction`` (a string), optional ``source`` (read when it is a ``datasets.Video``) and
  ``category`` (a string or a ``ClassLabel``).

An edit that cannot be scored (a listed video that is missing, a video without an instruction, no
edited video in a row) carries its ``problem``; the evaluator turns it into an error or a counted skip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ditto_hf.errors import DittoError
from ditto_hf.generate.run.inputs import VIDEO_EXTENSIONS
from ditto_hf.generate.run.rundir import MANIFEST, RECIPE, RunDir
from ditto_hf.sources import stream_dataset
from ditto_hf.video import VideoSource

FOLDER_METADATA = "metadata.jsonl"
#: Files that make a folder a local dataset (``datasets.load_dataset(folder)``) rather than a folder of videos.
DATASET_FILE_EXTENSIONS = (".parquet", ".arrow")


@dataclass(frozen=True)
class Edit:
    """One edited video to score, with its instruction and (if known) its source and category."""

    edit_id: str
    where: str  # where it comes from, for messages: "instructions.jsonl:3", "runs/r1 sample x", "org/repo:cfg row 7"
    edited: VideoSource | None
    instruction: str
    source: VideoSource | None = None
    category: str = ""
    problem: str = ""  # why it cannot be scored ("" when nothing is known to be wrong)


class EditedSource:
    """The edits of one system (a folder, a run, a dataset), named for the results table."""

    kind: str = ""

    def __init__(self, location: str):
        self.location = location
        self.name = Path(location.rstrip("/")).name or location

    def edits(self) -> Iterator[Edit]:
        raise NotImplementedError

    def count(self) -> int | None:
        """How many edits :meth:`edits` yields, when known without reading them."""
        return None


@dataclass(frozen=True)
class Instruction:
    """One line of an instruction file."""

    video: str
    instruction: str
    source: str
    category: str
    line: int


def read_instructions(path: Path) -> list[Instruction]:
    """Parse a JSONL instruction file; a malformed line or a repeated video is an error naming the line."""
    if not path.is_file():
        raise DittoError(f"{path}: no such instruction file")
    entries: list[Instruction] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DittoError(f"{where}: not a JSON object ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise DittoError(f"{where}: not a JSON object")
        video = row.get("video", row.get("file_name"))
        if not isinstance(video, str) or not video.strip():
            raise DittoError(f'{where}: needs a "video" field naming the edited file')
        for key in ("instruction", "source", "category"):
            if row.get(key) is not None and not isinstance(row[key], str):
                raise DittoError(f'{where}: "{key}" must be a string, got {type(row[key]).__name__}')
        video = str(PurePosixPath(video.strip()))
        if video in first_line:
            raise DittoError(
                f"{where}: {video!r} is listed again (first at line {first_line[video]}); give one instruction per edited video"
            )
        first_line[video] = number
        entries.append(
            Instruction(video, (row.get("instruction") or "").strip(), row.get("source") or "", row.get("category") or "", number)
        )
    return entries


def videos_in(folder: Path) -> dict[str, Path]:
    """The videos below ``folder`` by their ``/``-separated relative name, sorted."""
    found = (path for path in folder.rglob("*") if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file())
    return {path.relative_to(folder).as_posix(): path for path in sorted(found)}


class FolderSource(EditedSource):
    """A folder of edited videos and a JSONL file of their instructions (and sources)."""

    kind = "folder"

    def __init__(self, folder: str | os.PathLike, instructions: str | os.PathLike | None = None, sources: str | os.PathLike | None = None):
        super().__init__(os.fspath(folder))
        self.folder = Path(folder)
        default = self.folder / FOLDER_METADATA
        if instructions is None and not default.is_file():
            raise DittoError(
                f"{self.folder}: no instructions for its videos; give --instructions FILE "
                '(JSONL lines {"video": "<file name>", "instruction": "...", "source": "<optional file>"})'
            )
        self.instructions = Path(instructions) if instructions is not None else default
        self.sources = Path(sources) if sources is not None else None
        if self.sources is not None and not self.sources.is_dir():
            raise DittoError(f"--source {self.sources}: not a folder of source videos")
        self.entries = read_instructions(self.instructions)

    def count(self) -> int:
        listed = {entry.video for entry in self.entries}
        return len(self.entries) + len(set(videos_in(self.folder)) - listed)

    def edits(self) -> Iterator[Edit]:
        videos = videos_in(self.folder)
        for entry in self.entries:
            path = self.folder / entry.video
            where = f"{self.instructions}:{entry.line}"
            problem = "" if path.is_file() else f"missing video {path}"
            if not problem and not entry.instruction:
                problem = f"no instruction for {entry.video}"
            yield Edit(entry.video, where, str(path), entry.instruction, self.source_of(entry), entry.category, problem)
        listed = {entry.video for entry in self.entries}
        for name, path in videos.items():
            if name not in listed:
                yield Edit(name, str(path), str(path), "", problem=f"no instruction for it in {self.instructions}")

    def source_of(self, entry: Instruction) -> str | None:
        if entry.source:
            source = Path(entry.source)
            return str(source if source.is_absolute() else (self.sources or self.instructions.parent) / source)
        return str(self.sources / entry.video) if self.sources is not None else None


class RunSource(EditedSource):
    """The kept triplets of a finished ``ditto-hf generate`` run directory."""

    kind = "run"

    def __init__(self, root: str | os.PathLike):
        super().__init__(os.fspath(root))
        self.run = RunDir(root)
        self.columns = self.run.manifest_columns()

    def count(self) -> int:
        return len(self.columns["sample_id"])

    def edits(self) -> Iterator[Edit]:
        columns = self.columns
        for index, sample_id in enumerate(columns["sample_id"]):
            yield Edit(
                sample_id,
                f"{self.location} sample {sample_id}",
                columns["edited"][index],
                (columns["instruction"][index] or "").strip(),
                columns["source"][index],
                columns["category"][index] or "",
                "" if (columns["instruction"][index] or "").strip() else "no instruction in the manifest",
            )


class DatasetSource(EditedSource):
    """A ``datasets`` source ``NAME[:CONFIG][@SPLIT]`` with the triplet columns, streamed row by row."""

    kind = "dataset"

    def __init__(self, spec: str):
        import datasets

        super().__init__(spec)
        self.name = spec
        not_loadable = f"EDITED {spec!r} is not a folder of videos, a run directory or a loadable dataset"
        stream, self.split = stream_dataset(spec, not_loadable)
        features = stream.features or {}
        instruction = features.get("instruction")
        is_text = isinstance(instruction, datasets.Value) and instruction.dtype in ("string", "large_string")
        if not isinstance(features.get("edited"), datasets.Video) or not is_text:
            raise DittoError(
                f"{spec}: needs an 'edited' Video column and an 'instruction' string column (columns: {', '.join(features) or 'unknown'})"
            )
        self.has_source = isinstance(features.get("source"), datasets.Video)  # a source given as a path string is not read
        category = features.get("category")
        self.category_name = category.int2str if isinstance(category, datasets.ClassLabel) else str
        self.stream = stream

    def count(self) -> int | None:
        splits = self.stream.info.splits or {}
        return splits[self.split].num_examples or None if self.split in splits else None

    def edits(self) -> Iterator[Edit]:
        for index, row in enumerate(self.stream):
            yield self._edit(index, row)

    def _edit(self, index: int, row: dict) -> Edit:
        edited = row["edited"] if row["edited"] and (row["edited"].get("bytes") or row["edited"].get("path")) else None
        edit_id = str(row.get("edited_path") or row.get("sample_id") or (edited or {}).get("path") or f"row {index}")
        instruction = (row.get("instruction") or "").strip()
        problem = "the row has no edited video" if edited is None else ("" if instruction else "the row has no instruction")
        source = row.get("source") if self.has_source else None
        source = source if source and (source.get("bytes") or source.get("path")) else None
        category = self.category_name(row["category"]) if row.get("category") is not None else ""
        return Edit(edit_id, f"{self.location} row {index}", edited, instruction, source, category, problem)


def is_run_directory(path: Path) -> bool:
    return (path / MANIFEST).is_file() or (path / RECIPE).is_file()


def is_dataset_directory(path: Path) -> bool:
    """A local dataset folder (parquet / arrow files) rather than a folder of videos with its ``metadata.jsonl``."""
    if (path / FOLDER_METADATA).is_file():
        return False
    return any(file.suffix in DATASET_FILE_EXTENSIONS for file in path.rglob("*"))


def open_edited(location: str | os.PathLike, *, instructions=None, sources=None) -> EditedSource:
    """The :class:`EditedSource` for an EDITED argument (a folder, a run directory or a datasets source)."""
    path = Path(location)
    if path.is_dir() and is_run_directory(path):
        return RunSource(path)
    if (
        path.is_dir()
        and not is_dataset_directory(path)
        and (instructions is not None or (path / FOLDER_METADATA).is_file() or videos_in(path))
    ):
        return FolderSource(path, instructions, sources)
    if path.exists() and not path.is_dir():
        raise DittoError(f"EDITED {path}: give a folder of videos, a run directory or a datasets source, not a file")
    return DatasetSource(os.fspath(location))
