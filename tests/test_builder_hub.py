"""The ``ditto_1m`` builder streaming ``hf://`` roots through the loopback Hub server."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch
from datasets import load_dataset
from huggingface_hub import HfApi

import ditto_hf  # noqa: F401  (registers "ditto_1m")
from ditto_hf.testing.release import MiniRelease, make_release, pack_release
from ditto_hf.video import read_frames

SPACING = 64 * 1024


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, MiniRelease]:
    extracted = make_release(tmp_path_factory.mktemp("hub") / "extracted")
    return {"extracted": extracted, "packed": pack_release(extracted, tmp_path_factory.mktemp("hub") / "packed", part_size=4096)}


def upload(hub_server, release: MiniRelease, name: str) -> str:
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    repo_id = f"ditto/{name}"
    api.create_repo(repo_id, repo_type="dataset")
    api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=release.root, commit_message="Mini Ditto-1M release")
    return f"hf://datasets/{repo_id}"


def stream(root: str, config: str, cache_dir, **options):
    return load_dataset(
        "ditto_1m",
        name=config,
        data_dir=root,
        streaming=True,
        split="train",
        cache_dir=str(cache_dir),
        seek_point_spacing=SPACING,
        **options,
    )


def key(row: dict) -> tuple:
    return (row["source_path"], row["edited_path"], row["instruction"], row["caption"])


def expected(release: MiniRelease, config: str) -> Counter:
    return Counter(
        (row["source_path"], row["edited_path"], row["instruction"], release.caption_of(row["source_path"])) for row in release.rows[config]
    )


@pytest.mark.parametrize("layout", ["extracted", "packed"])
def test_every_config_streams_from_the_hub(hub_server, releases, layout, tmp_path):
    release = releases[layout]
    root = upload(hub_server, release, f"mini-{layout}")
    for config in release.configs:
        rows = list(stream(root, config, tmp_path / "cache").decode(False))
        assert Counter(map(key, rows)) == expected(release, config), config
        for row in rows:
            assert row["category"] == row["edited_path"].split("/")[0]
            assert row["source"]["bytes"] == release.files[row["source_path"]].read_bytes()
            assert row["edited"]["bytes"] == release.files[row["edited_path"]].read_bytes()
    assert hub_server.requests["GET resolve"] > 0


def test_decoded_frames_from_the_hub_equal_the_files(hub_server, releases, tmp_path):
    release = releases["packed"]
    root = upload(hub_server, release, "mini-packed")
    rows = list(stream(root, "global", tmp_path / "cache"))
    assert len(rows) == len(release.rows["global"])
    for row in rows:
        assert torch.equal(read_frames(row["source"]), read_frames(release.files[row["source_path"]]))
        assert torch.equal(read_frames(row["edited"]), read_frames(release.files[row["edited_path"]]))


def test_index_command_publishes_indexes_that_readers_download(hub_server, releases, tmp_path, monkeypatch, caplog):
    import datasets.config
    from click.testing import CliRunner

    from ditto_hf.builders.packed import index_name
    from ditto_hf.cli import cli

    release = releases["packed"]
    root = upload(hub_server, release, "mini-packed")
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "publisher-cache")
    result = CliRunner().invoke(cli, ["index", root, "--spacing", str(SPACING)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    repo_files = HfApi(endpoint=hub_server.endpoint).list_repo_files(root.removeprefix("hf://datasets/"), repo_type="dataset")
    for category in ("source", "local", "global_style1", "global_freeform1"):
        assert f"videos/{category}/{index_name(category)}" in repo_files
        assert category in result.output

    caplog.set_level(logging.WARNING, logger="ditto_hf.builders")
    hub_server.reset_counters()
    rows = list(stream(root, "local", tmp_path / "reader-cache").decode(False))
    assert len(rows) == len(release.rows["local"])
    assert "scanning the archive" not in caplog.text
    needed = [release.root / "training_metadata/local.json", release.root / "source_video_captions/captions.json"]
    for category in ("source", "local"):  # each archive part and seek index at most once
        needed += (release.root / "videos" / category).glob(f"{category}.tar.gz.*")
        needed += (tmp_path / "publisher-cache").rglob(f"{category}-*.index.sqlite")
    assert hub_server.bytes_served <= sum(path.stat().st_size for path in needed)


def test_a_sparse_member_read_fetches_only_the_blocks_its_span_needs(hub_server, tmp_path, monkeypatch):
    """Reading pairs of neighbouring clips of an archive over ``hf://`` fetches no block outside the
    compressed spans the members need (from the seek point before each to the one after it), however
    long the in-order run of misses grows over the pair."""
    import bisect

    from ditto_hf.builders.members import Member
    from ditto_hf.builders.packed import DIRECT_READ_CHUNK, MIN_REMOTE_BLOCK_SIZE, PackedCategory, find_parts
    from ditto_hf.builders.release import ReleaseRoot

    extracted = make_release(tmp_path / "extracted", dirs=1, sources_per_dir=12, frames=16, size=192, noise=40)
    release = pack_release(extracted, tmp_path / "packed", part_size=1 << 20)
    root = ReleaseRoot(upload(hub_server, release, "mini-big-clips"))
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    spacing = MIN_REMOTE_BLOCK_SIZE
    PackedCategory(root, "source", find_parts(root, "source"), tmp_path / "publisher", spacing=spacing).publish_index()

    reader = PackedCategory(root, "source", find_parts(root, "source"), tmp_path / "reader", spacing=spacing).open()
    table = reader.member_table().sort_by("offset").to_pylist()  # from the index alone: nothing fetched yet
    members = [Member("source", row["offset"], row["size"], row["path"]) for row in table if row["path"] in release.files]
    assert len(members) == 12
    assert min(member.size for member in members) > 4 * MIN_REMOTE_BLOCK_SIZE, "clips must span several blocks"
    archive_size = sum(part.size for part in reader.parts)
    hub_server.reset_counters()
    needed_blocks: set[int] = set()
    for member in members[0:2] + members[5:7] + members[10:12]:  # a run of misses grows over a pair
        assert reader.read(member) == release.files[member.path].read_bytes()
        points, offsets = reader._seek_points, reader._seek_offsets  # uncompressed and compressed
        before = bisect.bisect_right(points, member.offset) - 1  # -1: none, inflate from the stream start
        after = bisect.bisect_left(points, member.offset + member.size)
        start = offsets[before] if before >= 0 else 0
        end = min(offsets[after] + 1 + DIRECT_READ_CHUNK if after < len(points) else 1 << 62, archive_size)
        needed_blocks |= set(range(start // MIN_REMOTE_BLOCK_SIZE, -(-end // MIN_REMOTE_BLOCK_SIZE)))
    reader.close()
    assert 0 < hub_server.bytes_served <= len(needed_blocks) * MIN_REMOTE_BLOCK_SIZE
