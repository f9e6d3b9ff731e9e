"""A config's plan, computed once and kept on disk as one memory-mapped Arrow file.

Planning locates every row's two videos and cuts the rows into shards (see :mod:`.plan`). For the
whole release that is a million rows, so it is done column-wise (one member table per category,
joined with Arrow) and the result is written to ``<datasets cache>/ditto_1m/plans/<config>-<key>.arrow``.
The key covers everything the plan depends on: the release URL, the config, the metadata and caption
files, the listing of every category folder (archive parts and published seek indexes, or the
extracted sub-folders), the bad-row policy and the shard count. Any change gives a new key, so a
stale plan is never used.

The file is an uncompressed Arrow IPC file whose record batches are cut at shard boundaries. Every
process (DataLoader workers included) opens the one file without reading it whole: shards travel
to workers as small spans (file, rows, batches) and a worker reads only the batches of its shards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ditto_hf.builders.members import Member
from ditto_hf.builders.plan import BadRows, Readers, Triplet, shard_sizes
from ditto_hf.builders.release import CAPTIONS_DIR, VIDEOS_DIR, MetadataRow, ReleaseRoot, parse_row
from ditto_hf.errors import BadRowError, DittoError

logger = logging.getLogger("ditto_hf.builders")

PLAN_FORMAT = 1
PLAN_KEY = b"ditto_hf.plan"
#: Rows per record batch: the unit a worker reads and turns into Python objects (bounds its memory).
BATCH_ROWS = 4096
#: A path check_release_path returns unchanged: plain components, none of them "." or "..".
_CLEAN_PATH = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-][A-Za-z0-9_.+-]*){2,}")
_FINGERPRINT_FIELDS = ("size", "type", "mtime", "ETag", "etag", "last_modified", "LastModified", "blob_id", "tree_id", "lfs")
_BAD_ROW_EXAMPLES = 20


def plan_cache_dir(cache_root: str | os.PathLike | None = None) -> Path:
    """Where plans are cached: ``<datasets cache>/ditto_1m/plans``."""
    import datasets

    return Path(cache_root or datasets.config.HF_DATASETS_CACHE) / "ditto_1m" / "plans"


@dataclass(frozen=True)
class ShardSpan:
    """One shard of a cached plan: rows ``start:stop``, stored as ``batches`` record batches from
    ``first_batch`` on (small: this is what is pickled to workers)."""

    plan: str
    id: int
    start: int
    stop: int
    first_batch: int
    batches: int

    def __len__(self) -> int:
        return self.stop - self.start


# -- the key --------------------------------------------------------------------------------------


def _fingerprint(entry: dict) -> list:
    return [posixpath.basename(entry["name"].rstrip("/"))] + [entry.get(field) for field in _FINGERPRINT_FIELDS]


def _listing(fs, folder: str) -> list:
    return sorted(_fingerprint(entry) for entry in fs.ls(folder, detail=True)) if fs.isdir(folder) else []


def plan_key(root: ReleaseRoot, config: str, metadata_path: str, settings: dict) -> str:
    """A digest of everything the plan of ``config`` depends on (a few listings, no file reads)."""
    fs = root.fs
    videos = root.join(VIDEOS_DIR)
    categories = {
        posixpath.basename(entry["name"].rstrip("/")): _listing(fs, entry["name"])
        for entry in (fs.ls(videos, detail=True) if fs.isdir(videos) else [])
        if entry["type"] == "directory"
    }
    described = {
        "format": PLAN_FORMAT,
        "root": root.url,
        "config": config,
        "metadata": _fingerprint(fs.info(metadata_path)),
        "captions": _listing(fs, root.join(CAPTIONS_DIR)),
        "videos": categories,
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:32]


# -- building ---------------------------------------------------------------------------------------


@dataclass
class RowColumns:
    """Validated metadata rows, column by column (a million ``MetadataRow`` objects cost seconds)."""

    index: list[int] = field(default_factory=list)
    source_path: list[str] = field(default_factory=list)
    edited_path: list[str] = field(default_factory=list)
    instruction: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.index)

    def append(self, row: MetadataRow) -> None:
        self.index.append(row.index)
        self.source_path.append(row.source_path)
        self.edited_path.append(row.edited_path)
        self.instruction.append(row.instruction)


def parse_rows(entries: list, bad: BadRows, shown_as: str) -> RowColumns:
    """:func:`parse_row` for every entry, with a fast path for the common, already clean row."""
    rows, clean = RowColumns(), _CLEAN_PATH.fullmatch
    indexes, sources, edits, instructions = rows.index, rows.source_path, rows.edited_path, rows.instruction
    for index, entry in enumerate(entries):
        if type(entry) is dict:
            source, edited, instruction = entry.get("source_path"), entry.get("edited_path"), entry.get("instruction")
            if (
                type(source) is str
                and type(edited) is str
                and type(instruction) is str
                and instruction
                and not instruction.isspace()
                and (instruction.isascii() or _encodes(instruction))
                and clean(source)
                and clean(edited)
            ):
                indexes.append(index)
                sources.append(source)
                edits.append(edited)
                instructions.append(instruction)
                continue
        try:
            rows.append(parse_row(index, entry, shown_as))
        except BadRowError as exc:
            bad.handle(exc)
    return rows


def _encodes(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no lone surrogates), as parquet and the viewer need."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _locate_column(paths, readers: Readers):
    """Offsets and sizes (-1 where absent) of the members named by ``paths``, one join per category;
    the categories that cannot be read map to their error."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    categories = pc.list_element(pc.split_pattern(paths, "/", max_splits=1), 0)
    offsets = np.full(len(paths), -1, dtype=np.int64)
    sizes = np.full(len(paths), -1, dtype=np.int64)
    failed: dict[str, DittoError] = {}
    bases: dict[str, tuple[str, str]] = {}
    for category in pc.unique(categories).to_pylist():
        rows = pc.indices_nonzero(pc.equal(categories, category)).to_numpy()
        try:
            reader = readers.get(category)
        except BadRowError as exc:
            failed[category] = DittoError(str(exc))
            continue
        except DittoError as exc:
            failed[category] = exc
            continue
        members = reader.member_table()
        bases[category] = (reader.layout, getattr(reader, "base", ""))
        found = pc.index_in(paths.take(pa.array(rows)), value_set=members["path"])
        present = found.is_valid().to_numpy(zero_copy_only=False)
        positions = found.fill_null(0).to_numpy()[present]
        offsets[rows[present]] = members["offset"].to_numpy()[positions]
        sizes[rows[present]] = members["size"].to_numpy()[positions]
    return offsets, sizes, failed, bases


