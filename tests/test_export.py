"""``ditto-hf export diffsynth``: a replica config, a generate run and a Hub config become folders that
DiffSynth-Studio's own ``UnifiedDataset`` reads with the README's flags; kill and resume; bad input."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from diffsynth_fixtures import unified_dataset
from engine_fixtures import write_fixture_recipe
from PIL import Image

from ditto_hf.generate.run.driver import execute, prepare
from ditto_hf.testing.release import copy_release, make_release, write_json
from ditto_hf.training import diffsynth_crop_resize
from ditto_hf.training.frames import diffsynth_frames, image_pixels
from ditto_hf.video import probe, read_frames

FLAGS = ["--num-frames", "9", "--width", "32", "--height", "48"]
TRICKY = ["把猫换成一只狐狸 🦊", "NA", "null", "None", 'Make it «noir», add "rain", and\na second line', "Ünïcødé ✓"]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A replica release (12-frame 48x48 clips) with an extra metadata file of tricky instructions."""
    release = make_release(tmp_path_factory.mktemp("release") / "extracted", dirs=2, frames=12, size=48)
    rows = [{**row, "instruction": text} for row, text in zip(release.rows["local"], TRICKY, strict=False)]
    write_json(release.root / "training_metadata" / "tricky.json", rows)
    release.rows["tricky"] = rows
    numbers = [{**row, "instruction": text} for row, text in zip(release.rows["global"], ["42", "3.5"], strict=False)]
    write_json(release.root / "training_metadata" / "numbers.json", numbers)
    release.rows["numbers"] = numbers
    return release


@pytest.fixture(scope="module")
def keyframe_run(tmp_path_factory, sample_clips) -> Path:
    """A finished generate run of the fixture stages whose edit stage also writes the edited keyframe."""
    folder = tmp_path_factory.mktemp("run")
    recipe, _ = write_fixture_recipe(folder)
    settings = yaml.safe_load(recipe.read_text())
    settings["stages"]["mirror"]["keyframe"] = True
    recipe.write_text(yaml.safe_dump(settings, sort_keys=False))
    result = execute(*prepare(recipe, folder / "r1", src=sample_clips[0].parent))
    assert len(result.kept) == 3
    return result.run.root


