"""The cached plan: computed once per release state, equal to the row-by-row plan, shared by workers."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

import ditto_hf  # noqa: F401  (registers "ditto_1m")
from ditto_1m import Ditto1M
from ditto_hf.builders.plan import BadRows, Readers, plan_triplets, shard_triplets
from ditto_hf.builders.plan_cache import RowColumns, open_plan, parse_rows
from ditto_hf.builders.release import ReleaseRoot, parse_row
from ditto_hf.errors import BadRowError
from ditto_hf.testing.release import MiniRelease, copy_release, make_release, pack_release, write_json

SPACING = 64 * 1024


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> MiniRelease:
    return make_release(tmp_path_factory.mktemp("plan") / "extracted", dirs=3, sources_per_dir=2)


@pytest.fixture(scope="module")
def packed(extracted, tmp_path_factory) -> MiniRelease:
    return pack_release(extracted, tmp_path_factory.mktemp("plan") / "packed", part_size=4096)


def builder(root, config: str, cache: Path, **options) -> Ditto1M:
    return Ditto1M(config_name=config, data_dir=str(root), cache_dir=str(cache), seek_point_spacing=SPACING, **options)


def planned(root, config: str, cache: Path, **options) -> tuple[list, list[Path]]:
    """The plan's shards as (id, [(row index, source member, edited member, caption)]) and the plan files."""
    generator = builder(root, config, cache, **options)._split_generators(None)[0]
    shards = [
        (span.id, [(t.row.index, t.source, t.edited, t.caption) for t in open_plan(span.plan).triplets(span)])
        for span in generator.gen_kwargs["shards"]
    ]
    return shards, sorted((cache / "ditto_1m" / "plans").glob("*.arrow"))


@pytest.mark.parametrize("layout", ["extracted", "packed"])
@pytest.mark.parametrize("num_shards", [1, 2, 256])
def test_cached_plan_equals_the_row_by_row_plan(request, tmp_path, layout, num_shards):
    release = request.getfixturevalue(layout)
    shards, _ = planned(release.root, "all", tmp_path, num_shards=num_shards)
    root = ReleaseRoot(str(release.root))
    shown_as = "global+local.json"
    rows = [parse_row(index, entry, shown_as) for index, entry in enumerate(release.rows["all"])]
    readers = Readers(root, tmp_path / "readers", strict=True, spacing=SPACING)
    captions = {path: caption for path, caption in release.captions.items()}
    expected = shard_triplets(plan_triplets(rows, readers, captions, BadRows("raise"), shown_as), num_shards)
    readers.close()
    assert shards == [(shard.id, [(t.row.index, t.source, t.edited, t.caption) for t in shard.triplets]) for shard in expected]
    assert sum(len(triplets) for _, triplets in shards) == len(release.rows["all"])


def test_a_plan_is_computed_once_and_reused(packed, tmp_path):
    first, files = planned(packed.root, "local", tmp_path)
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    second, files_again = planned(packed.root, "local", tmp_path)
    assert second == first and files_again == files and files[0].stat().st_mtime_ns == stamp


def test_a_changed_metadata_file_gives_a_new_plan(packed, tmp_path):
    copy = copy_release(packed, tmp_path / "release")
    before, files = planned(copy.root, "local", tmp_path / "cache")
    rows = packed.rows["local"][:-2]
    write_json(copy.root / "training_metadata" / "local.json", rows)
    after, files_after = planned(copy.root, "local", tmp_path / "cache")
    assert len(files_after) == 2 and files[0] in files_after
    assert sum(len(triplets) for _, triplets in after) == len(rows) == sum(len(triplets) for _, triplets in before) - 2


def test_a_changed_seek_index_gives_a_new_plan(packed, tmp_path):
    from ditto_hf.builders.packed import PackedCategory, find_parts

    copy = copy_release(packed, tmp_path / "release")
    root = ReleaseRoot(str(copy.root))
    before, files = planned(copy.root, "local", tmp_path / "cache")
    PackedCategory(root, "local", find_parts(root, "local"), tmp_path / "publisher", spacing=SPACING).publish_index()
    after, files_after = planned(copy.root, "local", tmp_path / "cache")
    assert len(files_after) == 2 and after == before  # same archive: a new plan with the same content
    PackedCategory(root, "local", find_parts(root, "local"), tmp_path / "publisher-2", spacing=2 * SPACING).publish_index()
    _, files_third = planned(copy.root, "local", tmp_path / "cache")
    assert len(files_third) == 3


