"""Hard edges: every user mistake and every broken input is one clear line (naming the thing and
the fix) and a non-zero exit, never a traceback, a wrong diagnosis or a silent acceptance."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml
from engine_fixtures import write_fixture_recipe

from ditto_hf.cli import main
from ditto_hf.errors import DittoError

sys.path.insert(0, str(Path(__file__).parent))
from test_hub import TINY, triplets  # noqa: E402

REPO = "loopback/hard-edges"


def run_cli(capsys, *args: str) -> tuple[int, str]:
    """``ditto-hf ARGS`` in this process: (exit code, stdout + stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    out = capsys.readouterr()
    return code, out.out + out.err


def one_error_line(output: str) -> str:
    """The single ``Error:`` line of ``output`` (asserting there is no traceback)."""
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output
    return errors[0]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    from ditto_hf.video import write_video

    folder = tmp_path_factory.mktemp("edge-clips")
    return [write_video(folder / f"c{i}.mp4", torch.full((6, 32, 32, 3), 30 * i, dtype=torch.uint8), fps=6) for i in range(4)]


# --- repo ids, tokens, missing repos ---------------------------------------------------------------


@pytest.mark.parametrize("repo", ["not a/valid repo!!", "a/b/c", "../../etc", "justaname"])
def test_mirror_rejects_a_bad_repo_id_in_one_line(capsys, tmp_path, repo):
    code, output = run_cli(capsys, "mirror", "--repo", repo, "--data-dir", str(tmp_path), "--dry-run")
    assert code == 1
    assert one_error_line(output) == (
        f"Error: {repo!r} is not a dataset repo id: write it NAMESPACE/NAME "
        + ("(your user or organisation, then the name)" if repo == "justaname" else "(letters, digits, '-', '_', '.')")
    )


def test_a_rejected_token_is_one_line_naming_the_repo(hub_server, capsys, tmp_path):
    from ditto_hf.testing.release import make_release

    release = make_release(tmp_path / "release")
    hub_server.fail_next("POST create_repo", status=401)
    code, output = run_cli(capsys, "mirror", "--repo", REPO, "--data-dir", str(release.root), "--config", "local")
    assert code == 1
    assert one_error_line(output) == (
        f"Error: {REPO}: the Hub rejected the token (401); log in with `hf auth login` or pass a valid --token / HF_TOKEN"
    )


def test_check_a_repo_that_does_not_exist(hub_server, capsys):
    code, output = run_cli(capsys, "check", "loopback/no-such-repo")
    assert code == 1
    assert one_error_line(output) == (
        "Error: loopback/no-such-repo: no such dataset repo on the Hub (or it is private: pass --token); check the name"
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("./local-folder", "./local-folder: no such folder"),
        ("a/b/c", "a/b/c: no such folder, and not a dataset repo id (NAMESPACE/NAME)"),
        ("hf://datasets/a b/c", "'hf://datasets/a b/c' is not a dataset repo id: write it NAMESPACE/NAME (letters, digits, '-', '_', '.')"),
    ],
)
def test_check_names_a_bad_target(capsys, target, message):
    code, output = run_cli(capsys, "check", target)
    assert code == 1
    assert one_error_line(output) == f"Error: {message}"


def test_check_accepts_an_hf_url_and_reports_a_truncated_shard(hub_server, clips, capsys):
    from ditto_hf.hub import check, publish

    result = publish(triplets(clips, [(0, 1), (2, 3)], "cut"), REPO, "cut", **TINY)
    assert check(f"hf://datasets/{REPO}").ok
    victim = result.shards[-1]["path"]
    blob = hub_server.blob_path(REPO, victim)
    blob.write_bytes(blob.read_bytes()[:1000])

    code, output = run_cli(capsys, "check", f"hf://datasets/{REPO}")
    assert code == 1
    assert "Traceback" not in output
    report = check(REPO)
    unreadable = [f for f in report.errors if f.where == victim]
    assert len(unreadable) == 1 and unreadable[0].message.startswith("not a readable parquet file ("), report.errors
    assert unreadable[0].message.endswith("republish the config")


