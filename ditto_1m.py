"""The Ditto-1M builder: source video, instruction and edited video, straight from the release.

``import ditto_hf`` (or this module) registers the name ``ditto_1m`` with ``datasets``::

    import ditto_hf
    from datasets import load_dataset

    ds = load_dataset("ditto_1m", "local", data_dir="hf://datasets/QingyanBai/Ditto-1M", streaming=True, split="train")

The builder also works on its own: ``Ditto1M(config_name="local", data_dir=ROOT).as_streaming_dataset("train")``.
Configs are the ``training_metadata/*.json`` files present under the root (``all`` is
``global+local.json``). Videos are read from the extracted tree or, in place, from the split
``.tar.gz.NN`` parts through a seek index (see ``ditto_hf.builders.packed``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets.builder import Key

from ditto_hf.builders.packed import DEFAULT_SEEK_POINT_SPACING, index_cache_dir
from ditto_hf.builders.plan import BadRows, Readers, Triplet, plan_triplets
from ditto_hf.builders.plan_cache import (
    CachedPlan,
    ShardSpan,
    build_plan,
    open_plan,
    parse_rows,
    plan_cache_dir,
    plan_key,
    report_cached,
)
from ditto_hf.builders.release import (
    DEFAULT_ROOT,
    METADATA_DIR,
    MetadataRow,
    ReleaseRoot,
    load_captions,
    read_json_array,
)
from ditto_hf.builders.verify import check_video, verify_level
from ditto_hf.errors import BadRowError, DittoError, VideoError
from ditto_hf.schema import TRIPLET_FEATURES

logger = logging.getLogger("ditto_hf.builders")

_CITATION = """\
@article{bai2025ditto,
  title   = {Scaling Instruction-Based Video Editing with a High-Quality Synthetic Dataset},
  author  = {Bai, Qingyan and others},
  journal = {arXiv preprint arXiv:2510.15742},
  year    = {2025}
}
"""
DEFAULT_CONFIG_NAME = "all"
DEFAULT_NUM_SHARDS = 256
#: Most video bytes read ahead of the rows that yield them (per reader, so per DataLoader worker): a
#: folder's videos are read in archive order (edits are stored apart from the order rows use them),
#: rows still come in plan order.
READ_WINDOW_BYTES = 64 << 20


@dataclass
class Ditto1MConfig(datasets.BuilderConfig):
    """Which metadata file to stream and how to treat bad input.

    Args:
        name: the metadata file (``local`` -> ``training_metadata/local.json``; ``all`` -> ``global+local.json``).
        data_dir: the release root, a local path or fsspec URL (default: the Hub release).
        on_bad_rows: ``"raise"`` (default) stops at the first bad row with a message naming it;
            ``"skip"`` logs each bad row, counts it and goes on.
        num_shards: at most this many shards (runs of whole 4-digit folders) for parallel readers.
        verify_videos: check each video before yielding it: ``True`` / ``"container"`` (default) walks
            the mp4 boxes (catches truncated and foreign files, microseconds per video); ``"full"`` also
            opens it with the decoder; ``False`` checks nothing.
        seek_point_spacing: gzip checkpoint spacing used when this reader has to build a seek index.
        read_threads: how many categories (separate archives) of a read window are read at once,
            one thread each; default: up to 4, no more than this process's share of the CPUs (a
            DataLoader worker's is the CPUs divided by the workers).
    """

    name: str = DEFAULT_CONFIG_NAME
    on_bad_rows: str = "raise"
    num_shards: int = DEFAULT_NUM_SHARDS
    verify_videos: bool | str = True
    seek_point_spacing: int = DEFAULT_SEEK_POINT_SPACING
    read_threads: int | None = None


class Ditto1M(datasets.GeneratorBasedBuilder):
    """Ditto-1M triplets (source, instruction, edited) from the original release layout."""

    BUILDER_CONFIG_CLASS = Ditto1MConfig
    DEFAULT_CONFIG_NAME = DEFAULT_CONFIG_NAME
    VERSION = datasets.Version("1.0.0")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bad_rows = BadRows(self.config.on_bad_rows)
        try:
            self.verify = verify_level(self.config.verify_videos)
        except VideoError as exc:
            raise DittoError(str(exc)) from None
        threads = self.config.read_threads
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise DittoError(f"read_threads must be a whole number of at least 1 (or None for the default), got {threads!r}")

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="Ditto-1M: instruction-based video editing triplets (arXiv 2510.15742).",
            features=TRIPLET_FEATURES,
            homepage="https://huggingface.co/datasets/QingyanBai/Ditto-1M",
            license="cc-by-nc-sa-4.0",
            citation=_CITATION,
        )

    # -- planning -------------------------------------------------------------------------------
    @property
    def release(self) -> ReleaseRoot:
        root = self.config.data_dir or DEFAULT_ROOT
        return ReleaseRoot(str(root), release_storage_options(str(root), self.storage_options, self.token))

    @property
    def index_cache(self) -> Path:
        return index_cache_dir(self._cache_dir_root)

    def _readers(self, root: ReleaseRoot) -> Readers:
        return open_readers(root, self.index_cache, strict=self.config.on_bad_rows == "raise", spacing=self.config.seek_point_spacing)

    def _split_generators(self, dl_manager):
        root = self.release
        metadata_path = root.metadata_file(self.config.name)
        shown_as = root.display(METADATA_DIR, Path(metadata_path).name)
        plan = self._plan(root, metadata_path, shown_as)
        spans = plan.spans
        logger.info("%s: %d triplets in %d shard(s) (plan %s)", shown_as, len(plan), len(spans), plan.path)
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"shards": spans, "root": root, "shown_as": shown_as})]

    def _plan(self, root: ReleaseRoot, metadata_path: str, shown_as: str) -> CachedPlan:
        """The cached plan of this config, computed first when the release changed or was never planned."""
        settings = {"on_bad_rows": self.config.on_bad_rows, "num_shards": self.config.num_shards}
        key = plan_key(root, self.config.name, metadata_path, settings)
        path = plan_cache_dir(self._cache_dir_root) / f"{self.config.name}-{key}.arrow"
        if path.is_file():
            try:
                plan = open_plan(path)
            except (OSError, ValueError, KeyError) as exc:  # a damaged cache file: plan again
                logger.warning("%s: unreadable cached plan (%s); planning again", path, exc)
            else:
                report_cached(plan, self.bad_rows)
                return plan
        rows = parse_rows(read_json_array(root.fs, metadata_path, shown_as), self.bad_rows, shown_as)
        readers = self._readers(root)
        readers.close()  # the release changed since this process opened it: list its categories again
        build_plan(rows, readers, load_captions(root), self.bad_rows, shown_as, self.config.num_shards, path)
        self.bad_rows.report(f"while reading {shown_as}")
        return open_plan(path)

    # -- reading --------------------------------------------------------------------------------
    def _generate_examples(self, shards: list[ShardSpan], root: ReleaseRoot, shown_as: str):
        readers = self._readers(root)
        skipped_before = self.bad_rows.skipped
        try:
            windows = (
                (span.id, window)
                for number, span in enumerate(shards)
                for window in _read_windows(open_plan(span.plan).triplets(span), first_alone=number == 0)
            )
            yield from self._window_examples(windows, readers, shown_as)
        finally:
            skipped = self.bad_rows.skipped - skipped_before
            if skipped:
                logger.warning("ditto_1m: skipped %d bad row(s) of %s in shard(s) %s", skipped, shown_as, [span.id for span in shards])

    def _window_examples(self, windows: Iterator[tuple[int, list[Triplet]]], readers: Readers, shown_as: str):
        """The examples of ``(shard id, window)`` pairs, numbered within each shard; each window's
        videos are read first, in archive order, knowing the next window's (across shards too)."""
        shard_id, position, videos = None, 0, {}
        for (window_shard, window), upcoming in _with_next(windows):
            if window_shard != shard_id:
                shard_id, position = window_shard, 0
            videos = self._read_window(readers, window, videos, upcoming[1] if upcoming else [])
            for triplet in window:
                row = triplet.row
                try:
                    source = self._video(videos, triplet.source, row, "source_path", shown_as)
                    edited = self._video(videos, triplet.edited, row, "edited_path", shown_as)
                except BadRowError as exc:
                    self.bad_rows.handle(exc)
                    position += 1
                    continue
                yield (
                    Key(shard_id, position),
                    {
                        "source": {"bytes": source, "path": row.source_path},
                        "edited": {"bytes": edited, "path": row.edited_path},
                        "instruction": row.instruction,
                        "category": row.category,
                        "source_path": row.source_path,
                        "edited_path": row.edited_path,
                        "caption": triplet.caption,
                    },
                )
                position += 1

    def examples_of(self, rows: Sequence[MetadataRow], captions: Mapping[str, str], shown_as: str) -> Iterator[dict]:
        """The examples of any ``rows`` of this release (numbered as in ``shown_as``), in that order;
        bad rows are raised or skipped as ``on_bad_rows`` says. The Hub mirror reads its parts with this."""
        readers = self._readers(self.release)
        triplets = plan_triplets(list(rows), readers, dict(captions), self.bad_rows, shown_as)
        for _, example in self._window_examples(((0, window) for window in _read_windows(triplets, first_alone=True)), readers, shown_as):
            yield example

    def _read_window(self, readers: Readers, window: list[Triplet], previous: dict, upcoming: list[Triplet]) -> dict:
        """Every distinct video of a window, read in archive order (each category's members by
        offset, so an archive is read forwards; categories at once): member -> bytes, or the error
        that stopped it, checked as ``verify_videos`` says. Videos of the ``previous`` window (a
        source whose edits span two windows) are not read again; each reader is told which of its
        members this window and the ``upcoming`` one read next."""
        paths = _window_paths(window)
        videos = {member: previous[member] for member in paths if member in previous}
        ordered = sorted(member for member in paths if member not in previous)
        coming = sorted(member for member in _window_paths(upcoming) if member not in paths)
        for member, data in readers.read_in_order(ordered, coming, threads=self.config.read_threads).items():
            if not isinstance(data, Exception):
                try:
                    check_video(data, paths[member], self.verify)
                except VideoError as exc:
                    data = exc
            videos[member] = data
        return videos

    @staticmethod
    def _video(videos: dict, member, row, key: str, shown_as: str) -> bytes:
        """One video of a row from its window; an unreadable or broken one is a BadRowError naming the row."""
        data = videos[member]
        if isinstance(data, Exception):
            raise BadRowError(f"{shown_as} row {row.index}: {key}: {data}") from None
        return data


