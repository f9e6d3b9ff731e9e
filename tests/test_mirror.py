"""The release mirror on the loopback Hub: every config composed of disjoint parts and streamed back
by plain datasets as its metadata file, each triplet stored once, resume after SIGKILL, a complete
rerun that reads no video, and ``check`` catching a broken composition."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest
from hub_fixtures import DEFAULT, card_text, commits, read_back, repo_state

from ditto_hf.builders.parts import MetadataFile, compose
from ditto_hf.builders.release import MetadataRow
from ditto_hf.testing.release import copy_release, make_release, pack_release

REPO = "loopback/replica"
SMALL = ["--shard-rows", "2", "--num-workers", "1"]  # two rows per shard: several shards per part

# The replica's parts, written out from the rule the README documents (a part is named after the
# smallest config holding it; ``_other`` when it holds only some of it), as row predicates that
# tell a config's rows apart.
PART_ROWS = {
    "global_other": lambda row: row["edited_path"].startswith("global_freeform"),
    "global_style": lambda row: row["edited_path"].startswith("global_style"),
    "local_other": lambda row: row["edited_path"].startswith("local/") and row["edited_path"].endswith("_2.mp4"),
    "local_replace": lambda row: row["edited_path"].startswith("local/") and row["edited_path"].endswith("_1.mp4"),
    "sim2real": lambda row: True,
}
CONFIG_PARTS = {
    "all": ["global_other", "global_style", "local_other", "local_replace"],
    "global": ["global_other", "global_style"],
    "global_style": ["global_style"],
    "local": ["local_other", "local_replace"],
    "local_replace": ["local_replace"],
    "sim2real": ["sim2real"],
}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("mirror") / "extracted", dirs=2, sources_per_dir=2)


@pytest.fixture(scope="module")
def packed(release, tmp_path_factory):
    return pack_release(release, tmp_path_factory.mktemp("mirror") / "packed", part_size=4096)


def documented_order(release, config: str) -> list[dict]:
    """A config's metadata rows in the mirror's documented order: part by part, each sorted by
    source, edited path, instruction."""
    rows = release.rows[config]
    ordered = []
    for part in CONFIG_PARTS[config]:
        chosen = [row for row in rows if PART_ROWS[part](row) and row not in ordered]
        ordered += sorted(chosen, key=lambda row: (row["source_path"], row["edited_path"], row["instruction"]))
    assert sorted(map(json.dumps, ordered)) == sorted(map(json.dumps, rows))  # the parts cover the config
    return ordered


def expected_record(release, row: dict) -> dict:
    """What a reader must get for a metadata row: its text, the release's mp4 bytes and their frames."""
    from ditto_hf.video import read_frames

    record = {
        "instruction": row["instruction"],
        "category": row["edited_path"].split("/")[0],
        "source_path": row["source_path"],
        "edited_path": row["edited_path"],
        "caption": release.caption_of(row["source_path"]),
    }
    for column in ("source", "edited"):
        path = release.files[row[f"{column}_path"]]
        record[f"{column}_frames"] = hashlib.sha256(read_frames(path).numpy().tobytes()).hexdigest()
        record[f"{column}_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return record


def mirror(release, *options: str) -> None:
    from ditto_hf.cli import main

    main(["mirror", "--data-dir", str(release.root), "--repo", REPO, *SMALL, *options])


def parquet_files(api, repo_id: str, prefix: str) -> dict[str, str]:
    """``repo path -> local copy`` of the repo's parquet files under ``prefix``."""
    return {
        path: api.hf_hub_download(repo_id, path, repo_type="dataset")
        for path in api.list_repo_files(repo_id, repo_type="dataset")
        if path.startswith(prefix) and path.endswith(".parquet")
    }


def test_every_config_streams_back_as_its_metadata_file_and_each_triplet_is_stored_once(hub_server, release, capsys):
    import pyarrow.parquet as pq
    from huggingface_hub import DatasetCard, HfApi

    from ditto_hf.hub import check

    mirror(release)
    assert "config local: 8 rows" in " ".join(capsys.readouterr().err.split())
    card = DatasetCard.load(REPO, repo_type="dataset")
    entries = {entry["config_name"]: entry for entry in card.data.configs}
    assert sorted(entries) == sorted([*release.configs, "preview"])
    assert entries["preview"].get("default") is True and sum(bool(entry.get("default")) for entry in entries.values()) == 1
    assert entries["local"]["data_files"] == [{"split": "train", "path": ["parts/local_other/train-*", "parts/local_replace/train-*"]}]

    streamed = read_back(hub_server, REPO, [*release.configs, "preview", DEFAULT])
    for config in release.configs:
        assert streamed[config] == [expected_record(release, row) for row in documented_order(release, config)], config
    taken, preview = Counter(), []  # the first 4 rows of each category, walking the parts in order
    for row in documented_order(release, "all") + documented_order(release, "sim2real"):
        category = row["edited_path"].split("/")[0]
        if taken[category] < 4:
            taken[category] += 1
            preview.append(expected_record(release, row))
    assert streamed["preview"] == preview and streamed[DEFAULT] == preview

    # every distinct triplet stored once; video bytes = each edited video once + each source once per part using it
    api = HfApi(token=hub_server.token)
    files = parquet_files(api, REPO, "parts/")
    distinct_rows = {json.dumps(row, sort_keys=True) for rows in release.rows.values() for row in rows}
    assert sum(pq.ParquetFile(local).metadata.num_rows for local in files.values()) == len(distinct_rows)
    sizes = {path: file.stat().st_size for path, file in release.files.items()}
    expected_video = sum(sizes[json.loads(row)["edited_path"]] for row in distinct_rows)
    for part, configs in {part: [c for c, parts in CONFIG_PARTS.items() if part in parts] for part in PART_ROWS}.items():
        rows = [row for row in release.rows[configs[-1]] if PART_ROWS[part](row)]
        expected_video += sum(sizes[source] for source in {row["source_path"] for row in rows})
    stored_video = chunks = 0
    for local in files.values():
        metadata = pq.ParquetFile(local).metadata
        for group in range(metadata.num_row_groups):
            for column in range(metadata.num_columns):
                if metadata.schema.column(column).path in ("source.bytes", "edited.bytes"):
                    stored_video += metadata.row_group(group).column(column).total_uncompressed_size
                    chunks += 1
    total = sum(os.path.getsize(local) for local in files.values())
    print(f"parts: {total} bytes for {expected_video} bytes of videos ({stored_video} in video column chunks), {len(files)} files")
    assert 0 <= stored_video - expected_video <= 64 * chunks  # length prefixes and page headers only
    assert total - stored_video <= 6000 * len(files)  # footer, schema, text columns: measured ~3.2 KB per file

    report = check(REPO)
    assert report.ok, report.errors
    messages = [finding.message for finding in report.findings if finding.where == "composition.json"]
    assert any("no row in two parts" in message for message in messages)
    assert any("each edited video once" in message for message in messages)
    assert any(f.where == "global" and f.message.startswith("4 rows, as training_metadata/global.json") for f in report.findings)


KILLED_MIRROR = textwrap.dedent(
    """
    import sys, time
    from ditto_hf.mirror import mirror_release

    # a slow producer with one shard per commit, so that the parent can kill it between two commits
    mirror_release(sys.argv[1], sys.argv[2], shard_rows=2, num_workers=1, commit_every=1, on_shard=lambda *_: time.sleep(0.4))
    """
)


def test_a_killed_mirror_resumes_to_the_state_of_one_run(hub_server, packed):
    from huggingface_hub import HfApi

    from ditto_hf.cli import main
    from ditto_hf.mirror import mirror_release

    api = HfApi(token=hub_server.token)
    reference = "loopback/reference"
    main(["mirror", "--data-dir", str(packed.root), "--repo", reference, "--shard-rows", "2", "--num-workers", "2"])

    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_MIRROR, str(packed.root), REPO], env={**os.environ, "HF_HUB_OFFLINE": "0"}, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while len(commits(api, REPO)) < 3:  # the repo's initial commit + two shard commits
        assert child.poll() is None, child.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the mirroring process made no commit"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    interrupted = repo_state(api, REPO)
    committed = [path for path in interrupted if path.endswith(".parquet")]
    assert "README.md" not in interrupted and 2 <= len(committed) < sum(path.endswith(".parquet") for path in repo_state(api, reference))

    puts = hub_server.requests["PUT lfs_put"]
    resumed = mirror_release(str(packed.root), REPO, shard_rows=2, num_workers=1)
    assert resumed.reused == len(committed) and resumed.made == sum(len(shards) for shards in resumed.folders.values()) - len(committed)
    assert hub_server.requests["PUT lfs_put"] - puts <= resumed.made  # committed shards are neither read nor sent again
    final = repo_state(api, REPO)
    assert {k: v for k, v in final.items() if k != "README.md"} == {k: v for k, v in repo_state(api, reference).items() if k != "README.md"}
    assert card_text(api, REPO, "X") == card_text(api, reference, "X")


