"""From metadata rows to located triplets, grouped into shards that read the release in order.

A source and its edits share the 4-digit folder (``source/0281/<hash>.mp4``,
``local/0281/<hash>_3.mp4``), and the tarballs store each folder contiguously. Shards are runs of
whole folders; inside a folder, triplets are sorted by the position of their source and edit, so each
archive is read forwards and a source shared by several edits is read once.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ditto_hf.builders.extracted import ExtractedCategory
from ditto_hf.builders.members import CategoryReader, Member
from ditto_hf.builders.packed import (
    DEFAULT_SEEK_POINT_SPACING,
    PackedCategory,
    find_parts,
)
from ditto_hf.builders.release import VIDEOS_DIR, MetadataRow, ReleaseRoot
from ditto_hf.errors import BadRowError, DittoError

logger = logging.getLogger("ditto_hf.builders")

BAD_ROW_POLICIES = ("raise", "skip")
#: The most categories of a window read at once by default (see :meth:`Readers.read_in_order`).
READ_THREADS = 4


@dataclass(frozen=True, slots=True)
class Triplet:
    """A metadata row with both videos located and its source caption."""

    row: MetadataRow
    source: Member
    edited: Member
    caption: str


@dataclass(frozen=True)
class Shard:
    """One unit of parallel work: consecutive 4-digit folders."""

    id: int
    triplets: tuple[Triplet, ...]


class BadRows:
    """Raises on a bad row (``on_bad_rows="raise"``) or logs it and counts it (``"skip"``)."""

    def __init__(self, policy: str) -> None:
        if policy not in BAD_ROW_POLICIES:
            raise DittoError(f"on_bad_rows must be one of {', '.join(BAD_ROW_POLICIES)}, got {policy!r}")
        self.policy = policy
        self.skipped = 0

    def handle(self, error: BadRowError) -> None:
        if self.policy == "raise":
            raise error
        self.skipped += 1
        logger.warning("skipped bad row: %s", error)

    def report(self, where: str) -> None:
        """The closing log line: how many rows were skipped (only logged when some were)."""
        if self.skipped:
            logger.warning("ditto_1m: skipped %d bad row(s) %s", self.skipped, where)


class Readers:
    """The category readers of one release, opened on first use and kept until :meth:`close`."""

    def __init__(self, root: ReleaseRoot, cache_dir: str | Path, *, strict: bool, spacing: int = DEFAULT_SEEK_POINT_SPACING) -> None:
        self.root, self.cache_dir, self.strict, self.spacing = root, Path(cache_dir), strict, spacing
        self._readers: dict[str, CategoryReader | DittoError] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_key: tuple[int, int] = (0, 0)  # (pid, threads) the pool was started for

    def get(self, category: str) -> CategoryReader:
        if category not in self._readers:
            try:
                self._readers[category] = self._open(category)
            except DittoError as exc:
                if self.strict:
                    raise
                self._readers[category] = exc
        reader = self._readers[category]
        if isinstance(reader, DittoError):
            raise BadRowError(str(reader))
        return reader

    def _open(self, category: str) -> CategoryReader:
        """Extracted videos are read when present (cheapest), else the packed parts."""
        if ExtractedCategory.present(self.root, category):
            return ExtractedCategory(self.root, category)
        parts = find_parts(self.root, category)
        if parts:
            return PackedCategory(self.root, category, parts, self.cache_dir, spacing=self.spacing, strict=self.strict).open()
        raise DittoError(f"{self.root.display(VIDEOS_DIR, category)}: neither extracted videos nor {category}.tar.gz.NN parts found")

    def read_in_order(self, members: Sequence[Member], upcoming: Sequence[Member] = (), *, threads: int | None = None) -> dict:
        """Each of ``members`` (sorted: each category's in archive order) -> its bytes, or the error
        that stopped it. Categories are separate archives, so up to ``threads`` of them (default:
        :func:`default_read_threads`) are read at once, each on its own thread and in order; the
        inflaters release the GIL. Each member's reader is told the members of its category read
        after it, ``upcoming`` (the ones read next) included."""
        wanted: dict[str, list[Member]] = {}
        for member in members:
            wanted.setdefault(member.category, []).append(member)
        later = {category: [member for member in upcoming if member.category == category] for category in wanted}
        results: dict = {}

        def read_category(category: str) -> None:
            chosen, coming = wanted[category], wanted[category] + later[category]
            for number, member in enumerate(chosen):
                try:
                    results[member] = self.get(category).read(member, then=coming[number + 1 :])
                except (BadRowError, DittoError, OSError) as exc:
                    results[member] = exc

        for category in wanted:  # opened here, one at a time: opening may download or build a seek index
            try:
                self.get(category)
            except (BadRowError, DittoError):
                pass  # raised again, per member, by read_category
        pool = self._thread_pool(len(wanted), threads)
        if pool is None:
            for category in wanted:
                read_category(category)
        else:
            for future in [pool.submit(read_category, category) for category in wanted]:
                future.result()
        return {member: results[member] for member in members}

    def _thread_pool(self, categories: int, threads: int | None) -> concurrent.futures.ThreadPoolExecutor | None:
        """The pool reading categories at once (``None`` when one thread would do), sized by the
        thread limit alone so windows of more or fewer categories share it; a forked worker starts its own."""
        threads = threads or default_read_threads()
        if min(categories, threads) <= 1:
            return None
        if self._pool_key != (os.getpid(), threads):
            if self._pool is not None and self._pool_key[0] == os.getpid():
                self._pool.shutdown(wait=True)
            self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="ditto-read")
            self._pool_key = (os.getpid(), threads)
        return self._pool

    def close(self) -> None:
        if self._pool is not None and self._pool_key[0] == os.getpid():
            self._pool.shutdown(wait=True)
        self._pool, self._pool_key = None, (0, 0)
        for reader in self._readers.values():
            if not isinstance(reader, DittoError):
                reader.close()
        self._readers.clear()


def default_read_threads() -> int:
    """Up to :data:`READ_THREADS`, no more than this process's share of the CPUs it may use (in a
    PyTorch DataLoader worker, the CPUs divided by the number of workers)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch_data = sys.modules.get("torch.utils.data")  # only a process that uses a DataLoader has it
    worker = torch_data.get_worker_info() if torch_data is not None else None
    return max(1, min(READ_THREADS, cpus // (worker.num_workers if worker is not None else 1)))


def locate_row(row: MetadataRow, readers: Readers, shown_as: str) -> tuple[Member, Member]:
    """Both members of a row; a missing one is a :class:`BadRowError` naming the row and the file."""
    located = []
    for key in ("source_path", "edited_path"):
        path = getattr(row, key)
        try:
            member = readers.get(path.split("/", 1)[0]).locate(path)
        except DittoError as exc:  # the category cannot be read: name the first row that needs it
            raise BadRowError(f"{shown_as} row {row.index}: {key} {path}: {exc}") from None
        if member is None:
            raise BadRowError(f"{shown_as} row {row.index}: {key} {path} is not in the release (looked in videos/{path.split('/', 1)[0]})")
        located.append(member)
    return located[0], located[1]


def plan_triplets(rows: list[MetadataRow], readers: Readers, captions: dict[str, str], bad: BadRows, shown_as: str) -> list[Triplet]:
    """Locate every row's videos; bad rows go to ``bad``."""
    triplets = []
    for row in rows:
        try:
            source, edited = locate_row(row, readers, shown_as)
        except BadRowError as exc:
            bad.handle(exc)
            continue
        triplets.append(Triplet(row, source, edited, captions.get(row.source_path, "")))
    return triplets


def _reading_order(triplet: Triplet) -> tuple:
    return (triplet.row.group, triplet.source, triplet.edited)


def shard_sizes(folder_sizes: list[int], num_shards: int) -> list[tuple[int, int]]:
    """``(shard id, triplet count)`` of at most ``num_shards`` shards of whole folders taken in order,
    balanced by triplet count; empty shards are left out (their ids are not reused)."""
    count = max(1, min(num_shards, len(folder_sizes)))
    target = sum(folder_sizes) / count
    totals = [0] * count
    done = 0
    for size in folder_sizes:
        totals[min(count - 1, int(done / target)) if target else 0] += size
        done += size
    return [(number, total) for number, total in enumerate(totals) if total]


def shard_triplets(triplets: list[Triplet], num_shards: int) -> list[Shard]:
    """Split into at most ``num_shards`` shards of whole 4-digit folders, balanced by triplet count."""
    ordered = sorted(triplets, key=_reading_order)
    folders = [len(tuple(group)) for _, group in itertools.groupby(ordered, key=lambda triplet: triplet.row.group)]
    shards, start = [], 0
    for number, size in shard_sizes(folders, num_shards):
        shards.append(Shard(number, tuple(ordered[start : start + size])))
        start += size
    return shards
