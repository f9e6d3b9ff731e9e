"""Deterministic parquet shards with embedded video bytes, sized for the Hub dataset viewer.

Rows keep their input order. A row group is closed before it would pass ``row_group_bytes``
(uncompressed, as the viewer scans it) and a shard file after it reaches ``max_shard_size``, so
the same input and limits always give byte-identical shard files: a rerun can tell by SHA-256
which shards the Hub already has.
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

    def path_in_repo(self, data_dir: str, split: str) -> str:
        return shard_path(data_dir, split, self.index)


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


def write_shards(
    batches: Iterable[pa.Table],
    features: Features,
    folder: str | os.PathLike,
    *,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    row_group_bytes: int | str = DEFAULT_ROW_GROUP_BYTES,
) -> Iterator[ShardFile]:
    """Write ``batches`` as consecutive parquet shards in ``folder``, yielding each as it is finished."""
    shard_limit = convert_file_size_to_int(max_shard_size)
    writer = _ShardWriter(Path(folder), features, shard_limit)
    group_limit = min(convert_file_size_to_int(row_group_bytes), shard_limit)  # shards end between row groups
    group: list[pa.Table] = []
    group_bytes = 0
    for batch in batches:
        for row in (batch.slice(i, 1) for i in range(batch.num_rows)):
            if group and group_bytes + row.nbytes > group_limit:
                yield from writer.write_row_group(pa.concat_tables(group))
                group, group_bytes = [], 0
            group.append(row)
            group_bytes += row.nbytes
    if group:
        yield from writer.write_row_group(pa.concat_tables(group))
    yield from writer.close()


class _ShardWriter:
    """Appends row groups to the current shard; starts a new shard once the file is big enough."""

    def __init__(self, folder: Path, features: Features, max_shard_size: int):
        self.folder, self.features, self.max_shard_size = folder, features, max_shard_size
        self.schema = features.arrow_schema
        self.index = 0
        self._start()

    def _start(self) -> None:
        handle, name = tempfile.mkstemp(prefix=f".shard-{self.index:05d}-", suffix=".parquet", dir=self.folder)
        os.close(handle)
        self.path = Path(name)
        self.sink = None
        self.writer = None
        self.num_rows = self.num_bytes = self.num_row_groups = self.max_group = 0

    def write_row_group(self, table: pa.Table) -> Iterator[ShardFile]:
        if self.writer is None:
            self.sink = pa.OSFile(str(self.path), "wb")  # unbuffered: tell() is the size so far
            self.writer = pq.ParquetWriter(self.sink, self.schema, write_statistics=False)
        self.writer.write_table(table, row_group_size=table.num_rows)
        self.num_rows += table.num_rows
        self.num_bytes += table.nbytes
        self.num_row_groups += 1
        self.max_group = max(self.max_group, table.nbytes)
        if self.sink.tell() >= self.max_shard_size:
            yield self._finish()
            self.index += 1
            self._start()

    def close(self) -> Iterator[ShardFile]:
        if self.writer is not None:
            yield self._finish()
        else:
            self.path.unlink(missing_ok=True)

    def _finish(self) -> ShardFile:
        self.writer.close()
        self.sink.close()
        final = self.folder / f"shard-{self.index:05d}.parquet"
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


def sha256_file(path: str | os.PathLike, chunk_size: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