def test_a_complete_rerun_reads_no_video_and_a_grown_file_remakes_only_its_part(hub_server, release, tmp_path, capsys):
    from huggingface_hub import HfApi

    api = HfApi(token=hub_server.token)
    copy = copy_release(release, tmp_path / "release")
    mirror(copy)
    before = repo_state(api, REPO)

    # one more row in local.json only (an existing video, a new instruction): a new part, nothing else remade
    metadata = copy.root / "training_metadata" / "local.json"
    rows = json.loads(metadata.read_text())
    metadata.write_text(json.dumps([*rows, {**rows[0], "instruction": "Add a hat."}]))
    capsys.readouterr()
    mirror(copy)
    output = " ".join(capsys.readouterr().err.split())
    assert "config local: 9 rows" in output and "1 made" in output
    grown = repo_state(api, REPO)
    assert {path for path in grown if path.startswith("parts/local_other_2/")} and set(before) - set(grown) == set()
    assert all(grown[path] == digest for path, digest in before.items() if path.endswith(".parquet"))

    shutil.rmtree(copy.root / "videos")  # any video read would now fail
    hub_server.reset_counters()
    capsys.readouterr()
    mirror(copy)
    assert "0 made" in " ".join(capsys.readouterr().err.split())
    assert repo_state(api, REPO) == grown
    assert hub_server.requests["POST commit"] == hub_server.requests["POST preupload"] == hub_server.requests["PUT lfs_put"] == 0
    assert hub_server.bytes_served < 64 * 1024  # the card, composition.json and manifests, not a parquet shard


