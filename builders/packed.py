"""The packed layout: ``videos/<category>/<category>.tar.gz.01``, ``.02`` … read in place.

The parts are joined into one file object (ratarmountcore's ``JoinedFileFromFactory`` over fsspec
files, so remote parts are read with HTTP range requests) and opened with ratarmountcore's
``SQLiteIndexedTar``, whose SQLite index holds the tar member table and the gzip seek points. The
index is built once by a full pass over the archive, cached locally, and can be published next to the
parts (``<category>.tar.gz.index.sqlite``) so that later readers download it instead of scanning.
"""

from __future__ import annotations

import bisect
import collections
import concurrent.futures
import contextlib
import hashlib
import io
import json
import logging
import os
import posixpath
import re
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ditto_hf.builders.members import Member
from ditto_hf.builders.release import VIDEOS_DIR, ReleaseRoot
from ditto_hf.errors import DittoError

logger = logging.getLogger("ditto_hf.builders")

#: ratarmountcore's default: one gzip checkpoint (with its 32 KiB window) per 16 MiB of compressed data.
DEFAULT_SEEK_POINT_SPACING = 16 * 1024 * 1024
#: What ``ditto-hf index`` publishes: about half a release clip (~1.8 MB), so reading one member
#: inflates on average a quarter of a clip before it; the index costs a 32 KiB window per seek point
#: (about 3% of the archive: ~5.6 GB for ``source``, ~60 GB for the whole release).
PUBLISHED_SEEK_POINT_SPACING = 1024 * 1024
MIN_SEEK_POINT_SPACING = 32 * 1024
#: ratarmountcore gives indexed_gzip a read buffer of max(3 MiB, 3 x spacing); readers pass this
#: spacing (the loaded index keeps its own seek points) so the buffer stays at 3 MiB.
READ_SPACING = 1024 * 1024
READ_BUFFER = 3 * READ_SPACING
#: indexed_gzip's compressed read-ahead (its default ``readbuf_size``).
INFLATE_READAHEAD = 1024 * 1024
#: Remote archive parts are fetched in requests of at most / at least this many bytes.
REMOTE_BLOCK_SIZE = 1024 * 1024
MIN_REMOTE_BLOCK_SIZE = 64 * 1024
#: The most bytes one background fetch asks for (:meth:`RemoteRanges.reading`).
AHEAD_BYTES = 4 * REMOTE_BLOCK_SIZE
INDEX_KEY = "ditto_hf"
#: Read members through an unbuffered inflater (see :meth:`PackedCategory.read`); benchmarks switch
#: it off to measure ratarmountcore's buffered reads.
DIRECT_READS = True
#: Compressed bytes that inflater reads at a time (indexed_gzip's default is 1 MiB).
DIRECT_READ_CHUNK = 16 * 1024
#: Where ratarmountcore keeps the gzip seek points in its index (several blobs, or one in older files).
GZIP_INDEX_TABLES = ("gzipindexes", "gzipindex")
#: ratarmountcore rewrites member paths with this (pattern, replacement) before storing them, so that
#: absolute names and ``..`` components stay visible in the index instead of being normalised away.
#: A leading "/" becomes ``@unsafe@``, a ".." component ``@unsafe..@`` (a list: ratarmountcore compares
#: it with the JSON copy stored in the index).
UNSAFE_TRANSFORM = [r"(^/(?=/))|(?<=/)(\.\.)(?=/|$)", r"@unsafe\2@"]
UNSAFE_ABSOLUTE, UNSAFE_PARENT = "/@unsafe@/", "@unsafe..@"


@dataclass(frozen=True)
class Part:
    path: str
    size: int
    version: str = ""  # what the storage says identifies the bytes: LFS SHA-256, blob id, ETag or mtime

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)


def _version_of(entry: dict) -> str:
    """The identity of a file's bytes in an fsspec listing entry ("" when the storage gives none)."""
    lfs = entry.get("lfs")
    sha256 = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
    if sha256:
        return str(sha256)
    return next((str(entry[key]) for key in ("blob_id", "ETag", "etag", "mtime", "LastModified") if entry.get(key) is not None), "")