def build_plan(
    rows: RowColumns, readers: Readers, captions: dict[str, str], bad: BadRows, shown_as: str, num_shards: int, destination: Path
) -> None:
    """Locate every row's videos, order and shard them as :func:`.plan.shard_triplets` does, and
    write the plan atomically to ``destination``. Bad rows go to ``bad`` in row order."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = {
        "index": pa.array(rows.index, pa.int64()),
        "source_path": pa.array(rows.source_path, pa.string()),
        "edited_path": pa.array(rows.edited_path, pa.string()),
        "instruction": pa.array(rows.instruction, pa.string()),
    }
    located, layouts, examples = {}, {}, []
    for key in ("source_path", "edited_path"):
        offsets, sizes, failed, bases = _locate_column(columns[key], readers)
        located[key] = (offsets, sizes, failed)
        layouts.update(bases)
    keep = (located["source_path"][0] >= 0) & (located["edited_path"][0] >= 0)
    skipped_before = bad.skipped
    for position in np.flatnonzero(~keep):
        for key in ("source_path", "edited_path"):
            if located[key][0][position] < 0:
                path = getattr(rows, key)[position]
                category = path.split("/", 1)[0]
                problem = located[key][2].get(category)
                reason = f": {problem}" if problem else f" is not in the release (looked in videos/{category})"
                error = BadRowError(f"{shown_as} row {rows.index[position]}: {key} {path}{reason}")
                bad.handle(error)
                if len(examples) < _BAD_ROW_EXAMPLES:
                    examples.append(str(error))
                break
    table = pa.table(
        {
            **columns,
            "caption": pa.array([captions.get(path, "") for path in rows.source_path], pa.string()),
            "source_offset": pa.array(located["source_path"][0]),
            "source_size": pa.array(located["source_path"][1]),
            "edited_offset": pa.array(located["edited_path"][0]),
            "edited_size": pa.array(located["edited_path"][1]),
        }
    ).filter(pa.array(keep))
    ordered = table.take(_reading_order(table))
    groups = pc.list_element(pc.split_pattern(ordered["source_path"], "/", max_splits=2), 1).to_numpy(zero_copy_only=False)
    folder_sizes = np.diff(np.flatnonzero(np.r_[True, groups[1:] != groups[:-1], True])) if len(groups) else np.array([], int)
    spans, start, batch = [], 0, 0
    for shard_id, count in shard_sizes(folder_sizes.tolist(), num_shards):
        batches = -(-count // BATCH_ROWS)
        spans.append([shard_id, start, start + count, batch, batches])
        start, batch = start + count, batch + batches
    meta = {
        "rows": ordered.num_rows,
        "spans": spans,
        "layouts": layouts,
        "skipped": bad.skipped - skipped_before,
        "bad_rows": examples,
        "shown_as": shown_as,
    }
    _write_atomically(ordered.combine_chunks().replace_schema_metadata({PLAN_KEY: json.dumps(meta).encode()}), spans, destination)


def _reading_order(table):
    """Row order of :func:`.plan.shard_triplets`: folder, then source and edited member
    (category, offset, size, path), then row index (the stable sort's tie-break)."""
    import pyarrow.compute as pc

    keyed = table.append_column("group", pc.list_element(pc.split_pattern(table["source_path"], "/", max_splits=2), 1))
    for key in ("source", "edited"):
        keyed = keyed.append_column(f"{key}_category", pc.list_element(pc.split_pattern(table[f"{key}_path"], "/", max_splits=1), 0))
    keys = ["group"] + [f"{key}_{field}" for key in ("source", "edited") for field in ("category", "offset", "size", "path")] + ["index"]
    return pc.sort_indices(keyed, sort_keys=[(name, "ascending") for name in keys])


def _write_atomically(table, spans: list, destination: Path) -> None:
    """Each shard as its own record batches of at most :data:`BATCH_ROWS` rows, so a reader reads
    just the batches of the shards it streams."""
    import pyarrow as pa

    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    os.close(handle)
    try:
        with pa.OSFile(tmp_name, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            for _, start, stop, _, batches in spans:
                shard = table.slice(start, stop - start).to_batches(max_chunksize=BATCH_ROWS)
                assert len(shard) == batches, (len(shard), batches)  # a single-chunk table slices into exactly this many
                for record_batch in shard:
                    writer.write_batch(record_batch)
        os.replace(tmp_name, destination)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


# -- reading ----------------------------------------------------------------------------------------


class CachedPlan:
    """A plan file opened for reading: the footer and the schema (spans, layouts) are read at once,
    a shard's record batches when it is streamed. Opened once per process (see :func:`open_plan`)."""

    def __init__(self, path: str | os.PathLike) -> None:
        import pyarrow as pa

        self.path = str(path)
        self.reader = pa.ipc.open_file(pa.OSFile(self.path, "rb"))
        self.schema = self.reader.schema
        self.meta = json.loads(self.schema.metadata[PLAN_KEY])

    @property
    def spans(self) -> list[ShardSpan]:
        return [ShardSpan(self.path, shard_id, start, stop, batch, batches) for shard_id, start, stop, batch, batches in self.meta["spans"]]

    def __len__(self) -> int:
        return self.meta["rows"]

    def triplets(self, span: ShardSpan) -> Iterator[Triplet]:
        """The triplets of one shard in reading order, a record batch at a time."""
        layouts = self.meta["layouts"]

        def member(path: str, offset: int, size: int) -> Member:
            category, inside = path.split("/", 1)
            layout, base = layouts[category]
            return Member(category, offset, size, posixpath.join(base, inside) if layout == "extracted" else path)

        for number in range(span.first_batch, span.first_batch + span.batches):
            chunk = self.reader.get_batch(number).to_pydict()
            for index, source, edited, instruction, caption, s_off, s_size, e_off, e_size in zip(
                chunk["index"],
                chunk["source_path"],
                chunk["edited_path"],
                chunk["instruction"],
                chunk["caption"],
                chunk["source_offset"],
                chunk["source_size"],
                chunk["edited_offset"],
                chunk["edited_size"],
                strict=True,
            ):
                row = MetadataRow(index, source, edited, instruction)
                yield Triplet(row, member(source, s_off, s_size), member(edited, e_off, e_size), caption)


_OPEN_PLANS: dict[tuple[int, str], CachedPlan] = {}


def open_plan(path: str | os.PathLike) -> CachedPlan:
    """This process's mapping of a plan file (a forked worker maps it again: nothing is copied)."""
    key = (os.getpid(), str(path))
    if key not in _OPEN_PLANS:
        for stale in [other for other in _OPEN_PLANS if other[0] != key[0]]:
            _OPEN_PLANS.pop(stale)
        _OPEN_PLANS[key] = CachedPlan(path)
    return _OPEN_PLANS[key]


def report_cached(plan: CachedPlan, bad: BadRows) -> None:
    """A plan read from the cache says how many bad rows its planning skipped (each was logged then)."""
    skipped = plan.meta["skipped"]
    if skipped:
        bad.skipped += skipped
        examples = "; ".join(plan.meta["bad_rows"][:3])
        shown_as = plan.meta["shown_as"]
        logger.warning("ditto_1m: skipped %d bad row(s) while reading %s (cached plan %s; e.g. %s)", skipped, shown_as, plan.path, examples)