@pytest.fixture
def export(capsys, monkeypatch):
    """``ditto-hf export diffsynth ARGS`` in this process: (exit code, stderr + stdout)."""
    from ditto_hf.cli import main

    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        try:
            main(["export", "diffsynth", *args])
            code = 0
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return code, captured.err + captured.out

    return run


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        return list(reader.fieldnames), list(reader)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def files_under(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def videos(out: Path) -> list[Path]:
    """The finished videos of an export (not the temporary files of one being written)."""
    return [path for path in (out / "videos").rglob("*.mp4") if not path.name.startswith(".")]


def check_loads_in_diffsynth(out: Path, *, keyframes: bool, rows: int) -> list[dict]:
    """Every row through DiffSynth's ``UnifiedDataset`` with the README's flags: 9 frames of 32x48."""
    keys = "video,vace_video" + (",vace_reference_image" if keyframes else "")
    dataset = unified_dataset(out, out / "metadata.jsonl", data_file_keys=keys, num_frames=9, height=48, width=32)
    assert len(dataset) == rows
    items = [dataset[index] for index in range(len(dataset))]
    for item in items:
        assert len(item["video"]) == len(item["vace_video"]) == 9
        assert {frame.size for frame in item["video"] + item["vace_video"]} == {(32, 48)}
        if keyframes:
            assert [image.size for image in item["vace_reference_image"]] == [(32, 48)]
    return items


def test_a_replica_config_exports_every_triplet_once_per_video(release, tmp_path, export):
    out = tmp_path / "local"
    code, output = export("ditto_1m:local", "--data-dir", str(release.root), "--out", str(out), "--keyframes", *FLAGS)
    assert code == 0, output
    columns, rows = read_csv(out / "metadata.csv")
    assert columns == ["video", "vace_video", "prompt", "vace_reference_image", "sample_id"]
    assert rows == read_jsonl(out / "metadata.jsonl")
    expected = release.rows["local"]
    assert len(rows) == len(expected)
    assert sorted(row["sample_id"] for row in rows) == sorted(row["edited_path"] for row in expected)
    for row in rows:
        for column in ("video", "vace_video", "vace_reference_image"):
            assert not Path(row[column]).is_absolute() and (out / row[column]).is_file(), row[column]
    sources = {row["source_path"] for row in expected}
    assert len(sources) < len(expected)  # sources are shared by several edits ...
    assert {row["vace_video"] for row in rows} == {f"videos/{path}" for path in sources}
    assert sorted(path.relative_to(out / "videos").as_posix() for path in (out / "videos" / "source").rglob("*.mp4")) == sorted(sources)
    assert "4 videos already there" not in output and f"{len(expected)} triplets" in output  # ... and written once
    for row in rows:
        info = probe(out / row["video"])
        assert (info.num_frames, info.width, info.height) == (9, 32, 48)
    # the keyframe is the first edited frame as DiffSynth would crop it from the release's own file
    first = next(row for row in expected if row["edited_path"] == rows[0]["sample_id"])
    frames = diffsynth_frames(release.files[first["edited_path"]], num_frames=9, size=(32, 48))
    assert torch.equal(image_pixels(out / rows[0]["vace_reference_image"]), frames[0])
    items = check_loads_in_diffsynth(out, keyframes=True, rows=len(expected))
    assert [item["prompt"] for item in items] == [row["prompt"] for row in rows]
    state = json.loads((out / "export.json").read_text())
    assert state["complete"] and state["progress"]["videos_written"] == len(expected) + len(sources)


def test_unicode_round_trips_and_csv_misreads_are_counted(release, tmp_path, export):
    import pandas

    out = tmp_path / "tricky"
    code, output = export("ditto_1m:tricky", "--data-dir", str(release.root), "--out", str(out), *FLAGS)
    assert code == 0, output
    assert "pandas misreads 3 prompt(s)" in output and "metadata.jsonl" in output
    rows = read_jsonl(out / "metadata.jsonl")
    instruction_of = {row["edited_path"]: row["instruction"] for row in release.rows["tricky"]}
    expected = [instruction_of[row["sample_id"]] for row in rows]
    assert sorted(expected) == sorted(TRICKY) and [row["prompt"] for row in rows] == expected
    assert (out / "metadata.jsonl").read_bytes().isascii()  # DiffSynth opens it in the locale's encoding
    columns, csv_rows = read_csv(out / "metadata.csv")
    assert columns == ["video", "vace_video", "prompt", "sample_id"] and [row["prompt"] for row in csv_rows] == expected
    misread = pandas.read_csv(out / "metadata.csv")["prompt"].isna().tolist()  # what DiffSynth's CSV reader makes of it
    assert misread == [text in ("NA", "null", "None") for text in expected]
    items = check_loads_in_diffsynth(out, keyframes=False, rows=len(TRICKY))
    assert [item["prompt"] for item in items] == expected


def test_a_column_of_numbers_is_counted_as_misread(release, tmp_path, export):
    import pandas

    out = tmp_path / "numbers"
    code, output = export("ditto_1m:numbers", "--data-dir", str(release.root), "--out", str(out), *FLAGS)
    assert code == 0, output
    prompts = pandas.read_csv(out / "metadata.csv")["prompt"].tolist()
    assert sorted(prompts) == [3.5, 42.0]  # what DiffSynth's CSV reader would train on: floats
    assert "pandas misreads 2 prompt(s)" in output
    assert sorted(row["prompt"] for row in read_jsonl(out / "metadata.jsonl")) == ["3.5", "42"]


def test_a_generate_run_exports_its_edited_keyframes(keyframe_run, tmp_path, export):
    import pyarrow.parquet as pq

    out = tmp_path / "run"
    code, output = export(str(keyframe_run), "--out", str(out), "--keyframes", *FLAGS)
    assert code == 0, output
    assert "3 edited keyframes, 0 first frames" in output
    manifest = pq.read_table(keyframe_run / "manifest.parquet").to_pylist()
    rows = read_jsonl(out / "metadata.jsonl")
    assert [row["sample_id"] for row in rows] == [row["sample_id"] for row in manifest]
    assert [row["prompt"] for row in rows] == [row["instruction"] for row in manifest]
    for row, kept in zip(rows, manifest, strict=True):
        keyframe = image_pixels(keyframe_run / kept["edited_keyframe_path"])
        assert torch.equal(image_pixels(out / row["vace_reference_image"]), diffsynth_crop_resize(keyframe[None], (32, 48))[0])
        assert not torch.equal(image_pixels(out / row["vace_reference_image"]), read_frames(out / row["video"], layout="TCHW")[0])
    check_loads_in_diffsynth(out, keyframes=True, rows=3)


def test_a_hub_config_exports_the_same_bytes_and_keyframes_as_the_run_it_was_published_from(keyframe_run, hub_server, tmp_path, export):
    from huggingface_hub import HfApi

    from ditto_hf.generate.run.rundir import RunDir
    from ditto_hf.hub import publish

    run = RunDir(keyframe_run)
    publish(run.dataset(), "loopback/exported", "r1", token=hub_server.token, provenance=run.provenance())
    from_run, from_hub = tmp_path / "from-run", tmp_path / "from-hub"
    assert export(str(keyframe_run), "--out", str(from_run), "--keyframes", *FLAGS)[0] == 0
    code, output = export("loopback/exported:r1", "--out", str(from_hub), "--keyframes", *FLAGS)
    assert code == 0, output
    assert "3 edited keyframes, 0 first frames" in output  # the published run carries its keyframes
    run_files, hub_files = files_under(from_run), files_under(from_hub)
    del run_files["export.json"], hub_files["export.json"]  # it records the SOURCE
    assert hub_files == run_files and len(read_jsonl(from_hub / "metadata.jsonl")) == 3
    card = Path(HfApi(token=hub_server.token).hf_hub_download("loopback/exported", "README.md", repo_type="dataset")).read_text()
    assert "- `r1`: the image the generate run's keyframe stage made, column `edited_keyframe`" in card


def test_an_export_killed_midway_resumes_to_the_same_bytes(release, tmp_path, export):
    bigger = make_release(tmp_path / "bigger", dirs=3, frames=24, size=96, noise=20)
    args = ["ditto_1m:all", "--data-dir", str(bigger.root), *["--num-frames", "21", "--width", "64", "--height", "96"]]
    out, fresh = tmp_path / "killed", tmp_path / "fresh"
    process = subprocess.Popen([sys.executable, "-m", "ditto_hf.cli", "export", "diffsynth", *args, "--out", str(out)])
    deadline = time.monotonic() + 300
    while len(videos(out)) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = {path: path.stat().st_mtime_ns for path in videos(out)}
    total = len(bigger.files)
    assert 3 <= len(before) < total and not (out / "metadata.jsonl").exists()  # stopped midway, no metadata yet
    code, output = export(*args, "--out", str(out))
    assert code == 0, output
    written = total - len(before)  # each video once; the rest of the rows' 2 references each were there
    assert f"{written} videos written, {2 * len(bigger.rows['all']) - written} already there" in output
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in before.items())  # nothing redone
    assert export(*args, "--out", str(fresh))[0] == 0
    resumed, uninterrupted = files_under(out), files_under(fresh)
    assert json.loads(resumed.pop("export.json"))["complete"] and resumed == {k: v for k, v in uninterrupted.items() if k != "export.json"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-frames", "8"], "--num-frames 8: Wan/VACE needs 4k+1 frames"),
        (["--width", "40"], "multiples of 16"),
        (["--data-dir", "somewhere"], "--data-dir is for a builder SOURCE"),
    ],
)
def test_bad_settings_are_one_line_errors(keyframe_run, tmp_path, export, args, message):
    code, output = export(str(keyframe_run), "--out", str(tmp_path / "out"), *FLAGS, *args)
    assert code == 1 and message in output and "Traceback" not in output