@dataclass(frozen=True)
class IndexInfo:
    """What ditto-hf records in an index besides ratarmountcore's tables."""

    parts: list
    spacing: int
    complete: bool
    unsafe_members: list

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def index_cache_dir(cache_root: str | os.PathLike | None = None) -> Path:
    """Where seek indexes are cached: ``<datasets cache>/ditto_1m/seek_indexes``."""
    import datasets

    return Path(cache_root or datasets.config.HF_DATASETS_CACHE) / "ditto_1m" / "seek_indexes"


def index_name(category: str) -> str:
    return f"{category}.tar.gz.index.sqlite"


def find_parts(root: ReleaseRoot, category: str) -> list[Part]:
    """The numbered parts of ``videos/<category>/<category>.tar.gz.NN``, checked to run 01..NN."""
    fs, folder = root.fs, root.join(VIDEOS_DIR, category)
    if not fs.isdir(folder):
        return []
    pattern = re.compile(rf"^{re.escape(category)}\.tar\.gz\.(\d+)$")
    numbered = {}
    for entry in fs.ls(folder, detail=True):
        match = pattern.match(posixpath.basename(entry["name"]))
        if match and entry["type"] == "file":
            numbered[int(match.group(1))] = Part(entry["name"], int(entry["size"]), _version_of(entry))
    if not numbered:
        return []
    missing = sorted(set(range(1, max(numbered) + 1)) - set(numbered))
    if missing:
        names = ", ".join(f"{category}.tar.gz.{number:02d}" for number in missing)
        raise DittoError(
            f"{root.display(VIDEOS_DIR, category)}: archive part(s) {names} missing (found {len(numbered)} of "
            f"{max(numbered)}); download every part before streaming this category"
        )
    return [numbered[number] for number in sorted(numbered)]


def _stored_name(indexed_path: str) -> str:
    """The member name as the tar stores it, from its path in an index built with UNSAFE_TRANSFORM."""
    if indexed_path.startswith(UNSAFE_ABSOLUTE):
        return indexed_path[len(UNSAFE_ABSOLUTE) - 1 :].replace(UNSAFE_PARENT, "..")
    return indexed_path.lstrip("/").replace(UNSAFE_PARENT, "..")


def index_member_table(connection: sqlite3.Connection):
    """Every entry of a ratarmountcore index as a ``pyarrow.Table`` (``path`` without the leading
    "/", ``offset``, ``size``) in one query; the latest version of a path first, as its lookup."""
    import pyarrow as pa

    cursor = connection.cursor()
    cursor.row_factory = None  # plain tuples
    rows = cursor.execute(
        """SELECT CASE "path" WHEN '/' THEN "name" ELSE substr("path", 2) || '/' || "name" END, "offset", "size"
           FROM "files" ORDER BY "offsetheader" DESC"""
    ).fetchall()
    paths, offsets, sizes = zip(*rows, strict=True) if rows else ((), (), ())
    return pa.table({"path": pa.array(paths, pa.string()), "offset": pa.array(offsets, pa.int64()), "size": pa.array(sizes, pa.int64())})


def _seek_point_before(seek_points: list[int], offset: int) -> int:
    """The last seek point at or before ``offset`` (0, the stream start, when there is none)."""
    return seek_points[bisect.bisect_right(seek_points, offset) - 1] if seek_points else 0


