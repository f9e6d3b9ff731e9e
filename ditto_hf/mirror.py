"""The Ditto-1M release as one Hub dataset repo: every triplet stored once, every config a union of parts.

The release's metadata files overlap, so they are split into disjoint parts
(:mod:`ditto_hf.builders.parts`): each part's rows are written once, under ``parts/<part>/``, and
every config of the card lists the parts it is made of. Plain ``load_dataset(repo, "global")``
then yields exactly the rows of ``training_metadata/global.json``: part by part in the order the
config lists them, each part sorted by source video, then edited video. ``all`` is
``global+local.json``, as in the ``ditto_1m`` builder.

- Layout of a row: both videos embedded, so a row is a complete triplet for any parquet reader.
  A source shared by several edits of a part is written once per row group that holds them
  (dictionary encoding; its edits are neighbours), so it is stored once per part that uses it.
- Shards are cut from the part's rows alone (``shard_rows`` rows, at source boundaries) and named
  after a fingerprint of their rows and writer settings, so a rerun knows from the metadata files
  and the repo tree which shards are done before reading any video (:mod:`ditto_hf.hub.compose`).
- ``preview`` (the default config) holds the first ``preview_rows`` triplets of each category in
  one-row row groups, so the viewer and ``load_dataset(repo)`` open at once.
- ``num_workers`` processes read and encode shards, each opening its own release readers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field, replace

from ditto_hf import __version__
from ditto_hf.builders.parts import Composition, Part, release_composition
from ditto_hf.builders.plan import BadRows
from ditto_hf.builders.release import DEFAULT_ROOT, METADATA_DIR, MetadataRow, ReleaseRoot, load_captions, metadata_stem_of
from ditto_hf.errors import DittoError

logger = logging.getLogger(__name__)

PARTS_DIR = "parts"
PREVIEW = "preview"
DEFAULT_SHARD_ROWS = 160  # ≈ 400-600 MB of Ditto-1M triplets (1280x720, 101 frames: ~1.8 MB per clip)
DEFAULT_PREVIEW_ROWS = 4
DEFAULT_ROW_GROUP_BYTES = 100_000_000
#: Bumped whenever the bytes written for the same rows change (writer settings, columns).
LAYOUT_VERSION = 1


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker process needs to make one shard (picklable)."""

    data_dir: str
    token: str | None
    on_bad_rows: str
    index: int
    segments: tuple[tuple[str, tuple[MetadataRow, ...]], ...]  # (metadata file the rows are numbered in, rows)
    captions: tuple[tuple[str, str], ...]  # (source path, caption) of the rows' sources
    row_group_bytes: int
    row_group_rows: int | None


@dataclass
class MirrorPlan:
    """What a mirror stores, decided from the metadata files alone."""

    data_dir: str
    composition: Composition
    configs: list[str]  # declared on the Hub: the requested ones and those mirrored before
    removed: list[str]  # mirrored before, gone from the release
    shards: list = field(default_factory=list)  # PlannedShard, parts first, then the preview
    preview: tuple[MetadataRow, ...] = ()

    @property
    def parts(self) -> list[Part]:
        return self.composition.parts_of(self.configs)

    @property
    def source_copies(self) -> tuple[int, int]:
        """(distinct source videos, copies stored: one per part that uses each)."""
        per_part = [set(part.sources) for part in self.parts]
        return len(set().union(*per_part)), sum(len(sources) for sources in per_part)


def part_folder(part: str) -> str:
    return f"{PARTS_DIR}/{part}"


