"""The ``ditto_1m`` builder on a miniature release, both layouts, from a local path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path

import pytest
import torch
from datasets import Dataset, IterableDataset, load_dataset
from datasets.distributed import split_dataset_by_node

import ditto_hf  # noqa: F401  (registers "ditto_1m")
from ditto_hf.testing.release import MiniRelease, make_release, pack_release, write_json
from ditto_hf.video import read_frames

SPACING = 64 * 1024  # small gzip checkpoint spacing so the tiny archives get real seek points


@pytest.fixture(scope="session")
def extracted_release(tmp_path_factory) -> MiniRelease:
    return make_release(tmp_path_factory.mktemp("ditto") / "extracted")


@pytest.fixture(scope="session")
def packed_release(extracted_release, tmp_path_factory) -> MiniRelease:
    return pack_release(extracted_release, tmp_path_factory.mktemp("ditto") / "packed", part_size=4096)


@pytest.fixture(params=["extracted", "packed"])
def release(request) -> MiniRelease:
    return request.getfixturevalue(f"{request.param}_release")


def stream(root, config: str, **kwargs) -> IterableDataset:
    kwargs.setdefault("seek_point_spacing", SPACING)
    return load_dataset("ditto_1m", name=config, data_dir=str(root), streaming=True, split="train", **kwargs)


def row_key(row: dict) -> tuple:
    return (row["source_path"], row["edited_path"], row["instruction"])


def check_rows_match(release: MiniRelease, config: str, rows: list[dict], *, decode: bool) -> None:
    """Every yielded triplet is a metadata row, exactly once, with the videos that were put in."""
    assert Counter(map(row_key, rows)) == Counter(map(row_key, release.rows[config]))
    for row in rows:
        assert row["category"] == row["edited_path"].split("/")[0]
        assert row["caption"] == release.caption_of(row["source_path"])
        for column in ("source", "edited"):
            expected_file = release.files[row[f"{column}_path"]]
            if decode:
                assert torch.equal(read_frames(row[column]), read_frames(expected_file)), (config, row[f"{column}_path"])
            else:
                assert row[column]["bytes"] == expected_file.read_bytes()
                assert row[column]["path"] == row[f"{column}_path"]


def test_release_fixture_is_real(extracted_release, packed_release):
    assert extracted_release.configs == ["all", "global", "global_style", "local", "local_replace", "sim2real"]
    assert (extracted_release.root / "videos/source/source").is_dir(), "the extra extraction level is exercised"
    parts = sorted((packed_release.root / "videos/local").glob("local.tar.gz.*"))
    assert len(parts) > 1 and parts[0].name == "local.tar.gz.01"
    first, second = (read_frames(extracted_release.files[path]) for path in list(extracted_release.files)[:2])
    assert first.shape == (8, 32, 32, 3) and not torch.equal(first, second)


def test_configs_are_the_metadata_files_present(extracted_release, tmp_path):
    from ditto_hf.registration import builder_configs

    assert sorted(config.name for config in builder_configs(str(extracted_release.root))) == extracted_release.configs
    copy = tmp_path / "release"
    write_json(copy / "training_metadata" / "my_subset.json", extracted_release.rows["local"][:2])
    assert [config.name for config in builder_configs(str(copy))] == ["my_subset"]


def test_every_config_streams_with_decoded_frames_equal_to_the_files(release):
    rows = list(stream(release.root, "all"))
    check_rows_match(release, "all", rows, decode=True)
    assert {row["caption"] for row in rows} - {""}, "captions are joined"
    assert "" in {row["caption"] for row in rows}, "a source without caption gets an empty string"


@pytest.mark.parametrize("config", ["global", "global_style", "local", "local_replace", "sim2real"])
def test_each_config_yields_its_rows_and_bytes(release, config):
    dataset = stream(release.root, config).decode(False)
    check_rows_match(release, config, list(dataset), decode=False)


def test_default_config_is_all(extracted_release):
    dataset = load_dataset("ditto_1m", data_dir=str(extracted_release.root), streaming=True, split="train")
    assert dataset.config_name == "all"
    assert sum(1 for _ in dataset.decode(False)) == len(extracted_release.rows["all"])


def test_unknown_config_names_the_configs_present(extracted_release):
    with pytest.raises(ValueError, match="local_replace"):
        stream(extracted_release.root, "no_such_config")


def test_non_streaming_load_prepares_a_dataset(packed_release):
    dataset = load_dataset("ditto_1m", name="local_replace", data_dir=str(packed_release.root), split="train", seek_point_spacing=SPACING)
    assert isinstance(dataset, Dataset) and len(dataset) == len(packed_release.rows["local_replace"])
    check_rows_match(packed_release, "local_replace", list(dataset), decode=True)


def test_builder_class_streams_directly(packed_release):
    from ditto_1m import Ditto1M

    builder = Ditto1M(config_name="local", data_dir=str(packed_release.root), seek_point_spacing=SPACING)
    rows = list(builder.as_streaming_dataset("train").decode(False))
    check_rows_match(packed_release, "local", rows, decode=False)


def test_sources_and_edits_of_a_folder_are_read_together(packed_release):
    rows = list(stream(packed_release.root, "all").select_columns(["source_path", "edited_path"]))
    folders = [row["source_path"].split("/")[1] for row in rows]
    assert folders == sorted(folders), "rows come folder by folder"
    sources = [row["source_path"] for row in rows]
    runs = [source for index, source in enumerate(sources) if index == 0 or sources[index - 1] != source]
    assert len(runs) == len(set(sources)), "the edits of one source are consecutive (its bytes are read once)"


def test_shards_split_by_node_cover_every_triplet_once(release):
    dataset = stream(release.root, "all")
    assert dataset.n_shards == 3  # one per 4-digit folder of the fixture
    seen = Counter()
    for rank in range(2):
        part = split_dataset_by_node(dataset, rank=rank, world_size=2).select_columns(["edited_path"])
        seen.update(row["edited_path"] for row in part)
    assert seen == Counter(row["edited_path"] for row in release.rows["all"])


def test_dataloader_with_two_workers_covers_every_triplet_once(packed_release):
    from torch.utils.data import DataLoader

    dataset = stream(packed_release.root, "all", num_shards=2).select_columns(["edited_path", "instruction"])
    assert dataset.n_shards == 2
    loader = DataLoader(dataset, batch_size=None, num_workers=2)
    seen = Counter(row["edited_path"] for row in loader)
    assert seen == Counter(row["edited_path"] for row in packed_release.rows["all"])


def test_frame_helper_follows_the_diffsynth_convention(packed_release):
    from ditto_hf.training import diffsynth_crop_resize, triplet_frames

    row = next(iter(stream(packed_release.root, "local")))
    source, edited, instruction = triplet_frames(row, num_frames=5, size=(16, 24))
    assert source.shape == edited.shape == (5, 3, 24, 16) and source.dtype == torch.uint8
    assert instruction == row["instruction"]
    expected = diffsynth_crop_resize(read_frames(packed_release.files[row["source_path"]], num_frames=5, layout="TCHW"), (16, 24))
    assert torch.equal(source, expected)


def test_frame_helper_as_a_map_transform(packed_release):
    from ditto_hf.training import frames_transform

    dataset = stream(packed_release.root, "local_replace").map(frames_transform(num_frames=4, size=(16, 16)))
    row = next(iter(dataset))
    assert row["source_frames"].shape == (4, 3, 16, 16) and row["edited_frames"].shape == (4, 3, 16, 16)


@pytest.mark.parametrize("first", ["ditto_hf", "datasets"])
def test_registration_works_in_a_fresh_interpreter(packed_release, first):
    """A datasets upgrade that moves the packaged-module registry must fail here, loudly; the
    registration must work whichever of ditto_hf and datasets is imported first."""
    second = "datasets" if first == "ditto_hf" else "ditto_hf"
    script = textwrap.dedent(
        f"""
        import sys, warnings
        warnings.filterwarnings("error", message=".*ditto_1m.*", category=RuntimeWarning)  # registration failed: fail
        import {first}
        assert ("datasets" in sys.modules) == ({first!r} == "datasets")  # import ditto_hf alone loads no datasets
        import {second}
        import datasets.load, datasets.packaged_modules
        from datasets import load_dataset
        assert ditto_hf.registration.is_registered()
        assert "ditto_1m" in datasets.packaged_modules._PACKAGED_DATASETS_MODULES
        ditto_hf.register()  # idempotent
        assert datasets.load.PackagedDatasetModuleFactory.ditto_hf_original.__bases__[0].__name__ == "_DatasetModuleFactory"
        dataset = load_dataset("ditto_1m", name="sim2real", data_dir={str(packed_release.root)!r}, streaming=True,
                               split="train", seek_point_spacing={SPACING}, verify_videos=False)
        rows = list(dataset.decode(False))
        print(len(rows), rows[0]["category"])
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == [str(len(packed_release.rows["sim2real"])), "source"]