def _window_paths(window: list[Triplet]) -> dict:
    """Every video of a window: member -> its row's path (``source_path`` or ``edited_path``)."""
    return {
        member: getattr(triplet.row, key)
        for triplet in window
        for member, key in ((triplet.source, "source_path"), (triplet.edited, "edited_path"))
    }


def _with_next(items: Iterator) -> Iterator[tuple]:
    """Each item with the one after it (``None`` after the last)."""
    current = next(items, None)
    while current is not None:
        upcoming = next(items, None)
        yield current, upcoming
        current = upcoming


def _read_windows(triplets: Iterable[Triplet], *, first_alone: bool) -> Iterator[list[Triplet]]:
    """Runs of consecutive triplets of one 4-digit folder whose videos total at most
    :data:`READ_WINDOW_BYTES`, the unit read in archive order; with ``first_alone`` the first is a
    single triplet (time to the first row). ``READ_WINDOW_BYTES = 0`` reads each triplet on its own,
    in plan order."""
    window: list[Triplet] = []
    size, limit = 0, 0 if first_alone else READ_WINDOW_BYTES
    for triplet in triplets:
        edit = triplet.edited.size + (0 if window and window[-1].source == triplet.source else triplet.source.size)
        if window and (triplet.row.group != window[-1].row.group or size + edit > limit):
            yield window
            window, size, limit = [], 0, READ_WINDOW_BYTES
            edit = triplet.edited.size + triplet.source.size
        window.append(triplet)
        size += edit
    if window:
        yield window