def plan_mirror(
    data_dir: str,
    *,
    configs: list[str] | None = None,
    mirrored_before: list[str] = (),
    shard_rows: int = DEFAULT_SHARD_ROWS,
    preview_rows: int = DEFAULT_PREVIEW_ROWS,
    row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
    on_bad_rows: str = "raise",
    token: str | None = None,
) -> MirrorPlan:
    """Compose the release's metadata files and cut every part into shards; reads no video.

    ``configs``: the configs to mirror (default: every metadata file); ``mirrored_before``: configs
    a previous mirror declared, kept up to date.
    """
    from ditto_1m import release_storage_options
    from ditto_hf.hub.compose import PlannedShard

    if shard_rows < 1:
        raise DittoError(f"shard_rows must be at least 1, got {shard_rows}")
    release = ReleaseRoot(data_dir, release_storage_options(data_dir, None, token))
    composition = release_composition(release, BadRows(on_bad_rows))
    present = list(composition.files)
    unknown = [name for name in configs or [] if name not in composition.files]
    if unknown:
        stems = ", ".join(f"{metadata_stem_of(name)}.json" for name in unknown)
        raise DittoError(
            f"no metadata file for config(s) {', '.join(unknown)} under {release.display(METADATA_DIR)} (expected {stems}); "
            f"configs present: {', '.join(present)}"
        )
    if PREVIEW in composition.files and preview_rows:
        raise DittoError(
            f"{release.display(METADATA_DIR, 'preview.json')}: the config name 'preview' is taken by the mirror's preview; "
            "mirror without a preview (--preview-rows 0)"
        )
    removed = sorted(name for name in mirrored_before if name not in composition.files and name != PREVIEW)
    declared = sorted(set(configs or present) | (set(mirrored_before) & set(present)))
    plan = MirrorPlan(data_dir, composition, declared, removed)
    captions = load_captions(release)
    settings = {"row_group_bytes": row_group_bytes, "row_group_rows": None}
    for part in plan.parts:
        shown_as = composition.files[part.home].shown_as
        for index, rows in enumerate(_cut(part.rows, shard_rows)):
            task = _task(data_dir, token, on_bad_rows, index, ((shown_as, rows),), captions, settings)
            plan.shards.append(PlannedShard(part_folder(part.name), index, _fingerprint(task), len(rows), task))
    if preview_rows:
        segments = _preview(plan.parts, composition, preview_rows)
        plan.preview = tuple(row for _, rows in segments for row in rows)
        task = _task(data_dir, token, on_bad_rows, 0, segments, captions, {"row_group_bytes": row_group_bytes, "row_group_rows": 1})
        plan.shards.append(PlannedShard(PREVIEW, 0, _fingerprint(task), len(plan.preview), task))
    return plan


def _cut(rows: tuple[MetadataRow, ...], shard_rows: int) -> list[tuple[MetadataRow, ...]]:
    """Consecutive runs of at least ``shard_rows`` rows (the last may be shorter), cut between sources."""
    shards, current = [], []
    for _, group in itertools.groupby(rows, key=lambda row: row.source_path):
        current.extend(group)
        if len(current) >= shard_rows:
            shards.append(tuple(current))
            current = []
    if current:
        shards.append(tuple(current))
    return shards


def _preview(parts: list[Part], composition: Composition, per_category: int) -> tuple[tuple[str, tuple[MetadataRow, ...]], ...]:
    """The first ``per_category`` rows of each category, walking the parts in order."""
    taken: Counter = Counter()
    segments = []
    for part in parts:
        rows = []
        for row in part.rows:
            if taken[row.category] < per_category:
                taken[row.category] += 1
                rows.append(row)
        if rows:
            segments.append((composition.files[part.home].shown_as, tuple(rows)))
    return tuple(segments)


def _task(data_dir, token, on_bad_rows, index, segments, captions: dict[str, str], settings: dict) -> ShardTask:
    sources = dict.fromkeys(row.source_path for _, rows in segments for row in rows)
    return ShardTask(
        data_dir=data_dir,
        token=token,
        on_bad_rows=on_bad_rows,
        index=index,
        segments=segments,
        captions=tuple((source, captions[source]) for source in sources if source in captions),
        **settings,
    )


