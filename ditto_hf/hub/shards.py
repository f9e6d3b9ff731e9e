"""Deterministic parquet shards with embedded video bytes, sized for the Hub dataset viewer.

Rows keep their input order. A row group is closed before it would pass ``row_group_bytes``
(uncompressed, as the viewer scans it), and rows handed in together (a source video and its
edits) stay in one row group whenever they fit in one. Media columns are dictionary-encoded and
stored uncompressed: a video that several rows of a row group share (one source, many edits) is
stored once, and every reader still gets it in full in each row. The same input and limits always
give byte-identical files, so a rerun can tell by SHA-256 which shards the Hub already has.

:func:`write_shards` cuts a stream of rows into files of about ``max_shard_size``;
:func:`write_shard` writes rows chosen beforehand as one file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features
from datasets.features.features import require_storage_embed
from datasets.table import embed_table_storage
from datasets.utils.py_utils import convert_file_size_to_int

from ditto_hf.errors import BadRowError

#: Rows read from the source per batch (videos are large: keep batches small).
READ_BATCH_ROWS = 8
DEFAULT_ROW_GROUP_BYTES = "100MB"
DEFAULT_MAX_SHARD_SIZE = "500MB"


@dataclass(frozen=True)
class ShardFile:
    """One finished shard on local disk."""

    index: int
    local_path: Path
    sha256: str
    size: int
    num_rows: int
    num_bytes: int  # uncompressed arrow bytes (what ``dataset_info`` calls ``num_bytes``)
    num_row_groups: int
    max_row_group_bytes: int
    skipped_rows: tuple[str, ...] = ()  # why planned rows are missing (bad rows skipped on request)

    def path_in_repo(self, data_dir: str, split: str) -> str:
        return shard_path(data_dir, split, self.index)

    def record(self, path: str) -> dict:
        """The shard's entry in its folder's ``manifest.json``."""
        record = {
            "path": path,
            "sha256": self.sha256,
            "size": self.size,
            "num_rows": self.num_rows,
            "num_bytes": self.num_bytes,
            "num_row_groups": self.num_row_groups,
            "max_row_group_bytes": self.max_row_group_bytes,
        }
        if self.skipped_rows:
            record["skipped_rows"] = list(self.skipped_rows)
        return record


def shard_path(data_dir: str, split: str, index: int) -> str:
    """``<data_dir>/<split>-00003.parquet``: the name depends only on the shard's position."""
    return f"{data_dir}/{split}-{index:05d}.parquet"


def iter_arrow_batches(dataset, features: Features) -> Iterator[pa.Table]:
    """Arrow batches of a ``datasets`` Dataset or IterableDataset, cast to ``features``, media embedded."""
    first_row = 0
    for table in dataset.with_format("arrow").iter(batch_size=READ_BATCH_ROWS):
        table = table.select(list(features)).cast(features.arrow_schema)
        try:
            embedded = embed_table_storage(table)
        except OSError as error:  # a video path that cannot be read
            rows = f"rows {first_row}-{first_row + table.num_rows - 1}"
            raise BadRowError(f"{rows}: cannot embed a video ({error}); fix or drop those rows and publish again") from error
        yield embedded
        first_row += table.num_rows


def writer_options(features: Features, row_group_bytes: int) -> dict:
    """``pq.ParquetWriter`` options: every column dictionary-encoded (the dictionary may hold a whole
    row group, so repeated videos are never written twice), media bytes uncompressed (mp4 does not
    compress; uncompressed bytes also let chunk-level storage such as Xet deduplicate them across files)."""
    compression = {}
    for name, feature in features.items():
        codec = "none" if require_storage_embed(feature) else "snappy"
        compression.update({leaf: codec for leaf in _leaf_paths(name, features.arrow_schema.field(name).type)})
    return {
        "use_dictionary": True,
        "dictionary_pagesize_limit": max(row_group_bytes, 1 << 20),
        "compression": compression,
        "write_statistics": False,
    }


def _leaf_paths(path: str, arrow_type: pa.DataType) -> list[str]:
    if pa.types.is_struct(arrow_type):
        return [leaf for child in arrow_type for leaf in _leaf_paths(f"{path}.{child.name}", child.type)]
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type):
        return _leaf_paths(f"{path}.list.element", arrow_type.value_type)
    return [path]


