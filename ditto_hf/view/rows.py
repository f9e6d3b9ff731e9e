"""Rows read on demand: parquet row groups or a streamed dataset, paged and filtered with small caches.

A reader yields ``(index, record)`` from any index on, where a record holds the text fields of a
row and ``media``: ``name -> kind`` of the videos and images it has; the media bytes themselves
are read only when asked for (:meth:`media`). :class:`Catalog` pages filtered rows over a reader
and remembers how far each filter has scanned, so moving on a page never rereads the rows before.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ditto_hf.errors import DittoError
from ditto_hf.view.media import Blob, media_kind

#: Filters a page can ask for: a field that must equal the value (``category`` also matches ``edit_type``).
FACETS = ("category", "status")
#: Text search looks in these fields.
SEARCHED = ("instruction",)


class LRU(OrderedDict):
    """A dict that keeps only its ``limit`` most recently used entries."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def get(self, key, default=None):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)
        return value


def is_media_type(arrow_type) -> bool:
    """A ``datasets.Video`` / ``Image`` storage column: ``struct<bytes: binary, path: string>``."""
    import pyarrow as pa

    return pa.types.is_struct(arrow_type) and {arrow_type.field(i).name for i in range(arrow_type.num_fields)} == {"bytes", "path"}


@dataclass
class ParquetPart:
    """One parquet file of a source.

    ``base``: folder that relative media paths resolve under (None: a remote file, whose media paths are
    never read); ``extra``: fields added to every record;
    ``path_media``: extra media named by a record (``record -> {name: path}``, paths resolved under ``base``).
    """

    name: str
    open: Callable[[], object]  # returns a binary file object
    base: Path | None = None
    extra: dict = field(default_factory=dict)
    path_media: Callable[[dict], dict[str, str]] | None = None


class ParquetRows:
    """Rows of parquet files, read one row group at a time; media columns only when asked for."""

    def __init__(self, parts: list[ParquetPart]):
        import pyarrow.parquet as pq

        self.parts, self.files, self.starts = parts, [], []
        total = 0
        for part in parts:
            try:
                handle = pq.ParquetFile(part.open())
            except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses
                raise DittoError(f"{part.name}: not a readable parquet file ({exc})") from exc
            self.files.append(handle)
            self.starts.append(total)
            total += handle.metadata.num_rows
        self.num_rows = total
        self._lock = threading.Lock()
        self._media_groups = LRU(4)  # (part, group, column) -> list of cells

    def _locate(self, index: int) -> tuple[int, int, int]:
        """(part, row group, row inside the group) of a global row index."""
        if not 0 <= index < self.num_rows:
            raise IndexError(index)
        part = bisect.bisect_right(self.starts, index) - 1
        offset = index - self.starts[part]
        metadata = self.files[part].metadata
        for group in range(metadata.num_row_groups):
            rows = metadata.row_group(group).num_rows
            if offset < rows:
                return part, group, offset
            offset -= rows
        raise IndexError(index)

    def _columns(self, part: int) -> tuple[list[str], list[str]]:
        schema = self.files[part].schema_arrow
        media = [f.name for f in schema if is_media_type(f.type)]
        return [f.name for f in schema if f.name not in media], media

    def records(self, start: int = 0) -> Iterator[tuple[int, dict]]:
        if start >= self.num_rows:
            return
        part, group, offset = self._locate(start)
        index = start
        while part < len(self.files):
            text, media = self._columns(part)
            spec = self.parts[part]
            for number in range(group, self.files[part].metadata.num_row_groups):
                with self._lock:
                    rows = self.files[part].read_row_group(number, columns=text).to_pylist()
                for row in rows[offset:]:
                    record = {**row, **spec.extra, "media": dict.fromkeys(media, "video")}
                    if spec.path_media:
                        record["media"].update({name: media_kind(path) for name, path in spec.path_media(record).items() if path})
                    yield index, record
                    index += 1
                offset = 0
            part, group = part + 1, 0

    def media(self, index: int, record: dict, name: str) -> Blob:
        part, group, offset = self._locate(index)
        spec = self.parts[part]
        label = f"row {index} {name}"
        if name in self._columns(part)[1]:
            key = (part, group, name)
            with self._lock:
                cells = self._media_groups.get(key)
                if cells is None:
                    cells = self._media_groups.put(key, self.files[part].read_row_group(group, columns=[name]).column(0).to_pylist())
            return Blob.from_cell(cells[offset], spec.base, label)
        paths = spec.path_media(record) if spec.path_media else {}
        if name not in paths:
            raise DittoError(f"{label}: the row has no media called {name!r}")
        return Blob.from_path(paths[name], spec.base, label)