def _fingerprint(task: ShardTask) -> str:
    """SHA-256 of what decides a shard's bytes: its rows (with captions) and the writer settings."""
    from ditto_hf.schema import TRIPLET_FEATURES

    captions = dict(task.captions)
    payload = {
        "layout": LAYOUT_VERSION,
        "features": TRIPLET_FEATURES.to_dict(),
        "row_group_bytes": task.row_group_bytes,
        "row_group_rows": task.row_group_rows,
        "rows": [
            [row.source_path, row.edited_path, row.instruction, captions.get(row.source_path, "")]
            for _, rows in task.segments
            for row in rows
        ],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# -- making a shard (runs in a worker process) ------------------------------------------------------

_BUILDERS: dict = {}


class _KeptBadRows(BadRows):
    """BadRows that also keeps the message of every row it skips."""

    def __init__(self, policy: str) -> None:
        super().__init__(policy)
        self.messages: list[str] = []

    def handle(self, error) -> None:
        super().handle(error)
        self.messages.append(str(error))


def _builder(task: ShardTask):
    """This process's builder of the release (its readers stay open from one shard to the next)."""
    key = (os.getpid(), task.data_dir, task.token, task.on_bad_rows)
    if key not in _BUILDERS:
        from ditto_1m import Ditto1M

        builder = Ditto1M(data_dir=task.data_dir, on_bad_rows=task.on_bad_rows, token=task.token)
        builder.bad_rows = _KeptBadRows(task.on_bad_rows)
        _BUILDERS[key] = builder
    return _BUILDERS[key]


def open_release_readers(tasks: list[ShardTask]) -> None:
    """Open every category the tasks read once, so that seek indexes a packed release lacks are
    built (or downloaded) into the shared cache once, before the workers start."""
    from ditto_1m import open_readers

    builder = _builder(tasks[0])
    readers = open_readers(
        builder.release, builder.index_cache, strict=builder.config.on_bad_rows == "raise", spacing=builder.config.seek_point_spacing
    )
    categories = {
        path.split("/", 1)[0] for task in tasks for _, rows in task.segments for row in rows for path in (row.source_path, row.edited_path)
    }
    for category in sorted(categories):
        try:
            readers.get(category)
        except DittoError:  # a category that cannot be read: the rows that need it are bad rows, handled in the shards
            if builder.config.on_bad_rows == "raise":
                raise


def encode_shard(task: ShardTask, path: str):
    """Read the videos of the task's rows and write them as the parquet shard ``path``."""
    import pyarrow as pa

    from ditto_hf.hub.shards import write_shard
    from ditto_hf.schema import TRIPLET_FEATURES

    builder = _builder(task)
    already = len(builder.bad_rows.messages)
    captions = dict(task.captions)
    schema = TRIPLET_FEATURES.arrow_schema

    def source_groups():
        for shown_as, rows in task.segments:
            examples = builder.examples_of(rows, captions, shown_as)
            for _, group in itertools.groupby(examples, key=lambda example: example["source_path"]):
                yield pa.Table.from_pylist([TRIPLET_FEATURES.encode_example(example) for example in group], schema=schema)

    shard = write_shard(
        source_groups(),
        TRIPLET_FEATURES,
        path,
        index=task.index,
        row_group_bytes=task.row_group_bytes,
        row_group_rows=task.row_group_rows,
    )
    return replace(shard, skipped_rows=tuple(builder.bad_rows.messages[already:]))


# -- publishing ---------------------------------------------------------------------------------------


def mirror_release(
    data_dir: str,
    repo_id: str,
    *,
    configs: list[str] | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    preview_rows: int = DEFAULT_PREVIEW_ROWS,
    row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
    on_bad_rows: str = "raise",
    num_workers: int = 2,
    commit_every: int | None = None,
    token: str | None = None,
    private: bool | None = None,
    workdir: str | os.PathLike | None = None,
    on_plan=None,
    on_shard=None,
):
    """Mirror ``configs`` of the release at ``data_dir`` (default: every metadata file) into ``repo_id``.

    Configs the repo mirrored before are kept up to date; rerun after an interruption and only the
    missing shards are made. ``on_plan(plan)`` is called before any shard is made, ``on_shard(shard,
    record, already_on_hub)`` after each. Returns the :class:`~ditto_hf.hub.compose.ComposedResult`.

    With ``num_workers > 1`` shards are made in spawned processes: in a script, call this under
    ``if __name__ == "__main__":``.
    """
    from ditto_hf.hub.commits import DEFAULT_COMMIT_EVERY
    from ditto_hf.hub.compose import ComposedConfig, publish_composed, remote_composition
    from ditto_hf.schema import TRIPLET_FEATURES

    before = remote_composition(repo_id, token) or {}
    mirrored_before = [name for name in before.get("configs", {}) if name != PREVIEW]
    plan = plan_mirror(
        data_dir,
        configs=configs,
        mirrored_before=mirrored_before,
        shard_rows=shard_rows,
        preview_rows=preview_rows,
        row_group_bytes=row_group_bytes,
        on_bad_rows=on_bad_rows,
        token=token,
    )
    for name in plan.removed:
        logger.warning("config %s was mirrored before but has no metadata file any more: removing it from %s", name, repo_id)
    if on_plan is not None:
        on_plan(plan)
    composition = plan.composition
    declared = [
        ComposedConfig(
            name,
            tuple(part_folder(part) for part in composition.configs[name]),
            expected_rows=composition.files[name].entries,
            about={"metadata_file": f"{METADATA_DIR}/{metadata_stem_of(name)}.json", "bad_entries": composition.files[name].bad_entries},
        )
        for name in plan.configs
    ]
    if plan.preview:
        declared.append(ComposedConfig(PREVIEW, (PREVIEW,), default=True, about={"rows_per_category": preview_rows}))
    return publish_composed(
        repo_id,
        plan.shards,
        declared,
        encode_shard,
        features=TRIPLET_FEATURES,
        managed=(f"{PARTS_DIR}/", f"{PREVIEW}/"),
        layout=_layout_text(plan, preview_rows),
        copies=(PREVIEW,) if plan.preview else (),
        removed=tuple(plan.removed) + (() if plan.preview else (PREVIEW,)),
        extra={"shared_keys": composition.shared_keys, "parts": _parts_summary(plan)},
        provenance=_provenance(data_dir),
        title="Mirror",
        token=token,
        num_workers=num_workers,
        commit_every=commit_every or DEFAULT_COMMIT_EVERY,
        private=private,
        workdir=workdir,
        prepare=open_release_readers,
        on_shard=on_shard,
    )


def _parts_summary(plan: MirrorPlan) -> dict:
    return {
        part_folder(part.name): {"configs": list(part.configs), "rows": len(part.rows), "sources": len(part.sources)} for part in plan.parts
    }


def _layout_text(plan: MirrorPlan, preview_rows: int) -> str:
    distinct, copies = plan.source_copies
    preview = (
        f" `{PREVIEW}` (the default config) holds the first {preview_rows} triplets of each category, one row per row group,"
        " so the viewer opens at once; its rows repeat rows of the parts."
        if plan.preview
        else ""
    )
    return (
        "Every triplet of the release is stored once, in one of the disjoint parts under `parts/`, and each config is "
        "the list of parts it is made of (table above): `load_dataset(repo, CONFIG)` yields exactly the rows of "
        "`training_metadata/<CONFIG>.json` (`all` is `global+local.json`). Rows come part by part, in the order the "
        "config lists them; inside a part they are sorted by source video, then edited video, so a source's edits are "
        "neighbours. Each row embeds both videos and is a complete triplet on its own; a source shared by several edits "
        f"of a part is stored once per row group that holds them ({distinct} source videos, stored {copies} times "
        f"across the parts).{preview}"
    )


def _provenance(data_dir: str) -> str:
    """How the mirror was made; names where the release came from without this machine's paths."""
    import datasets
    import huggingface_hub

    if data_dir.rstrip("/") == DEFAULT_ROOT:
        origin = "the original Ditto-1M release (QingyanBai/Ditto-1M)"
    elif "://" in data_dir:
        origin = f"a copy of the Ditto-1M release at {data_dir.rstrip('/')}"
    else:
        origin = "a local copy of the Ditto-1M release"
    return (
        f"Converted from {origin} "
        f"with `ditto-hf mirror` (ditto-hf {__version__}, datasets {datasets.__version__}, "
        f"huggingface_hub {huggingface_hub.__version__}). Videos are the release's mp4 files, byte for byte."
    )