_OPEN_READERS: dict = {}


def open_readers(root: ReleaseRoot, cache_dir: Path, *, strict: bool, spacing: int) -> Readers:
    """This process's readers of a release, kept open from one shard to the next so archive reads
    continue where the previous shard stopped (shards are runs of consecutive folders). One release
    at a time: asking for another closes the previous readers."""
    key = (os.getpid(), root.url, str(cache_dir), strict, spacing)
    if key not in _OPEN_READERS:
        # Only this process's readers are closed: a forked DataLoader worker leaves the copies it
        # inherited from its parent untouched (closing them would act on the parent's open files).
        for own in [other for other in _OPEN_READERS if other[0] == key[0]]:
            _OPEN_READERS.pop(own).close()
        _OPEN_READERS[key] = Readers(root, cache_dir, strict=strict, spacing=spacing)
    return _OPEN_READERS[key]


def release_storage_options(root: str, storage_options: dict | None, token=None) -> dict:
    """fsspec options for the release root: for ``hf://`` the endpoint and token datasets uses."""
    options = dict((storage_options or {}).get(root.split("://", 1)[0], {}) if "://" in root else {})
    if root.startswith("hf://"):
        options.setdefault("endpoint", datasets.config.HF_ENDPOINT)
        if token is not None:
            options.setdefault("token", token)
    return options