def test_a_published_index_is_used_instead_of_scanning(packed_release, tmp_path, caplog):
    from ditto_hf.builders.packed import PackedCategory, find_parts
    from ditto_hf.builders.release import ReleaseRoot
    from ditto_hf.testing.release import copy_release

    copy = copy_release(packed_release, tmp_path / "release")
    root = ReleaseRoot(str(copy.root))
    publisher = PackedCategory(root, "local", find_parts(root, "local"), tmp_path / "cache-a", spacing=SPACING)
    published = Path(publisher.publish_index())
    assert published.name == "local.tar.gz.index.sqlite" and published.parent == copy.root / "videos/local"
    reader = PackedCategory(root, "local", find_parts(root, "local"), tmp_path / "cache-b", spacing=SPACING)
    caplog.set_level("WARNING", logger="ditto_hf.builders")
    assert reader.index_path().read_bytes() == published.read_bytes()
    assert "scanning the archive" not in caplog.text


def test_stream_command_prints_a_table_of_triplets(packed_release):
    from click.testing import CliRunner

    from ditto_hf.cli import cli

    runner = CliRunner(env={"COLUMNS": "250"})
    result = runner.invoke(cli, ["stream", "local", "--data-dir", str(packed_release.root), "--limit", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.count("8 frames 32x32 @ 8 fps") == 4  # source and edited of two triplets
    assert "Replace the object" in result.output and "local/0000/" in result.output
    unknown = runner.invoke(cli, ["stream", "nope", "--data-dir", str(packed_release.root)])
    assert unknown.exit_code == 1 and "configs present: all, global" in unknown.output


def test_index_command_publishes_the_release_spacing_by_default(packed_release, tmp_path, monkeypatch):
    import datasets
    from click.testing import CliRunner

    from ditto_hf.builders.packed import PUBLISHED_SEEK_POINT_SPACING, PackedCategory, find_parts
    from ditto_hf.builders.release import ReleaseRoot
    from ditto_hf.cli import cli
    from ditto_hf.testing.release import copy_release

    copy = copy_release(packed_release, tmp_path / "release")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "publisher-cache"))
    result = CliRunner().invoke(cli, ["index", str(copy.root), "--category", "local"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    root = ReleaseRoot(str(copy.root))
    reader = PackedCategory(root, "local", find_parts(root, "local"), tmp_path / "reader")
    assert reader._read_info(reader.index_path()).spacing == PUBLISHED_SEEK_POINT_SPACING


def test_remote_ranges_coalesce_in_order_reads_and_fetch_only_sparse_spans():
    import random

    from ditto_hf.builders.packed import MIN_REMOTE_BLOCK_SIZE, REMOTE_BLOCK_SIZE, RemoteRanges

    data = random.Random(0).randbytes(64 * MIN_REMOTE_BLOCK_SIZE + 123)
    requests = []

    def fetch(start: int, end: int) -> bytes:
        requests.append((start, end))
        return data[start:end]

    ranges = RemoteRanges(fetch, len(data), keep=REMOTE_BLOCK_SIZE * 4)
    assert b"".join(ranges.read(offset, 10_000) for offset in range(0, len(data), 10_000)) == data  # in order: every byte once
    sizes = [end - start for start, end in requests]
    assert sum(sizes) == len(data) and len(requests) < 10 and max(sizes) == REMOTE_BLOCK_SIZE  # growing requests
    requests.clear()
    sparse = RemoteRanges(fetch, len(data), keep=REMOTE_BLOCK_SIZE)
    for offset in range(0, len(data) - 1000, 5 * MIN_REMOTE_BLOCK_SIZE):
        assert sparse.read(offset + 7, 1000) == data[offset + 7 : offset + 1007]
    assert all(end - start == MIN_REMOTE_BLOCK_SIZE for start, end in requests)  # only the block each read needs


def test_remote_read_ahead_stops_at_the_span_being_read():
    import random

    from ditto_hf.builders.packed import MIN_REMOTE_BLOCK_SIZE, REMOTE_BLOCK_SIZE, RemoteRanges

    data = random.Random(1).randbytes(40 * MIN_REMOTE_BLOCK_SIZE)
    requests = []

    def fetch(start: int, end: int) -> bytes:
        requests.append((start, end))
        return data[start:end]

    ranges = RemoteRanges(fetch, len(data), keep=REMOTE_BLOCK_SIZE * 4)
    span_end = 9 * MIN_REMOTE_BLOCK_SIZE + 5
    with ranges.reading(span_end):  # read in order in small pieces: the run grows, but not past the span
        got = b"".join(ranges.read(offset, 4096) for offset in range(0, span_end, 4096))
    assert got == data[: len(got)] and len(got) >= span_end
    assert max(end for _, end in requests) == 10 * MIN_REMOTE_BLOCK_SIZE  # the block holding the span's last byte
    requests.clear()
    assert ranges.read(10 * MIN_REMOTE_BLOCK_SIZE, 10) == data[10 * MIN_REMOTE_BLOCK_SIZE :][:10]  # outside a span it runs on
    assert requests[0][1] - requests[0][0] > MIN_REMOTE_BLOCK_SIZE


def test_a_folder_is_read_in_archive_order_and_rows_keep_the_plan_order(packed_release, monkeypatch):
    import ditto_1m
    from ditto_hf.builders.packed import PackedCategory

    original, offsets = PackedCategory.read, []

    def recording_read(self, member, then=()):
        offsets.append((member.category, member.offset))
        return original(self, member, then)

    def streamed(window_bytes: int) -> tuple[list[dict], int]:
        monkeypatch.setattr(ditto_1m, "READ_WINDOW_BYTES", window_bytes)
        offsets.clear()
        rows = list(stream(packed_release.root, "all", num_shards=1).decode(False))
        last, backwards = {}, 0
        for category, offset in offsets:
            backwards += offset < last.get(category, -1)
            last[category] = offset
        return rows, backwards

    monkeypatch.setattr(PackedCategory, "read", recording_read)
    in_plan_order, jumps_before = streamed(0)
    in_archive_order, jumps = streamed(256 << 20)
    assert jumps_before > 1, "the fixture stores edits apart from the order rows use them"
    assert jumps <= 1, "only the first triplet (read alone, for the time to the first row) is read out of order"
    assert in_archive_order == in_plan_order  # same rows, same order, same bytes
    check_rows_match(packed_release, "all", in_archive_order, decode=False)


def test_the_categories_of_a_window_are_read_at_once_each_on_one_thread_in_order(packed_release, monkeypatch):
    from ditto_hf.builders.packed import PackedCategory

    original, reads = PackedCategory.read, []

    def recording_read(self, member, then=()):
        reads.append((threading.current_thread().name, member.category, member.offset))
        return original(self, member, then)

    def streamed(threads: int) -> tuple[list[dict], list[tuple]]:
        reads.clear()
        rows = list(stream(packed_release.root, "all", num_shards=1, read_threads=threads).decode(False))
        return rows, list(reads)

    monkeypatch.setattr(PackedCategory, "read", recording_read)
    one_thread, serial_reads = streamed(1)
    four_threads, parallel_reads = streamed(4)
    assert four_threads == one_thread  # same rows, same order, same bytes
    check_rows_match(packed_release, "all", four_threads, decode=False)
    assert {name for name, _, _ in serial_reads} == {threading.current_thread().name}
    names = {name for name, _, _ in parallel_reads}
    assert len(names) > 1 and all(name.startswith("ditto-read") for name in names)
    for category in {category for _, category, _ in parallel_reads}:
        offsets = [offset for _, read_category, offset in parallel_reads if read_category == category]
        assert offsets[1:] == sorted(offsets[1:]), f"{category} is read forwards (after the first row, read alone)"
        assert sorted(offsets) == sorted(offset for _, read_category, offset in serial_reads if read_category == category)


def test_default_read_threads_share_the_cpus_between_dataloader_workers():
    from torch.utils.data import DataLoader, Dataset

    from ditto_hf.builders.plan import READ_THREADS, default_read_threads

    class WorkerThreads(Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int) -> int:
            return default_read_threads()

    cpus = len(os.sched_getaffinity(0))
    assert default_read_threads() == max(1, min(READ_THREADS, cpus))
    in_workers = [int(value) for value in DataLoader(WorkerThreads(), batch_size=None, num_workers=2)]
    assert in_workers == [max(1, min(READ_THREADS, cpus // 2))] * 2


def test_with_a_cached_plan_rows_are_read_without_the_tar_reader(packed_release, tmp_path):
    """Time to the first row: exact reads need only the index's seek points, so a process that finds
    the plan cached never imports ratarmountcore's tar reader (a tenth of a second)."""
    cache = str(tmp_path / "cache")
    expected = [row["edited"]["bytes"] for row in stream(packed_release.root, "local", cache_dir=cache).decode(False)]
    script = textwrap.dedent(
        f"""
        import sys
        import ditto_hf
        from datasets import load_dataset
        dataset = load_dataset("ditto_1m", name="local", data_dir={str(packed_release.root)!r}, streaming=True,
                               split="train", seek_point_spacing={SPACING}, cache_dir={cache!r})
        rows = list(dataset.decode(False))
        sys.stdout.buffer.write(b"".join(row["edited"]["bytes"] for row in rows))
        sys.stderr.write("tar reader imported: %s" % ("ratarmountcore.mountsource.formats.tar" in sys.modules))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == b"".join(expected)
    assert result.stderr.decode().endswith("tar reader imported: False")


def test_background_read_ahead_fetches_only_the_bytes_the_span_is_sure_to_need():
    import random

    from ditto_hf.builders.packed import MIN_REMOTE_BLOCK_SIZE, RemoteRanges

    block = MIN_REMOTE_BLOCK_SIZE
    data = random.Random(2).randbytes(40 * block)
    requests = []

    def fetch(start: int, end: int) -> bytes:
        requests.append((start, end))
        return data[start:end]

    ranges = RemoteRanges(fetch, len(data), keep=64 * block)
    needed = 20 * block + 100
    with ranges.reading(30 * block, needed=needed):
        first = ranges.read(0, 4096)
        ranges.close()  # waits for the background fetch started by that read
        fetched_ahead = max(end for _, end in requests)
        assert fetched_ahead == 21 * block  # up to the block holding the last needed byte, no further
        rest = b"".join(ranges.read(offset, 4096) for offset in range(4096, needed, 4096))
    assert first + rest == data[: len(first + rest)]
    assert max(end for _, end in requests) == 21 * block  # everything read came from what was fetched ahead
    covered = sorted(requests)
    assert all(a[1] <= b[0] for a, b in zip(covered, covered[1:], strict=False))  # no byte fetched twice
