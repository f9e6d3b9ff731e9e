"""The run directory: resume markers, the recorded recipe, and the final tables.

Layout of ``RUN_DIR``::

    recipe.yaml                 the exact recipe of the run (placeholders resolved)
    run.json                    package versions and one entry per invocation
    state/<stage>/<id>.json     the sample record after <stage> (the resume marker)
    <kind>/<id>.<ext>           artifacts written by the stages (video/, depth/, refined/, ...)
    inputs/<id>.mp4             source clips copied out of a ``datasets`` input
    manifest.parquet            kept samples, ``run_features`` schema, video paths run-relative
    rejected.parquet            rejected and failed samples with stage, reason / error and scores

Every file is written atomically (temp file + rename), so a run killed at any point leaves only
complete markers; rerunning the same command continues from them.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.video import NEW_FILE_MODE

logger = logging.getLogger(__name__)

MANIFEST = "manifest.parquet"
REJECTED = "rejected.parquet"
RECIPE = "recipe.yaml"
RUN_INFO = "run.json"
STATE = "state"
#: The folders of an absolute path (``/a/b/`` of ``/a/b/c.mp4``), not of a URL or of ``~/``, ``{tiny}/``.
_ABSOLUTE_FOLDERS = re.compile(r"(?<![\w.~}/:])/(?:[\w.+-]+/)+(?=[\w.+-])")
VERSIONED_PACKAGES = (
    "ditto-hf",
    "torch",
    "torchvision",
    "torchcodec",
    "transformers",
    "diffusers",
    "datasets",
    "huggingface_hub",
    "accelerate",
    "av",
    "ray",
)


def atomic_write(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename; the file
    gets the umask's mode, so shared storage (the ray engine's workers) can read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(handle, NEW_FILE_MODE)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the output (absent ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class WorkItem:
    """A sample and the index (in the recipe's stage list) of the next stage it needs."""

    sample: Sample
    start: int

    def runs(self, index: int) -> bool:
        """Whether stage ``index`` runs on this sample: the one rule every engine follows.

        A sample runs every stage from ``start`` on while it stays ``ok`` (stages update it in place).
        """
        return self.start <= index and self.sample.ok


class RunDir:
    """Reads and writes everything under one run directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).absolute()

    # -- recipe and versions -------------------------------------------------------------------
    def begin(self, recipe_text: str, recipe_name: str, command: list[str] | None = None) -> None:
        """Record the recipe (or check it matches the recorded one) and this invocation."""
        self.root.mkdir(parents=True, exist_ok=True)
        recorded = self.root / RECIPE
        if recorded.exists() and recorded.read_text() != recipe_text:
            raise DittoError(
                f"{self.root} was started with a different recipe (see {recorded}); "
                "rerun with the same recipe to resume, or choose a new --output directory"
            )
        if not recorded.exists():
            atomic_write(recorded, recipe_text)
        info = self.info()
        info.setdefault("recipe", recipe_name)
        info.setdefault("created", _now())
        info["versions"] = package_versions()
        info.setdefault("invocations", []).append({"started": _now(), "command": command or sys.argv})
        atomic_write(self.root / RUN_INFO, json.dumps(info, indent=2))

    def info(self) -> dict:
        path = self.root / RUN_INFO
        return json.loads(path.read_text()) if path.exists() else {}

    def recipe_text(self) -> str:
        return (self.root / RECIPE).read_text()

    # -- markers ----------------------------------------------------------------------------------
    def marker(self, stage: str, sample_id: str) -> Path:
        return self.root / STATE / stage / f"{sample_id}.json"

    def write_marker(self, stage: str, sample: Sample) -> None:
        """Persist ``sample`` as it is after ``stage``."""
        atomic_write(self.marker(stage, sample.sample_id), sample.to_json())

    def read_marker(self, stage: str, sample_id: str) -> Sample | None:
        path = self.marker(stage, sample_id)
        try:
            return Sample.from_json(path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise DittoError(f"{path}: unreadable resume marker ({exc}); delete it to redo stage {stage!r} for this sample") from exc

    def resume_point(self, sample: Sample, stages: list[str], retry_failed: bool = False) -> WorkItem:
        """Where ``sample`` stands: its latest record and the next stage it needs.

        ``start == len(stages)`` means nothing is left (finished, rejected, or failed without
        ``retry_failed``). A failed sample retried starts again at the stage that failed, from the
        record of the stage before.
        """
        record = sample
        for index, stage in enumerate(stages):
            marked = self.read_marker(stage, sample.sample_id)
            if marked is None or (marked.status == "failed" and retry_failed):
                return WorkItem(record, index)
            record = marked
            if not record.ok:
                return WorkItem(record, len(stages))
        return WorkItem(record, len(stages))

    # -- final tables -----------------------------------------------------------------------------
    def write_tables(self, records: Iterable[Sample]) -> tuple[int, int]:
        """Write ``manifest.parquet`` (kept) and ``rejected.parquet`` (rejected + failed)."""
        import datasets

        from ditto_hf.schema import run_features

        records = sorted(records, key=lambda sample: sample.sample_id)
        names = record_names(records)
        kept = [manifest_row(sample, names) for sample in records if sample.ok]
        dropped = [rejected_row(sample, names) for sample in records if not sample.ok]
        for rows, features, name in ((kept, run_features(names), MANIFEST), (dropped, rejected_features(names), REJECTED)):
            table = datasets.Dataset.from_list(rows, features=features) if rows else _empty(features)
            _write_parquet(table, self.root / name)
        return len(kept), len(dropped)

    # -- the run as data ----------------------------------------------------------------------------
    def manifest_columns(self) -> dict[str, list]:
        """The columns of ``manifest.parquet``, with ``source`` / ``edited`` as absolute paths (not checked)."""
        import pyarrow.parquet as pq

        path = self.root / MANIFEST
        if not path.is_file():
            raise DittoError(f"{self.root}: no {MANIFEST}; the run has not finished (rerun `ditto-hf generate` with the same --output)")
        columns = pq.read_table(path).to_pydict()
        for name in ("source", "edited"):
            columns[name] = [str(self.root / cell["path"]) for cell in columns[name]]
        return columns

    def dataset(self):
        """The kept samples of the finished run as a ``datasets.Dataset`` with the manifest's features.

        ``source`` / ``edited`` point at the run's files (absolute paths), so they decode as
        ``datasets.Video``; ``source_path`` / ``edited_path`` stay run-relative.
        """
        import datasets
        import pyarrow.parquet as pq

        columns = self.manifest_columns()
        missing = [path for path in columns["source"] + columns["edited"] if not os.path.isfile(path)]
        if missing:
            raise DittoError(f"{self.root}: {len(missing)} video(s) listed in {MANIFEST} are missing, e.g. {missing[0]}")
        columns["input_path"] = portable_input_paths(columns["input_path"])
        features = datasets.Features.from_arrow_schema(pq.read_schema(self.root / MANIFEST))
        return datasets.Dataset.from_dict(columns, features=features)

    def provenance(self) -> str:
        """How the run was made, for a dataset card: the exact recipe and the recorded package versions,
        with this machine's paths replaced (``{tiny}``, ``RUN_DIR``, ``~``, other folders dropped)."""
        info = self.root / RUN_INFO
        return (
            f"Generated by `ditto-hf generate`.\n\nRecipe:\n\n```yaml\n{self._portable(self.recipe_text())}```\n\n"
            f"Run:\n\n```json\n{self._portable(info.read_text() if info.is_file() else '{}')}\n```\n"
        )

    def _portable(self, text: str) -> str:
        from ditto_hf.tiny import default_tiny_root

        for path, shown in ((default_tiny_root(), "{tiny}"), (self.root, "RUN_DIR"), (Path.home(), "~")):
            text = text.replace(str(path), shown)
        return _ABSOLUTE_FOLDERS.sub("", text)


def portable_input_paths(paths: list[str]) -> list[str]:
    """Input paths as published: run-relative ones as they are, absolute ones relative to the folder
    that holds them all, so no machine's paths leak into a published config."""
    absolute = [path for path in paths if os.path.isabs(path)]
    if not absolute:
        return paths
    base = os.path.commonpath([os.path.dirname(path) for path in absolute])
    return [os.path.relpath(path, base) if os.path.isabs(path) else path for path in paths]


def record_names(records: list[Sample]) -> dict[str, list[str]]:
    """The fields of the ``scores`` / ``reasons`` / ``timings`` structs: every name the run recorded."""
    from ditto_hf.schema import RECORD_COLUMNS

    return {column: sorted({name for sample in records for name in getattr(sample, column)}) for column in RECORD_COLUMNS}


def _records(sample: Sample, names: dict[str, list[str]]) -> dict:
    """The sample's scores, reasons and timings as struct values (None where it has none)."""
    from ditto_hf.schema import RECORD_COLUMNS

    values = {}
    for column, kind in RECORD_COLUMNS.items():
        recorded = getattr(sample, column)
        cast = float if kind == "float64" else str
        values[column] = {name: cast(recorded[name]) if name in recorded else None for name in names[column]} if names[column] else None
    return values


def manifest_row(sample: Sample, names: dict[str, list[str]]) -> dict:
    """A kept sample as a ``run_features(names)`` row (video columns hold run-relative paths)."""
    if not sample.video or not sample.edited:
        raise DittoError(
            f"sample {sample.sample_id} is kept but has no source or edited video; the recipe must end with a stage that writes one"
        )
    return {
        "source": sample.video,
        "edited": sample.edited,
        "instruction": sample.instruction,
        "category": sample.edit_type,
        "source_path": sample.video,
        "edited_path": sample.edited,
        "caption": sample.caption,
        "sample_id": sample.sample_id,
        "edit_type": sample.edit_type,
        "input_path": sample.input_path,
        "keyframe_path": sample.keyframe,
        "edited_keyframe_path": sample.edited_keyframe,
        "depth_path": sample.depth,
        "generated_path": sample.generated,
        **_records(sample, names),
    }


def rejected_features(names: dict[str, list[str]]):
    """Schema of ``rejected.parquet``."""
    from datasets import Features, Value

    from ditto_hf.schema import record_features

    text = ("sample_id", "input_path", "status", "stage", "reason", "error")
    return Features({**{name: Value("string") for name in text}, **record_features(names)})


def rejected_row(sample: Sample, names: dict[str, list[str]]) -> dict:
    return {
        "sample_id": sample.sample_id,
        "input_path": sample.input_path,
        "status": sample.status,
        "stage": sample.rejected_by,
        "reason": sample.reasons.get(sample.rejected_by, ""),
        "error": sample.error,
        **_records(sample, names),
    }


def _empty(features):
    import datasets

    return datasets.Dataset.from_dict({name: [] for name in features}, features=features)


def _write_parquet(dataset, path: Path) -> None:
    """Write the in-memory table (its schema metadata carries the ``datasets`` features)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(dataset.data.table, sink)
    atomic_write(path, sink.getvalue().to_pybytes())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