class RowGroups:
    """Cuts tables of rows into row groups of at most ``max_bytes`` (and ``max_rows``) arrow bytes.

    Each table handed to :meth:`add` is kept whole in one row group when it fits in one; a table
    bigger than a row group is cut between rows.
    """

    def __init__(self, max_bytes: int, max_rows: int | None = None):
        self.max_bytes, self.max_rows = max_bytes, max_rows
        self.pending: list[pa.Table] = []
        self.bytes = self.rows = 0

    def _room_for(self, table: pa.Table) -> bool:
        rows_ok = self.max_rows is None or self.rows + table.num_rows <= self.max_rows
        return rows_ok and self.bytes + table.nbytes <= self.max_bytes

    def add(self, table: pa.Table) -> Iterator[pa.Table]:
        """Row groups completed by adding ``table``."""
        if self.pending and not self._room_for(table):
            yield from self.flush()
        if self._room_for(table) or table.num_rows == 1:
            self._append(table)
            return
        for row in (table.slice(i, 1) for i in range(table.num_rows)):  # bigger than a row group on its own
            if self.pending and not self._room_for(row):
                yield from self.flush()
            self._append(row)

    def _append(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.bytes += table.nbytes
        self.rows += table.num_rows

    def flush(self) -> Iterator[pa.Table]:
        if self.pending:
            yield pa.concat_tables(self.pending)
        self.pending, self.bytes, self.rows = [], 0, 0


class _ParquetFile:
    """A shard being written under a temporary name; :meth:`finish` moves it to its final name."""

    def __init__(self, folder: Path, features: Features, index: int, row_group_bytes: int):
        self.features, self.index = features, index
        self.options = writer_options(features, row_group_bytes)
        handle, name = tempfile.mkstemp(prefix=f".shard-{index:05d}-", suffix=".parquet", dir=folder)
        os.close(handle)
        self.path = Path(name)
        self.sink = self.writer = None
        self.num_rows = self.num_bytes = self.num_row_groups = self.max_group = 0

    @property
    def size(self) -> int:
        return self.sink.tell() if self.sink is not None else 0

    def write_row_group(self, table: pa.Table) -> None:
        if self.writer is None:
            self.sink = pa.OSFile(str(self.path), "wb")  # unbuffered: tell() is the size so far
            self.writer = pq.ParquetWriter(self.sink, self.features.arrow_schema, **self.options)
        self.writer.write_table(table, row_group_size=table.num_rows)
        self.num_rows += table.num_rows
        self.num_bytes += table.nbytes
        self.num_row_groups += 1
        self.max_group = max(self.max_group, table.nbytes)

    def finish(self, final: Path) -> ShardFile:
        if self.writer is None:  # no rows: still a valid parquet file, with the schema
            self.sink = pa.OSFile(str(self.path), "wb")
            self.writer = pq.ParquetWriter(self.sink, self.features.arrow_schema, **self.options)
        self.writer.close()
        self.sink.close()
        os.replace(self.path, final)
        return ShardFile(
            index=self.index,
            local_path=final,
            sha256=sha256_file(final),
            size=final.stat().st_size,
            num_rows=self.num_rows,
            num_bytes=self.num_bytes,
            num_row_groups=self.num_row_groups,
            max_row_group_bytes=self.max_group,
        )

    def discard(self) -> None:
        if self.sink is not None:
            self.sink.close()
        self.path.unlink(missing_ok=True)


def write_shards(
    batches: Iterable[pa.Table],
    features: Features,
    folder: str | os.PathLike,
    *,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    row_group_bytes: int | str = DEFAULT_ROW_GROUP_BYTES,
) -> Iterator[ShardFile]:
    """Write ``batches`` as consecutive parquet shards in ``folder``, yielding each as it is finished."""
    folder = Path(folder)
    shard_limit = convert_file_size_to_int(max_shard_size)
    group_limit = min(convert_file_size_to_int(row_group_bytes), shard_limit)  # shards end between row groups
    groups = RowGroups(group_limit)
    current = _ParquetFile(folder, features, 0, group_limit)

    def written(group: pa.Table) -> Iterator[ShardFile]:
        nonlocal current
        current.write_row_group(group)
        if current.size >= shard_limit:
            yield current.finish(folder / f"shard-{current.index:05d}.parquet")
            current = _ParquetFile(folder, features, current.index + 1, group_limit)

    for batch in batches:
        for row in (batch.slice(i, 1) for i in range(batch.num_rows)):
            for group in groups.add(row):
                yield from written(group)
    for group in groups.flush():
        yield from written(group)
    if current.num_rows:
        yield current.finish(folder / f"shard-{current.index:05d}.parquet")
    else:
        current.discard()


def write_shard(
    tables: Iterable[pa.Table],
    features: Features,
    path: str | os.PathLike,
    *,
    index: int = 0,
    row_group_bytes: int | str = DEFAULT_ROW_GROUP_BYTES,
    row_group_rows: int | None = None,
) -> ShardFile:
    """Write ``tables`` (rows already cast to ``features`` and embedded; each table's rows kept in
    one row group when they fit) as the single parquet file ``path``."""
    path = Path(path)
    limit = convert_file_size_to_int(row_group_bytes)
    groups = RowGroups(limit, row_group_rows)
    shard = _ParquetFile(path.parent, features, index, limit)
    try:
        for table in tables:
            for group in groups.add(table):
                shard.write_row_group(group)
        for group in groups.flush():
            shard.write_row_group(group)
        return shard.finish(path)
    except BaseException:
        shard.discard()
        raise


def sha256_file(path: str | os.PathLike, chunk_size: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