def test_check_finds_a_broken_composition(hub_server, release, tmp_path):
    from huggingface_hub import CommitOperationAdd, HfApi

    from ditto_hf.hub import check

    mirror(release)
    api = HfApi(token=hub_server.token)
    intruder = sorted(parquet_files(api, REPO, "parts/local_replace/").items())[0]
    manifest = json.loads(open(api.hf_hub_download(REPO, "parts/local_other/manifest.json", repo_type="dataset")).read())
    record = next(
        shard
        for path in ["parts/local_replace/manifest.json"]
        for shard in json.loads(open(api.hf_hub_download(REPO, path, repo_type="dataset")).read())["shards"]
        if shard["path"] == intruder[0]
    )
    copied = "parts/local_other/train-00009-0000000000000000.parquet"
    manifest["shards"].append({**record, "path": copied})
    api.create_commit(
        REPO,
        [
            CommitOperationAdd(copied, intruder[1]),
            CommitOperationAdd("parts/local_other/manifest.json", json.dumps(manifest).encode()),
        ],
        commit_message="copy rows of one part into another",
        repo_type="dataset",
    )
    report = check(REPO)
    errors = {(finding.where, finding.message.split(":")[0]) for finding in report.errors}
    assert ("local", "10 rows, training_metadata/local.json has 8") in errors
    assert ("all", "14 rows, training_metadata/global+local.json has 12") in errors
    assert ("composition.json", "parts overlap") in errors
    assert any("edited video(s) stored in several parts" in finding.message for finding in report.errors)