def test_resuming_with_other_settings_or_into_a_foreign_folder_is_refused(keyframe_run, tmp_path, export):
    out = tmp_path / "out"
    assert export(str(keyframe_run), "--out", str(out), *FLAGS)[0] == 0
    code, output = export(str(keyframe_run), "--out", str(out), "--num-frames", "5", "--width", "32", "--height", "48")
    assert code == 1 and "holds an export made with other settings" in output
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, output = export(str(keyframe_run), "--out", str(foreign), *FLAGS)
    assert code == 1 and "not empty and holds no export" in output


def test_a_missing_release_video_names_the_row(release, tmp_path, export):
    broken = copy_release(release, tmp_path / "broken")
    victim = release.rows["local"][1]["edited_path"]
    (broken.root / "videos" / victim.split("/", 1)[0] / victim.split("/", 1)[1]).unlink()
    code, output = export("ditto_1m:local", "--data-dir", str(broken.root), "--out", str(tmp_path / "out"), *FLAGS)
    assert code == 1 and "Traceback" not in output and victim.split("/")[-1] in output


def test_first_frame_keyframes_and_pngs_are_plain_rgb(release, tmp_path, export):
    out = tmp_path / "sim2real"
    assert export("ditto_1m:sim2real", "--data-dir", str(release.root), "--out", str(out), "--keyframes", *FLAGS)[0] == 0
    for row in read_jsonl(out / "metadata.jsonl"):
        with Image.open(out / row["vace_reference_image"]) as image:
            assert image.mode == "RGB" and image.size == (32, 48)