def _read_exactly(raw, offset: int, size: int, seek_points: list[int]) -> bytes:
    """``size`` bytes from ``offset`` of an unbuffered inflating stream (fewer only at its end).

    A seek re-inflates from the seek point before ``offset``; when the stream already stands between
    that point and ``offset`` (the next member of a folder read in order), it reads on instead."""
    position = raw.tell()
    point = _seek_point_before(seek_points, offset)
    if point <= position <= offset:
        while position < offset:
            skipped = raw.read(min(offset - position, 1 << 20))
            if not skipped:
                break
            position += len(skipped)
    else:
        raw.seek(offset)
    chunks, left = [], size
    while left:
        chunk = raw.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class RemoteRanges:
    """Remote bytes in aligned blocks of :data:`MIN_REMOTE_BLOCK_SIZE`, one request per miss.

    A miss right after the previous one (the archive read in order) fetches twice as many blocks as
    the last, up to :data:`REMOTE_BLOCK_SIZE`; any other miss fetches just the blocks it needs. So a
    dense read is a few large requests and a sparse one reads only the spans its members need;
    already cached blocks stop a fetch, and the least recently used are dropped past ``keep`` bytes.

    While a span is read (:meth:`reading`), the blocks it is sure to need are fetched ahead on a
    background thread, so that the next request is under way while the caller inflates the last one
    (the inflater releases the GIL). Every fetch runs one at a time, so ``fetch`` needs no locking."""

    def __init__(self, fetch, size: int, *, keep: int) -> None:
        self.fetch, self.size = fetch, size
        self.max_blocks = -(-keep // MIN_REMOTE_BLOCK_SIZE)
        self.blocks: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self.run, self.next_miss = 1, -1
        self.span_end = size  # where the bytes being read end (for read-ahead); see :meth:`reading`
        self.needed_end = 0  # and the bytes before which they are sure to be read (background read-ahead)
        self.ahead: tuple[int, int, concurrent.futures.Future] | None = None  # first block, count, its fetch
        self._fetcher: concurrent.futures.ThreadPoolExecutor | None = None
        self._fetcher_pid = 0
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def reading(self, end: int, *, needed: int = 0):
        """Read-ahead inside the block stops at ``end`` (the compressed end of the member being read);
        bytes before ``needed`` are sure to be read, and are fetched ahead in the background."""
        self.span_end, self.needed_end = min(end, self.size), min(needed, end, self.size)
        try:
            yield
        finally:
            self.span_end, self.needed_end = self.size, 0

    def read(self, offset: int, length: int) -> bytes:
        with self.lock:
            return self._read(offset, length)

    def close(self) -> None:
        """Wait for the background fetch, if any, and stop its thread."""
        with self.lock:
            self._take_ahead()
            if self._fetcher is not None and self._fetcher_pid == os.getpid():
                self._fetcher.shutdown(wait=True)
            self._fetcher = None

    def _read(self, offset: int, length: int) -> bytes:
        block = MIN_REMOTE_BLOCK_SIZE
        end = min(offset + length, self.size)
        pieces = []
        for number in range(offset // block, -(-end // block)):
            if number not in self.blocks:
                self._take_ahead()
            if number not in self.blocks:
                self._load(number, -(-end // block) - number)
            data = self.blocks[number]
            self.blocks.move_to_end(number)
            start = number * block
            pieces.append(data[max(offset, start) - start : min(end, start + len(data)) - start])
        self._fetch_ahead(end)
        return b"".join(pieces)

    def _load(self, number: int, needed: int) -> None:
        block = MIN_REMOTE_BLOCK_SIZE
        self.run = min(REMOTE_BLOCK_SIZE // block, 2 * self.run) if number == self.next_miss else 1
        count = max(needed, min(self.run, -(-self.span_end // block) - number))
        count = self._uncached_run(number, count)
        self._keep(number, count, self.fetch(*self._byte_range(number, count)))

    def _byte_range(self, number: int, count: int) -> tuple[int, int]:
        """``[start, end)`` of ``count`` blocks from block ``number`` (the last one cut at the end of the file)."""
        return number * MIN_REMOTE_BLOCK_SIZE, min(self.size, (number + count) * MIN_REMOTE_BLOCK_SIZE)

    def _uncached_run(self, number: int, count: int) -> int:
        """``count`` blocks from ``number``, cut at the first cached one and at the end of the file."""
        count = next((n for n in range(1, count) if number + n in self.blocks), count)
        return min(count, -(-self.size // MIN_REMOTE_BLOCK_SIZE) - number)

    def _keep(self, number: int, count: int, data: bytes) -> None:
        block = MIN_REMOTE_BLOCK_SIZE
        for index in range(count):
            self.blocks[number + index] = data[index * block : (index + 1) * block]
        self.next_miss = number + count
        while len(self.blocks) > self.max_blocks:
            self.blocks.popitem(last=False)

    def _fetch_ahead(self, position: int) -> None:
        """Start fetching the first uncached blocks after ``position`` (where the caller reads) that
        the span is sure to need, up to :data:`AHEAD_BYTES`, unless a background fetch is under way."""
        block = MIN_REMOTE_BLOCK_SIZE
        if self.ahead is not None or position >= self.needed_end:
            return
        number = position // block
        while number in self.blocks:
            number += 1
        count = self._uncached_run(number, min(AHEAD_BYTES // block, -(-self.needed_end // block) - number))
        if count <= 0:
            return
        if self._fetcher is None or self._fetcher_pid != os.getpid():  # a forked worker starts its own thread
            self._fetcher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ditto-read-ahead")
            self._fetcher_pid = os.getpid()
        future = self._fetcher.submit(self.fetch, *self._byte_range(number, count))
        self.ahead = (number, count, future)

    def _take_ahead(self) -> None:
        """Wait for the background fetch and keep its blocks; a failed one is dropped (the blocks are
        then fetched again when they are read, and that raises)."""
        if self.ahead is None:
            return
        (number, count, future), self.ahead = self.ahead, None
        if self._fetcher_pid != os.getpid():  # started by the parent of a forked worker: never finishes here
            return
        try:
            data = future.result()
        except Exception as exc:  # the fetch's own errors
            logger.debug("background fetch of blocks %d-%d failed (%s); fetching them when read", number, number + count, exc)
            return
        self._keep(number, count, data)


class _ReadSpacingNotice(logging.Filter):
    """Readers open an index with :data:`READ_SPACING` on purpose; ratarmountcore's notice that the
    argument differs from the one the index was built with is expected then, and dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return "arguments used for creating the found index differ" not in text and not text.startswith("gzipSeekPointSpacing:")


@contextlib.contextmanager
def _ratarmount_output():
    """ratarmountcore prints progress to stdout; route it to the debug log instead."""
    captured, notice, index_logger = io.StringIO(), _ReadSpacingNotice(), logging.getLogger("ratarmountcore.SQLiteIndex")
    index_logger.addFilter(notice)
    try:
        with contextlib.redirect_stdout(captured):
            yield
    finally:
        index_logger.removeFilter(notice)
    for line in captured.getvalue().splitlines():
        logger.debug("ratarmountcore: %s", line)


@contextlib.contextmanager
def _scan_progress(shown_as: str, total: int):
    """While an archive is scanned: a rich bar on stderr with the bytes scanned of ``total``, the
    speed and the time left (drawn on a terminal only); yields ``watch(file) -> file``."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        yield lambda handle: progress.wrap_file(handle, total=total, description=f"indexing {shown_as}")
    logger.info("%s: scanned %d bytes to build the seek index", shown_as, total)


class PackedCategory:
    """Random access to the members of one packed category through its seek index."""

    layout = "packed"

    def __init__(
        self,
        root: ReleaseRoot,
        category: str,
        parts: list[Part],
        cache_dir: str | os.PathLike,
        *,
        spacing: int = DEFAULT_SEEK_POINT_SPACING,
        strict: bool = True,
    ) -> None:
        if spacing <= MIN_SEEK_POINT_SPACING:
            raise DittoError(f"seek_point_spacing must be larger than {MIN_SEEK_POINT_SPACING} bytes (the gzip window), got {spacing}")
        self.root, self.category, self.parts = root, category, parts
        self.spacing, self.strict = spacing, strict
        self.cache_dir = Path(cache_dir)
        self._fs = root.fs
        self._archive = None
        self._index: Path | None = None
        self._lock = threading.Lock()
        self._seek_points: list[int] | None = None  # uncompressed offsets of the gzip seek points
        self._seek_offsets: list[int] | None = None  # and their compressed offsets
        self._direct = None
        self._ranges: RemoteRanges | None = None

    # -- naming ---------------------------------------------------------------------------------
    @property
    def shown_as(self) -> str:
        return self.root.display(VIDEOS_DIR, self.category, f"{self.category}.tar.gz.*")

    @property
    def part_list(self) -> list:
        return [[part.name, part.size] for part in self.parts]

    @property
    def published_index(self) -> str:
        return self.root.join(VIDEOS_DIR, self.category, index_name(self.category))

    @property
    def cached_index(self) -> Path:
        """The local cache file; its name changes when any part's bytes change (size or version)."""
        versions = [part.version for part in self.parts]
        key = hashlib.sha256(json.dumps([self.root.url, self.category, self.part_list, versions]).encode()).hexdigest()[:24]
        return self.cache_dir / f"{self.category}-{key}.index.sqlite"

    # -- the index ------------------------------------------------------------------------------
    def index_path(self) -> Path:
        """A local copy of a valid index: cached, else downloaded from next to the parts, else built."""
        cached = self.cached_index
        if cached.is_file() and self._read_info(cached) is not None:
            return cached
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        if self._fs.isfile(self.published_index):
            self._download_published(cached)
        else:
            logger.warning(
                "%s: no published seek index, scanning the archive once to build it (ditto-hf index publishes one)", self.shown_as
            )
            self.build_index(cached)
        return cached

    def build_index(self, destination: Path) -> IndexInfo:
        """Scan the whole archive once; write the index atomically to ``destination``."""
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
        os.close(handle)
        os.unlink(tmp_name)  # ratarmountcore creates the database itself
        try:
            try:
                with _ratarmount_output(), _scan_progress(self.shown_as, sum(part.size for part in self.parts)) as watch:
                    archive = self._open_archive(tmp_name, read_only=False, watch=watch)
            except Exception as exc:  # the gzip and tar backends each raise their own types
                raise DittoError(
                    f"{self.shown_as}: the {len(self.parts)} part(s) do not read as one gzip-compressed tar "
                    f"({type(exc).__name__}: {exc}); a part is corrupt or truncated, re-download the parts"
                ) from exc
            try:
                info = IndexInfo(self.part_list, self.spacing, self._ends_cleanly(archive), self._unsafe_members(archive))
            finally:
                archive.close()
            with contextlib.closing(sqlite3.connect(tmp_name)) as connection:
                connection.execute('INSERT OR REPLACE INTO "metadata" VALUES (?, ?)', (INDEX_KEY, info.to_json()))
                connection.commit()
            os.replace(tmp_name, destination)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        return info

    def publish_index(self) -> str:
        """Build the index (or reuse the cached one) and write it next to the parts; returns its path."""
        cached = self.cached_index
        if not (cached.is_file() and self._read_info(cached) is not None):
            self.build_index(cached)
        target = self.published_index
        if self.root.is_local:
            tmp = Path(target).with_name(f".{Path(target).name}.tmp")
            shutil.copyfile(cached, tmp)
            os.replace(tmp, target)
        else:
            self._fs.put_file(str(cached), target)
        return target

    def _download_published(self, destination: Path) -> None:
        handle, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
        os.close(handle)
        try:
            self._fs.get_file(self.published_index, tmp_name)
            info = self._read_info(Path(tmp_name))
            if info is None:
                raise DittoError(
                    f"{self.root.display(VIDEOS_DIR, self.category, index_name(self.category))} was built for other "
                    f"archive parts than the ones present (or is not a ditto-hf index); rebuild it with `ditto-hf index {self.root.url}`"
                )
            os.replace(tmp_name, destination)
        finally:
            Path(tmp_name).unlink(missing_ok=True)

    def _read_info(self, path: Path) -> IndexInfo | None:
        """The recorded info if ``path`` is a ditto-hf index of exactly these parts, else ``None``."""
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
                row = connection.execute('SELECT value FROM "metadata" WHERE key = ?', (INDEX_KEY,)).fetchone()
        except sqlite3.Error:
            return None
        if row is None:
            return None
        info = IndexInfo(**json.loads(row[0]))
        return info if info.parts == self.part_list else None

    @staticmethod
    def _ends_cleanly(archive) -> bool:
        """A complete tar stream ends with zero blocks; a truncated last part ends inside a member."""
        stream = archive.tarFileObject
        try:
            end = stream.seek(0, io.SEEK_END)
            stream.seek(max(0, end - 1024))
            tail = stream.read(1024)
        except Exception:  # noqa: BLE001 - any decoder failure at the end means the stream is cut short
            return False
        return len(tail) == 1024 and not any(tail)

    @staticmethod
    def _unsafe_members(archive) -> list:
        """Regular members whose stored name is absolute or has a ".." component (first 20)."""
        rows = archive.index.get_connection().execute(
            """SELECT path, name FROM "files" WHERE (mode & 0xF000) == 0x8000 AND (path || '/' || name) LIKE ? LIMIT 20""", ("%@unsafe%",)
        )
        return [_stored_name(posixpath.join(path, name)) for path, name in rows]

    # -- reading --------------------------------------------------------------------------------
    def _joined_parts(self):
        """The parts as one file object; remote parts are read through :class:`RemoteRanges`
        (memory bounded by what it keeps)."""
        from ratarmountcore.StenciledFile import JoinedFileFromFactory, LambdaReaderFile

        if self.root.is_local:
            return JoinedFileFromFactory([lambda path=part.path: self._fs.open(path, "rb") for part in self.parts])
        if self._ranges is None:  # one per archive: every file object over it shares what was fetched
            joined = JoinedFileFromFactory([lambda path=part.path: self._fs.open(path, "rb", cache_type="none") for part in self.parts])
            size = sum(part.size for part in self.parts)

            def fetch(start: int, end: int) -> bytes:
                logger.debug("%s: fetching bytes %d-%d", self.shown_as, start, end)
                joined.seek(start)
                return joined.read(end - start)

            # One read inflates from a seek point up to ``spacing`` back; keeping twice the spacing plus
            # the decoders' buffers and two background fetches means re-inflating from a seek point
            # never fetches the same bytes twice.
            keep = 2 * self.spacing + READ_BUFFER + INFLATE_READAHEAD + REMOTE_BLOCK_SIZE + 2 * AHEAD_BYTES
            self._ranges = RemoteRanges(fetch, size, keep=keep)
        ranges = self._ranges
        return io.BufferedReader(LambdaReaderFile(ranges.read, ranges.size), buffer_size=MIN_REMOTE_BLOCK_SIZE)

    def _open_archive(self, index_file: str, *, read_only: bool, watch=None):
        """The archive through ratarmountcore; ``watch(file) -> file`` wraps the parts (scan progress)."""
        from ratarmountcore.mountsource.formats.tar import SQLiteIndexedTar

        parts = self._joined_parts()
        return SQLiteIndexedTar(
            f"{self.category}.tar.gz",
            fileObject=watch(parts) if watch is not None else parts,
            indexFilePath=str(index_file),
            writeIndex=not read_only,
            readOnlyIndex=read_only,
            gzipSeekPointSpacing=READ_SPACING if read_only else self.spacing,
            transform=UNSAFE_TRANSFORM,
            prioritizedBackends=["indexed_gzip"],
        )

    def open(self) -> PackedCategory:
        """Check the index (building or downloading it first if needed); the archive itself is opened
        on first use: exact reads need only the index's seek points, not ratarmountcore's tar reader."""
        if self._index is None:
            path = self.index_path()
            info = self._read_info(path)
            self._check(info)
            self.spacing, self._index = info.spacing, path
        return self

    def _opened_archive(self):
        """The archive through ratarmountcore (member lookups, buffered reads)."""
        if self._archive is None:
            path = self.open()._index
            try:
                with _ratarmount_output():
                    self._archive = self._open_archive(str(path), read_only=True)
            except Exception as exc:  # ratarmountcore's and the gzip backend's own types
                raise self._unreadable_with_index(exc) from exc
        return self._archive

    def _unreadable_with_index(self, exc: Exception) -> DittoError:
        return DittoError(
            f"{self.shown_as}: cannot be read with the seek index {self._index} ({type(exc).__name__}: {' '.join(str(exc).split())}); "
            "a part changed or is corrupt: delete the index to rebuild it, or re-download the parts"
        )

    def _check(self, info: IndexInfo) -> None:
        problems = []
        if not info.complete:
            problems.append(f"the archive is truncated (the last part, {self.parts[-1].name}, ends inside a member); re-download it")
        if info.unsafe_members:
            problems.append(f"member names with '..' or absolute paths: {', '.join(info.unsafe_members[:5])}")
        if not problems:
            return
        message = f"{self.shown_as}: " + "; ".join(problems)
        if self.strict:
            raise DittoError(message)
        logger.warning("%s (reading only the intact, safely named members)", message)

    def locate(self, release_path: str) -> Member | None:
        found = self._opened_archive().lookup("/" + release_path)
        if found is None or not found.userdata:
            return None
        return Member(self.category, found.userdata[0].offset, found.size, release_path)

    def member_table(self):
        """The index's member table, read from the SQLite file alone: opening ratarmountcore's tar
        reader would inflate (and, for a remote archive, fetch) the first megabytes of the archive."""
        with contextlib.closing(sqlite3.connect(f"file:{self.open()._index}?mode=ro", uri=True)) as connection:
            return index_member_table(connection)

    def read(self, member: Member, then: Sequence[Member] = ()) -> bytes:
        """Inflate exactly the member's span, from the seek point before it (or on from where the
        previous member ended). With indexed_gzip this goes through a second, unbuffered inflater that
        reads the compressed stream in small chunks: ratarmountcore's own reads megabytes past the
        member (decoded read-ahead and a 1 MiB compressed buffer), which a sparse config never uses.
        Remote read-ahead stops at the member's end unless the first of ``then`` (the members read
        next, in order) is read on from it."""
        direct = self._direct_inflater() if DIRECT_READS else None
        try:
            if direct is not None:
                with self._lock, self._reading_span(member, then):
                    data = _read_exactly(direct, member.offset, member.size, self._seek_points)
            else:
                archive = self._opened_archive()
                with archive.fileObjectLock:
                    archive.tarFileObject.seek(member.offset)
                    data = archive.tarFileObject.read(member.size)
        except DittoError:
            raise
        except Exception as exc:  # the gzip backend's inflate errors
            raise DittoError(
                f"{self.shown_as}: member {member.path} cannot be read ({type(exc).__name__}: {exc}); a part is corrupt, re-download it"
            ) from exc
        if len(data) != member.size:
            raise DittoError(
                f"{self.shown_as}: member {member.path} is cut short ({len(data)} of {member.size} bytes); the archive is truncated"
            )
        return data

    def _reading_span(self, member: Member, then: Sequence[Member]):
        """Remote read-ahead stops at the first seek point past the member: its compressed offset
        (plus the byte its bit offset starts in) bounds the compressed bytes the member needs. When
        the next member is read on from this one's end (no seek point between them), it runs on.
        The compressed bytes before the last seek point inside the run of members read on from this
        one are sure to be needed: those are fetched ahead in the background."""
        if self._ranges is None:
            return contextlib.nullcontext()
        member_end = run_end = member.offset + member.size
        for following in then:
            if not _seek_point_before(self._seek_points, following.offset) <= run_end <= following.offset:
                break
            run_end = following.offset + following.size
        before = bisect.bisect_right(self._seek_points, run_end) - 1
        needed = self._seek_offsets[before] if before >= 0 else 0
        after = bisect.bisect_left(self._seek_points, member_end)
        if run_end > member_end or after == len(self._seek_offsets):
            return self._ranges.reading(self._ranges.size, needed=needed)
        return self._ranges.reading(self._seek_offsets[after] + 1, needed=needed)

    def _direct_inflater(self):
        """The unbuffered indexed_gzip inflater over the parts with the seek points of the index
        (built once per reader); ``None`` when indexed_gzip or the index's gzip table is missing."""
        if self._direct is None:
            try:
                import indexed_gzip
            except ImportError:
                return None
            path = self.open()._index
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
                tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                table = next((name for name in GZIP_INDEX_TABLES if name in tables), None)
                if table is None:
                    return None
                exported = io.BytesIO(b"".join(blob for (blob,) in connection.execute(f'SELECT "data" FROM "{table}" ORDER BY ROWID')))
            try:
                inflater = indexed_gzip.IndexedGzipFile(
                    fileobj=self._joined_parts(),
                    drop_handles=False,
                    spacing=self.spacing,
                    readbuf_size=DIRECT_READ_CHUNK,
                    buffer_size=DIRECT_READ_CHUNK,
                )
                inflater.import_index(fileobj=exported)
            except Exception as exc:  # indexed_gzip's own types
                raise self._unreadable_with_index(exc) from exc
            self._direct = inflater
            points = list(inflater.raw.seek_points())
            self._seek_points = [uncompressed for uncompressed, _ in points]
            self._seek_offsets = [compressed for _, compressed in points]
        return self._direct.raw

    def close(self) -> None:
        if self._ranges is not None:
            self._ranges.close()
        if self._direct is not None:
            self._direct.close()
            self._direct = None
        if self._archive is not None:
            self._archive.close()
            self._archive = None
        self._index, self._seek_points, self._seek_offsets, self._ranges = None, None, None, None