# --- probe ---------------------------------------------------------------------------------------------


def test_probe_reports_every_file(clips, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    code, output = run_cli(capsys, "probe", "--json", str(clips[0]), str(bad), str(clips[1]))
    assert code == 1
    lines = output.splitlines()
    assert sum(line.startswith("{") for line in lines) == 2  # both good files printed
    assert [line for line in lines if line.startswith("Error: ") and str(bad) in line]  # the bad one named
    assert lines[-1] == "Error: 1 of 3 file(s) could not be probed (see above)"


# --- generate --------------------------------------------------------------------------------------------


def test_generate_exits_non_zero_when_a_sample_failed(tmp_path, clips, capsys):
    from ditto_hf.generate.run.inputs import sample_id_for

    victim = sample_id_for(clips[0].name, str(clips[0].absolute()))
    recipe, _ = write_fixture_recipe(tmp_path, fail_sample=victim, min_brightness=0)
    code, output = run_cli(capsys, "generate", "--input", str(clips[0].parent), "--output", str(tmp_path / "run"), "--recipe", str(recipe))
    assert code == 1
    assert "nan" not in output
    line = one_error_line(output)
    assert line.startswith(f"Error: 1 of {len(clips)} sample(s) failed (errors in {tmp_path / 'run' / 'rejected.parquet'})")
    assert line.endswith("rerun the same command with --retry-failed")


def test_generate_that_fails_at_start_writes_nothing(tmp_path, clips, capsys):
    recipe, _ = write_fixture_recipe(tmp_path)
    run = tmp_path / "run"
    listing = tmp_path / "clips.txt"
    listing.write_text(f"{clips[0]}\nmissing.mp4\n")
    code, output = run_cli(capsys, "generate", "--input", str(listing), "--output", str(run), "--recipe", str(recipe))
    assert code == 1
    assert one_error_line(output) == f"Error: {listing}:2: 'missing.mp4' is not a file; fix or remove the line"
    assert not run.exists()
    # the corrected command is not refused
    code, output = run_cli(capsys, "generate", "--input", str(clips[0]), "--output", str(run), "--recipe", str(recipe))
    assert code == 0, output


@pytest.mark.parametrize("src", ["no/such/folder", "list"])
def test_generate_dry_run_checks_the_inputs(tmp_path, capsys, src):
    recipe, _ = write_fixture_recipe(tmp_path)
    if src == "list":
        src = str(tmp_path / "clips.txt")
        Path(src).write_text("gone.mp4\n")
    code, output = run_cli(capsys, "generate", "--input", src, "--output", str(tmp_path / "run"), "--recipe", str(recipe), "--dry-run")
    assert code == 1
    line = one_error_line(output)
    assert src in line
    assert not (tmp_path / "run").exists()


# --- recipes ---------------------------------------------------------------------------------------------


def recipe_with(tmp_path: Path, change) -> Path:
    path, _ = write_fixture_recipe(tmp_path)
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_recipe_rejects_unknown_top_level_keys(tmp_path):
    from ditto_hf.generate.run.recipe import load_recipe

    path = recipe_with(tmp_path, lambda data: data.update(sed=0))
    with pytest.raises(DittoError) as error:
        load_recipe(path)
    assert str(error.value) == (
        f"{path}: unknown top-level key(s) ['sed']; a recipe has name, description, seed, torch_threads, model_overrides, stages"
    )


@pytest.mark.parametrize(
    ("stage", "key", "value", "expected"),
    [
        ("brightness", "min_brightness", "zero", "float"),
        ("mirror", "smooth_passes", 1.5, "int"),
        ("clip", "batch_size", True, "int"),
        ("mirror", "fail_sample", 3, "str"),
    ],
)
def test_recipe_checks_value_types_against_the_stage_config(tmp_path, stage, key, value, expected):
    from ditto_hf.generate.run.recipe import load_recipe

    path = recipe_with(tmp_path, lambda data: data["stages"][stage].update({key: value}))
    with pytest.raises(DittoError) as error:
        load_recipe(path).validate()
    assert str(error.value) == f"recipe stage {stage!r}: {key} must be {expected}, got {value!r}"


def test_recipe_checks_top_level_types_and_dry_run_refuses(tmp_path, capsys):
    path = recipe_with(tmp_path, lambda data: data.update(seed="zero"))
    code, output = run_cli(capsys, "generate", "--output", str(tmp_path / "run"), "--recipe", str(path), "--dry-run")
    assert code == 1
    assert one_error_line(output) == f"Error: {path}: seed must be int, got 'zero'"


def test_recipe_type_check_knows_the_shapes_the_stages_use():
    from typing import Literal

    from ditto_hf.generate.contract.models import ModelSpec
    from ditto_hf.generate.run.recipe import _accepts

    assert _accepts(tuple[int, int], [4, 8]) and not _accepts(tuple[int, int], [4])
    assert _accepts(dict[str, int], {"a": 1}) and not _accepts(dict[str, int], {"a": "x"})
    assert _accepts(Literal["cls", "mean"], "cls") and not _accepts(Literal["cls", "mean"], "max")
    assert _accepts(float | None, None) and _accepts(float, 3) and not _accepts(float, "3")
    assert _accepts(ModelSpec, "org/model") and _accepts(ModelSpec, {"id": "org/model"}) and not _accepts(ModelSpec, 3)
    assert _accepts(list[str], ["a"]) and not _accepts(list[str], "a")


# --- cards and published data ----------------------------------------------------------------------------


def test_card_is_complete_and_load_dataset_without_a_config_works(hub_server, clips):
    from hub_fixtures import DEFAULT, read_back
    from huggingface_hub import DatasetCard, HfApi

    from ditto_hf.hub import publish
    from ditto_hf.hub.card import CITATION

    publish(triplets(clips, [(0, 1), (2, 3)], "own"), REPO, "first", license="mit", **TINY)
    publish(triplets(clips, [(1, 2)], "own"), REPO, "second", license="mit", **TINY)
    text = Path(HfApi().hf_hub_download(REPO, "README.md", repo_type="dataset")).read_text()
    card = DatasetCard(text).data
    assert card.task_categories == ["text-to-video", "video-to-video"]
    assert card.language == ["en"]
    assert card.size_categories == ["n<1K"]
    assert card.pretty_name == "hard-edges"
    assert card.license == "mit"
    assert [(entry["config_name"], entry.get("default", False)) for entry in card.configs] == [("first", True), ("second", False)]
    assert "`mit`, as stated by the publisher." in text and "CC BY-NC-SA" not in text
    assert CITATION in text and "Chen, Qifeng" in CITATION
    assert len(read_back(hub_server, REPO, [DEFAULT])[DEFAULT]) == 2  # load_dataset(repo): the default config


def test_size_categories_follow_the_row_count():
    from ditto_hf.hub.card import size_category

    assert [size_category(n) for n in (0, 999, 1000, 99_999, 1_000_000, 10**8, 10**13)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
        "100M<n<1B",
        "n>1T",
    ]


def test_generate_licence_defaults_to_ditto_only_for_ditto_inputs(clips):
    from ditto_hf.commands.generate import default_license

    assert default_license("QingyanBai/Ditto-1M:local@train") == "cc-by-nc-sa-4.0"
    assert default_license("ditto_1m:global_style") == "cc-by-nc-sa-4.0"
    assert default_license(str(clips[0].parent)) == "unknown"
    assert default_license("me/my-clips") == "unknown"
    assert default_license(None) == "unknown"


def test_mirror_provenance_names_the_origin_without_local_paths(tmp_path):
    from ditto_hf.mirror import _provenance

    assert _provenance("hf://datasets/QingyanBai/Ditto-1M").startswith("Converted from the original Ditto-1M release (QingyanBai/Ditto-1M)")
    local = _provenance(str(tmp_path / "release"))
    assert local.startswith("Converted from a local copy of the Ditto-1M release with `ditto-hf mirror`")
    assert str(tmp_path) not in local


def test_published_run_leaks_no_local_paths_and_files_follow_the_umask(tmp_path, clips, monkeypatch):
    from ditto_hf.generate.run.driver import execute, prepare
    from ditto_hf.generate.run.rundir import RECIPE, RUN_INFO
    from ditto_hf.tiny import default_tiny_root

    recipe, _ = write_fixture_recipe(tmp_path, min_brightness=0)
    data = yaml.safe_load(recipe.read_text())
    data["model_overrides"] = {"org/model": str(default_tiny_root() / "model")}  # as the tiny recipe resolves {tiny}
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    run_root = tmp_path / "run"
    result = execute(*prepare(recipe, run_root, clips[0].parent, command=["ditto-hf", "generate", "--input", str(clips[0].parent)]))
    dataset = result.run.dataset()
    assert sorted(dataset["input_path"]) == sorted(clip.name for clip in clips)
    provenance = result.run.provenance()
    for private in (str(tmp_path), str(Path.home()), str(default_tiny_root())):
        assert private not in provenance
    assert "{tiny}/model" in provenance and '"edge-clips0"' in provenance
    for name in (RECIPE, RUN_INFO, "manifest.parquet"):
        assert (run_root / name).stat().st_mode & 0o777 == 0o644  # the tests' umask is 022
    videos = list(run_root.glob("*/*.mp4"))
    assert videos and all(video.stat().st_mode & 0o777 == 0o644 for video in videos)


# --- the release: listings, seek indexes, bad rows ------------------------------------------------------


@pytest.fixture
def packed(tmp_path):
    from ditto_hf.testing.release import make_release, pack_release

    return pack_release(make_release(tmp_path / "extracted", dirs=1, sources_per_dir=1), tmp_path / "packed", part_size=4096)


def open_category(release, cache_dir: Path, category: str = "source"):
    from ditto_hf.builders.packed import PackedCategory, find_parts
    from ditto_hf.builders.release import ReleaseRoot

    root = ReleaseRoot(str(release.root))
    return PackedCategory(root, category, find_parts(root, category), cache_dir)


def test_a_changed_part_of_the_same_size_rebuilds_the_cached_index(packed, tmp_path):
    first = open_category(packed, tmp_path / "cache").open()
    member_path = next(path for path in packed.files if path.startswith("source/"))
    assert first.read(first.locate(member_path)) == packed.files[member_path].read_bytes()
    first.close()
    part = Path(first.parts[0].path)
    data = bytearray(part.read_bytes())
    data[4:8] = (12345).to_bytes(4, "little")  # the gzip header's MTIME: same size, other bytes, still valid
    part.write_bytes(bytes(data))
    stat = part.stat()
    os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = open_category(packed, tmp_path / "cache")
    assert second.cached_index != first.cached_index  # the cache key follows the bytes' version
    second.open()
    assert second.read(second.locate(member_path)) == packed.files[member_path].read_bytes()
    assert sorted(path.name for path in (tmp_path / "cache").glob("*.sqlite")) == sorted(
        [first.cached_index.name, second.cached_index.name]
    )


def test_a_corrupt_part_behind_a_cached_index_is_one_line_naming_the_archive(packed, tmp_path):
    import shutil

    first = open_category(packed, tmp_path / "cache").open()
    first.close()
    part = Path(first.parts[0].path)
    data = bytearray(part.read_bytes())
    for index in range(20, 60):
        data[index] ^= 0xFF
    part.write_bytes(bytes(data))
    shutil.copyfile(first.cached_index, open_category(packed, tmp_path / "cache").cached_index)  # as if the cache missed the change
    with pytest.raises(DittoError) as error:
        reader = open_category(packed, tmp_path / "cache").open()
        reader.read(reader.locate(next(path for path in packed.files if path.startswith("source/"))))
    message = str(error.value)
    assert message.startswith(f"{packed.root}/videos/source/source.tar.gz.*: ")
    assert "\n" not in message and ("re-download" in message or "rebuild" in message)


@pytest.mark.parametrize("route", ["GET tree", "GET repo_info"])
def test_a_transient_error_on_the_first_listing_is_retried(hub_server, tmp_path, route, monkeypatch):
    monkeypatch.setattr("ditto_hf.builders.release.LISTING_BACKOFF", 0.01)
    from huggingface_hub import HfApi

    from ditto_hf.builders.release import ReleaseRoot
    from ditto_hf.testing.release import make_release

    release = make_release(tmp_path / "release", dirs=1, sources_per_dir=1)
    api = HfApi(token=hub_server.token)
    api.create_repo("ditto/flaky", repo_type="dataset")
    api.upload_folder(repo_id="ditto/flaky", repo_type="dataset", folder_path=release.root)
    hub_server.fail_next(route, times=2, status=503)
    assert set(ReleaseRoot("hf://datasets/ditto/flaky").metadata_files()) == set(release.configs)
    assert hub_server.requests[route] >= 3


def test_a_missing_release_root_is_not_a_server_error(hub_server, tmp_path, monkeypatch):
    from ditto_hf.builders.release import ReleaseRoot

    monkeypatch.setattr("ditto_hf.builders.release.LISTING_BACKOFF", 0.01)
    with pytest.raises(DittoError, match="training_metadata not found: .* does not look like a Ditto-1M release root"):
        ReleaseRoot(str(tmp_path)).metadata_files()
    with pytest.raises(DittoError) as error:
        ReleaseRoot("hf://datasets/ditto/no-such-release").metadata_files()
    assert str(error.value) == (
        "hf://datasets/ditto/no-such-release: not found (no such folder, or no such dataset repo: check the name, or pass a token)"
    )
    hub_server.fail_next("GET repo_info", times=20, status=500)
    with pytest.raises(DittoError) as error:
        ReleaseRoot("hf://datasets/ditto/down").metadata_files()
    assert "does not look like" not in str(error.value) and "try again" in str(error.value)


@pytest.mark.parametrize(
    ("instruction", "reason"),
    [
        ("", "instruction is empty; give the row an instruction or remove it"),
        (" \t\n", "instruction is empty (only whitespace); give the row an instruction or remove it"),
        ("make it \ud800 red", "instruction is not valid Unicode (surrogates not allowed at character 8); fix the text or remove the row"),
    ],
)
def test_rows_with_an_unusable_instruction_are_bad_rows(tmp_path, instruction, reason):
    import json

    from ditto_1m import Ditto1M
    from ditto_hf.errors import BadRowError
    from ditto_hf.testing.release import make_release

    release = make_release(tmp_path / "release", dirs=1, sources_per_dir=1)
    good = release.rows["local"][0]
    # json.dumps writes the lone surrogate as the \\ud800 escape, as a broken exporter would
    (release.root / "training_metadata" / "words.json").write_text(json.dumps([good, {**good, "instruction": instruction}]))
    strict = Ditto1M(config_name="words", data_dir=str(release.root))
    with pytest.raises(BadRowError) as error:
        list(strict.as_streaming_dataset("train").decode(False))
    assert str(error.value) == f"{release.root}/training_metadata/words.json row 1: {reason}"
    lenient = Ditto1M(config_name="words", data_dir=str(release.root), on_bad_rows="skip")
    assert [row["instruction"] for row in lenient.as_streaming_dataset("train").decode(False)] == [good["instruction"]]
    assert lenient.bad_rows.skipped == 1


def test_scores_reasons_and_timings_are_structs(tmp_path, clips):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ditto_hf.generate.run.driver import execute, prepare

    recipe, _ = write_fixture_recipe(tmp_path, min_brightness=40)  # the darkest clips are rejected by brightness
    result = execute(*prepare(recipe, tmp_path / "run", clips[0].parent))
    assert result.kept and result.rejected
    manifest = pq.read_schema(tmp_path / "run" / "manifest.parquet")
    assert manifest.field("scores").type == pa.struct([("brightness", pa.float64())])
    assert manifest.field("timings").type == pa.struct([(name, pa.float64()) for name in ("brightness", "clip", "mirror")])
    assert manifest.field("reasons").type == pa.struct([("brightness", pa.string())])
    rejected = pq.read_table(tmp_path / "run" / "rejected.parquet").to_pylist()
    assert {row["sample_id"] for row in rejected} == {sample.sample_id for sample in result.rejected}
    assert all(row["scores"]["brightness"] < 40 and row["reasons"]["brightness"] for row in rejected)
    assert all(row["timings"]["mirror"] is None for row in rejected)  # never reached: null, not missing
    dataset = result.run.dataset()
    bright = dataset.filter(lambda row: row["scores"]["brightness"] >= 40)  # no JSON to parse
    assert len(bright) == len(result.kept) == len(dataset)


def test_the_first_scan_shows_bytes_of_total(packed, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich draws its bar as on a terminal
    monkeypatch.setenv("COLUMNS", "200")
    reader = open_category(packed, tmp_path / "cache")
    total = sum(part.size for part in reader.parts)
    reader.open()
    drawn = capfd.readouterr().err
    assert "indexing " in drawn and f"{packed.root}/videos/source/source.tar.gz.*" in drawn
    assert f"{total / 1000:.1f}/{total / 1000:.1f} kB" in drawn  # bytes scanned of the total


def test_mirror_progress_counts_rows_of_the_known_total(hub_server, tmp_path, monkeypatch, capfd):
    from ditto_hf.testing.release import make_release

    release = make_release(tmp_path / "release", dirs=1, sources_per_dir=1)
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "240")
    main(["mirror", "--data-dir", str(release.root), "--repo", REPO, "--config", "local", "--preview-rows", "0", "--num-workers", "1"])
    rows = len(release.rows["local"])
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", capfd.readouterr().err)  # without rich's colours
    assert f"{rows}/{rows} rows" in drawn and "ETA" in drawn
    assert f"{REPO} config local: {rows} rows" in drawn


@pytest.mark.parametrize("size", ["5XB", "-5MB", "lots"])
def test_publish_rejects_a_bad_size_before_touching_the_hub(hub_server, clips, size):
    from ditto_hf.hub import publish

    with pytest.raises(DittoError) as error:
        publish(triplets(clips, [(0, 1)], "size"), REPO, "sized", max_shard_size=size)
    assert str(error.value) == (
        f"max_shard_size {size!r} is not a size: give bytes or a number with a unit such as '500MB', '1GB' or '64KiB'"
    )
    assert not hub_server.requests["POST create_repo"]


def test_an_unregistered_ditto_1m_says_import_ditto_hf_first(monkeypatch):
    import datasets.packaged_modules

    from ditto_hf.generate.run.inputs import count_sources

    monkeypatch.delitem(datasets.packaged_modules._PACKAGED_DATASETS_MODULES, "ditto_1m")  # as in a process without ditto_hf
    with pytest.raises(DittoError) as error:
        count_sources("ditto_1m:local")
    hint = "; 'ditto_1m' is not registered in this process: import ditto_hf first (or use ditto_1m.Ditto1M directly))"
    assert str(error.value).endswith(hint)
    assert "\n" not in str(error.value)