def test_a_changed_archive_gives_a_new_plan(packed, tmp_path):
    copy = copy_release(packed, tmp_path / "release")
    _, files = planned(copy.root, "local", tmp_path / "cache")
    extra = copy.root / "videos" / "local" / "local.tar.gz.99"
    extra.write_bytes(b"")
    with pytest.raises(Exception, match="missing"):  # parts 02..98 missing: the listing changed, so it plans again
        planned(copy.root, "local", tmp_path / "cache")
    extra.unlink()
    _, files_again = planned(copy.root, "local", tmp_path / "cache")
    assert files_again == files


def test_skipped_rows_are_reported_again_from_a_cached_plan(extracted, tmp_path, caplog):
    copy = copy_release(extracted, tmp_path / "release")
    rows = [*extracted.rows["local"], {"source_path": "source/0000/missing.mp4", "instruction": "x", "edited_path": "local/0000/m_1.mp4"}]
    write_json(copy.root / "training_metadata" / "local.json", rows)
    caplog.set_level("WARNING", logger="ditto_hf.builders")
    first = builder(copy.root, "local", tmp_path / "cache", on_bad_rows="skip")
    first._split_generators(None)
    assert first.bad_rows.skipped == 1 and f"row {len(rows) - 1}: source_path source/0000/missing.mp4 is not in the release" in caplog.text
    caplog.clear()
    second = builder(copy.root, "local", tmp_path / "cache", on_bad_rows="skip")
    second._split_generators(None)
    assert second.bad_rows.skipped == 1 and "skipped 1 bad row(s)" in caplog.text and "cached plan" in caplog.text


def test_fast_row_parsing_agrees_with_parse_row():
    entries = [
        {"source_path": "source/0000/a.mp4", "instruction": "Make it red.", "edited_path": "local/0000/a_1.mp4"},
        {"source_path": "./source/0000/b.mp4", "instruction": "Make it blue.", "edited_path": "local\\0000\\b_1.mp4"},
        {"source_path": "source//0000/c.mp4", "instruction": "x", "edited_path": "local/0000/./c_1.mp4"},
        {"source_path": "/source/0000/d.mp4", "instruction": "x", "edited_path": "local/0000/d_1.mp4"},
        {"source_path": "source/../0000/e.mp4", "instruction": "x", "edited_path": "local/0000/e_1.mp4"},
        {"source_path": "source/0000/f.mp4", "instruction": 3, "edited_path": "local/0000/f_1.mp4"},
        {"source_path": "source/0000/g.mp4", "edited_path": "local/0000/g_1.mp4"},
        ["not", "an", "object"],
        {"source_path": "source/0000/..", "instruction": "x", "edited_path": "local/0000/h_1.mp4"},
    ]
    bad = BadRows("skip")
    expected, errors = RowColumns(), 0
    for index, entry in enumerate(entries):
        try:
            expected.append(parse_row(index, entry, "m.json"))
        except BadRowError:
            errors += 1
    assert parse_rows(entries, bad, "m.json") == expected and len(expected) == 3
    assert bad.skipped == errors == 6


def test_two_dataloader_workers_share_one_cached_plan(packed, tmp_path):
    """Each worker opens the one plan file the parent wrote and reads its shards from it; no worker plans again."""
    from datasets import load_dataset
    from torch.utils.data import DataLoader

    cache = tmp_path / "cache"
    dataset = load_dataset(
        "ditto_1m", name="all", data_dir=str(packed.root), streaming=True, split="train", cache_dir=str(cache), num_shards=2
    )
    plans = sorted((cache / "ditto_1m" / "plans").glob("*.arrow"))
    assert len(plans) == 1

    def where(row: dict) -> dict:
        opened = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if os.path.islink(f"/proc/self/fd/{fd}")]
        return {"pid": os.getpid(), "mapped": str(plans[0]) in opened}

    loader = DataLoader(dataset.select_columns(["edited_path"]).map(where), batch_size=None, num_workers=2)
    seen = list(loader)
    assert Counter(row["edited_path"] for row in seen) == Counter(row["edited_path"] for row in packed.rows["all"])
    assert len({row["pid"] for row in seen} - {os.getpid()}) == 2 and all(row["mapped"] for row in seen)
    assert sorted((cache / "ditto_1m" / "plans").glob("*.arrow")) == plans


def test_plan_file_is_compact_and_columnar(packed, tmp_path):
    _, files = planned(packed.root, "all", tmp_path)
    plan = open_plan(files[0])
    assert plan.schema.names[:4] == ["index", "source_path", "edited_path", "instruction"]
    spans = json.loads(plan.schema.metadata[b"ditto_hf.plan"])["spans"]
    assert len(plan) == len(packed.rows["all"]) and spans
    assert plan.reader.num_record_batches == sum(batches for *_, batches in spans)  # shards never share a batch
