"""The packed layout: ``videos/<category>/<category>.tar.gz.01``, ``.02`` … read in place.

The parts are joined into one file object (ratarmountcore's ``JoinedFileFromFactory`` over fsspec
files, so remote parts are read with HTTP range requests) and opened with ratarmountcore's
``SQLiteIndexedTar``, whose SQLite index holds the tar member table and the gzip seek points. The
index is built once by a full pass over the archive, cached locally, and can be published next to the
parts (``<category>.tar.gz.index.sqlite``) so that later readers download it instead of scanning.
"""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path

import fsspec.caching

from ditto_hf.builders.members import Member
from ditto_hf.builders.release import VIDEOS_DIR, ReleaseRoot
from ditto_hf.errors import DittoError

logger = logging.getLogger("ditto_hf.builders")

#: ratarmountcore's default: one gzip checkpoint (with its 32 KiB window) per 16 MiB of compressed data.
DEFAULT_SEEK_POINT_SPACING = 16 * 1024 * 1024
MIN_SEEK_POINT_SPACING = 32 * 1024
#: ratarmountcore gives indexed_gzip a read buffer of max(3 MiB, 3 x spacing); readers pass this
#: spacing (the loaded index keeps its own seek points) so the buffer stays at 3 MiB.
READ_SPACING = 1024 * 1024
READ_BUFFER = 3 * READ_SPACING
#: indexed_gzip's compressed read-ahead (its default ``readbuf_size``).
INFLATE_READAHEAD = 1024 * 1024
#: Remote archive parts are fetched in blocks of at most / at least this many bytes.
REMOTE_BLOCK_SIZE = 1024 * 1024
MIN_REMOTE_BLOCK_SIZE = 64 * 1024
INDEX_KEY = "ditto_hf"
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
        """The parts as one file object. Remote parts are read in blocks through an LRU block cache
        that covers a gzip checkpoint span plus the decoder's read buffer, so re-inflating from a
        checkpoint does not fetch the same bytes twice; memory stays bounded by the cache size."""
        from ratarmountcore.StenciledFile import JoinedFileFromFactory, LambdaReaderFile

        if self.root.is_local:
            return JoinedFileFromFactory([lambda path=part.path: self._fs.open(path, "rb") for part in self.parts])
        joined = JoinedFileFromFactory([lambda path=part.path: self._fs.open(path, "rb", cache_type="none") for part in self.parts])
        size = sum(part.size for part in self.parts)
        lock = threading.Lock()

        def fetch(start: int, end: int) -> bytes:
            logger.debug("%s: fetching bytes %d-%d", self.shown_as, start, end)
            with lock:
                joined.seek(start)
                return joined.read(end - start)

        block = min(REMOTE_BLOCK_SIZE, max(MIN_REMOTE_BLOCK_SIZE, self.spacing // 4))
        # One decoder read inflates from a checkpoint up to ``spacing`` back through its read buffer and
        # read-ahead; twice the spacing keeps the previous checkpoint span too (LRU must not sweep).
        covered = 2 * self.spacing + READ_BUFFER + INFLATE_READAHEAD
        cache = fsspec.caching.BlockCache(block, fetch, size, maxblocks=-(-covered // block) + 2)
        return io.BufferedReader(LambdaReaderFile(lambda offset, length: cache._fetch(offset, offset + length), size), buffer_size=block)

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
        """Open the archive for reading (building or downloading the index first if needed)."""
        if self._archive is None:
            path = self.index_path()
            info = self._read_info(path)
            self._check(info)
            self.spacing = info.spacing
            try:
                with _ratarmount_output():
                    self._archive = self._open_archive(str(path), read_only=True)
            except Exception as exc:  # ratarmountcore's and the gzip backend's own types
                raise DittoError(
                    f"{self.shown_as}: cannot be read with the seek index {path} ({type(exc).__name__}: {' '.join(str(exc).split())}); "
                    "a part changed or is corrupt: delete the index to rebuild it, or re-download the parts"
                ) from exc
        return self

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
        found = self.open()._archive.lookup("/" + release_path)
        if found is None or not found.userdata:
            return None
        return Member(self.category, found.userdata[0].offset, found.size, release_path)

    def read(self, member: Member) -> bytes:
        archive = self.open()._archive
        try:
            with archive.fileObjectLock:
                archive.tarFileObject.seek(member.offset)
                data = archive.tarFileObject.read(member.size)
        except Exception as exc:  # the gzip backend's inflate errors
            raise DittoError(
                f"{self.shown_as}: member {member.path} cannot be read ({type(exc).__name__}: {exc}); a part is corrupt, re-download it"
            ) from exc
        if len(data) != member.size:
            raise DittoError(
                f"{self.shown_as}: member {member.path} is cut short ({len(data)} of {member.size} bytes); the archive is truncated"
            )
        return data

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()
            self._archive = None