class StreamRows:
    """Rows of a streamed ``datasets.IterableDataset`` (not decoded), for sources without random access.

    Moving to a row skips the ones before it (the dataset's own ``skip``); the media of the most
    recently read rows stay in a small cache.
    """

    def __init__(self, dataset, name: str, *, cached_rows: int = 32):
        from datasets import Image, Video

        self.dataset, self.name = dataset.decode(False), name
        self.media_columns = [column for column, feature in (dataset.features or {}).items() if isinstance(feature, (Video, Image))]
        self._media_rows = LRU(cached_rows)
        self._lock = threading.Lock()

    def records(self, start: int = 0) -> Iterator[tuple[int, dict]]:
        rows = self.dataset.skip(start) if start else self.dataset
        for index, row in enumerate(rows, start=start):
            cells = {column: row.pop(column) for column in self.media_columns}
            with self._lock:
                self._media_rows.put(index, cells)
            yield index, {**row, "media": dict.fromkeys(self.media_columns, "video")}

    def media(self, index: int, record: dict, name: str) -> Blob:
        label = f"{self.name} row {index} {name}"
        if name not in self.media_columns:
            raise DittoError(f"{label}: the row has no media called {name!r}")
        with self._lock:
            cells = self._media_rows.get(index)
        if cells is None:
            next(self.records(index), None)  # reading the row caches its media cells
            with self._lock:
                cells = self._media_rows.get(index)
        if cells is None:
            raise DittoError(f"{label}: the stream has no row {index}")
        return Blob.from_cell(cells[name], None, label)


@dataclass
class Page:
    number: int
    size: int
    rows: list[tuple[int, dict]]
    has_more: bool
    total: int | None  # matching rows, once the scan has reached the end


@dataclass
class _Scan:
    """How far one filter has got: matching indices so far and the live row iterator."""

    matches: list[int] = field(default_factory=list)
    rows: Iterator | None = None
    done: bool = False


def matches(record: dict, filters: dict[str, str]) -> bool:
    """Whether a record passes the facet filters and the case-insensitive text search ``q``."""
    for facet in FACETS:
        wanted = filters.get(facet)
        if wanted and wanted not in (record.get(facet), record.get("edit_type") if facet == "category" else None):
            return False
    query = (filters.get("q") or "").strip().lower()
    return not query or any(query in str(record.get(name) or "").lower() for name in SEARCHED)


class Catalog:
    """Filtered pages and single rows over a reader, with an LRU of records and of filter scans."""

    def __init__(self, reader, title: str, *, records_cached: int = 4096, scans_cached: int = 16):
        self.reader, self.title = reader, title
        self._records = LRU(records_cached)
        self._scans = LRU(scans_cached)
        self._lock = threading.Lock()
        self.facet_values: dict[str, set[str]] = {facet: set() for facet in FACETS}

    def _seen(self, index: int, record: dict) -> None:
        self._records.put(index, record)
        for facet in FACETS:
            for name in (facet, "edit_type") if facet == "category" else (facet,):
                if record.get(name):
                    self.facet_values[facet].add(record[name])

    def page(self, number: int, size: int, filters: dict[str, str]) -> Page:
        """Rows ``number * size`` .. of those passing ``filters``; scans only as far as needed."""
        key = tuple(sorted((k, v) for k, v in filters.items() if v))
        wanted = (number + 1) * size + 1  # one more than the page tells whether another follows
        with self._lock:
            scan = self._scans.get(key) or self._scans.put(key, _Scan())
            if scan.rows is None and not scan.done:
                scan.rows = self.reader.records(0)
            while not scan.done and len(scan.matches) < wanted:
                step = next(scan.rows, None)
                if step is None:
                    scan.done, scan.rows = True, None
                    break
                index, record = step
                self._seen(index, record)
                if matches(record, filters):
                    scan.matches.append(index)
            chosen = scan.matches[number * size : (number + 1) * size]
            rows = [(index, self._record(index)) for index in chosen]
            return Page(number, size, rows, len(scan.matches) > (number + 1) * size, len(scan.matches) if scan.done else None)

    def _record(self, index: int) -> dict:
        record = self._records.get(index)
        if record is None:
            step = next(self.reader.records(index), None)
            if step is None:
                raise DittoError(f"{self.title}: no row {index}")
            record = step[1]
            self._seen(index, record)
        return record

    def record(self, index: int) -> dict:
        with self._lock:
            return self._record(index)

    def media(self, index: int, name: str) -> Blob:
        record = self.record(index)
        if name not in record["media"]:
            raise DittoError(f"row {index}: no media called {name!r} (has {', '.join(record['media']) or 'none'})")
        return self.reader.media(index, record, name)