def test_bad_rows_stop_the_mirror_or_are_counted_and_reported(hub_server, release, tmp_path, capsys):
    from ditto_hf.hub import check

    copy = copy_release(release, tmp_path / "release")
    metadata = copy.root / "training_metadata" / "local.json"
    rows = json.loads(metadata.read_text())
    metadata.write_text(json.dumps([*rows, {**rows[0], "edited_path": "local/0000/missing_9.mp4"}]))
    with pytest.raises(SystemExit) as failed:
        mirror(copy)
    assert failed.value.code == 1
    assert "local.json row 8: edited_path local/0000/missing_9.mp4 is not in the release" in capsys.readouterr().err

    mirror(copy, "--on-bad-rows", "skip")
    assert "1 bad row(s) skipped" in " ".join(capsys.readouterr().err.split())
    report = check(REPO)
    assert report.ok, report.errors
    assert [(f.where, f.message) for f in report.findings if f.level == "warning" and f.where == "local"] == [
        ("local", "8 rows, training_metadata/local.json has 9: 1 bad row(s) were skipped when mirroring")
    ]


def test_dry_run_prints_the_composition_and_touches_nothing(hub_server, release, tmp_path):
    from click.testing import CliRunner
    from huggingface_hub import HfApi

    from ditto_hf.cli import cli

    copy = copy_release(release, tmp_path / "release")
    shutil.rmtree(copy.root / "videos")
    result = CliRunner().invoke(cli, ["mirror", "--data-dir", str(copy.root), "--repo", REPO, "--dry-run"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "14 triplets stored once; 6 source videos stored 14 times" in text
    for part in PART_ROWS:
        assert part in text
    assert not HfApi(token=hub_server.token).repo_exists(REPO, repo_type="dataset")

    unknown = CliRunner().invoke(cli, ["mirror", "--data-dir", str(copy.root), "--repo", REPO, "--config", "globl"])
    assert "no metadata file for config(s) globl" in str(unknown.exception) and "configs present: all" in str(unknown.exception)


def rows_of(*keys: str) -> tuple[MetadataRow, ...]:
    return tuple(MetadataRow(index, f"source/0000/{key[0]}.mp4", f"local/0000/{key}.mp4", f"edit {key}") for index, key in enumerate(keys))


def test_compose_splits_overlapping_files_into_disjoint_named_parts():
    files = {
        "a": MetadataFile("a", "a.json", 4, rows_of("r1", "r2", "r2", "r3")),  # r2 twice
        "b": MetadataFile("b", "b.json", 3, rows_of("r2", "r3", "r4")),
        "c": MetadataFile("c", "c.json", 2, rows_of("r4", "r5")),
    }
    composition = compose(files)
    names = {part.name: (part.configs, [row.edited_path[11:13] for row in part.rows]) for part in composition.parts}
    assert names == {
        "a_other": (("a",), ["r1", "r2"]),  # r2's second copy is only in a
        "b_other": (("a", "b"), ["r2", "r3"]),
        "c_other": (("b", "c"), ["r4"]),
        "c_other_2": (("c",), ["r5"]),
    }
    for config, file in files.items():
        union = [row_key for part in composition.parts_of([config]) for row_key in part.rows]
        assert sorted((r.source_path, r.edited_path, r.instruction) for r in union) == sorted(
            (r.source_path, r.edited_path, r.instruction) for r in file.rows
        )
    assert composition.configs["a"] == ("a_other", "b_other") and composition.shared_keys == 1
    assert composition.part("b_other").home == "b" and [row.index for row in composition.part("b_other").rows] == [0, 1]
