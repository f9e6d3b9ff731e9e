"""``ditto-hf eval`` end to end: a folder + JSONL, a generate run directory, a Hub config streamed back,
several systems side by side, bad input as one-line errors or counted skips."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from engine_fixtures import write_fixture_recipe
from evaluate_fixtures import moving_bar, write_bench, write_short_judge_prompt

from ditto_hf.generate.run.driver import execute, prepare
from ditto_hf.tiny.clip import save_tiny_clip
from ditto_hf.tiny.qwen import save_tiny_qwen_vl
from ditto_hf.video import write_video


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    return {
        "clip": str(save_tiny_clip(root / "clip")),
        "vlm": str(save_tiny_qwen_vl(root / "qwen-vl")),
        "prompt": str(write_short_judge_prompt(root / "prompts")),
    }


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory, sample_clips) -> Path:
    """A finished generate run of the fixture stages (clip -> brightness -> mirror): 3 kept triplets."""
    folder = tmp_path_factory.mktemp("run")
    recipe, _ = write_fixture_recipe(folder)
    result = execute(*prepare(recipe, folder / "r1", src=sample_clips[0].parent))
    assert len(result.kept) == 3
    return result.run.root


@pytest.fixture
def bench(tmp_path):
    return write_bench(tmp_path / "bench")


@pytest.fixture
def run_eval(capsys, monkeypatch, models):
    """``ditto-hf eval ARGS`` in this process with the tiny models: (exit code, stdout, stderr)."""
    from ditto_hf.cli import main

    monkeypatch.setenv("COLUMNS", "220")

    def run(*args: str, judge: bool = False) -> tuple[int, str, str]:
        model_args = ["--clip", models["clip"], "--device", "cpu"]
        model_args += ["--vlm", models["vlm"], "--judge-prompt", models["prompt"]] if judge else ["--vlm", "none"]
        try:
            main(["eval", *args, *model_args])
            code = 0
        except SystemExit as exit:
            code = exit.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_folder_and_jsonl_end_to_end_with_the_judge(run_eval, bench, tmp_path):
    out = tmp_path / "scores.json"
    args = (str(bench.edits), "--instructions", str(bench.instructions), "--source", str(bench.sources), "--json", str(out))
    code, stdout, stderr = run_eval(*args, judge=True)
    assert code == 0, stderr
    assert "paper: Editto" in stdout and "25.54" in stdout and "CLIP-F all pairs" in stdout
    assert "NOT comparable to the paper's CLIP-T / CLIP-F" in stdout and "VLM scores compare between the rows above" in stdout
    assert "global_style" in stdout  # per-category rows
    report = json.loads(out.read_text())
    (system,) = report["systems"]
    assert system["kind"] == "folder" and [edit["id"] for edit in system["edits"]] == bench.names
    assert report["settings"]["clip"]["frames"] == "every frame" and "centre crop 224x224" in report["settings"]["clip"]["resize"]
    assert [row["method"] for row in report["paper_table_1"]] == ["TokenFlow", "InsV2V", "InsViE", "Editto"]
    for edit in system["edits"]:
        assert edit["frames"] == 9 and 0 <= edit["vlm"] <= 10
    assert system["scores"]["clip_f"] == math.fsum(edit["clip_f"] for edit in system["edits"]) / 4
    assert system["scores"]["vlm"] == math.fsum(edit["vlm"] for edit in system["edits"]) / 4
    assert {edit["id"]: edit["clip_f"] for edit in system["edits"]}["still.mp4"] == 100.0


def test_run_directory_end_to_end(run_eval, fixture_run, tmp_path):
    out = tmp_path / "run.json"
    code, stdout, stderr = run_eval(str(fixture_run), "--json", str(out), judge=True)
    assert code == 0, stderr
    (system,) = json.loads(out.read_text())["systems"]
    manifest = fixture_run / "manifest.parquet"
    import pyarrow.parquet as pq

    kept = pq.read_table(manifest).to_pydict()
    assert system["kind"] == "run" and system["name"] == "r1"
    assert [edit["id"] for edit in system["edits"]] == kept["sample_id"]
    assert {edit["instruction"] for edit in system["edits"]} == {"Mirror the video from left to right."}
    assert set(system["categories"]) == {"global_freeform"} and system["scores"]["edits"] == 3
    assert all("error" not in edit["judge"] for edit in system["edits"])
    assert "r1" in stdout


def test_a_hub_config_streams_and_scores_like_the_run_it_was_published_from(run_eval, fixture_run, hub_server, tmp_path):
    from ditto_hf.generate.run.rundir import RunDir
    from ditto_hf.hub import publish

    run = RunDir(fixture_run)
    publish(run.dataset(), "loopback/evaluated", "r1", token=hub_server.token, provenance=run.provenance())
    code, stdout, stderr = run_eval("loopback/evaluated:r1", str(fixture_run), "--json", str(tmp_path / "both.json"))
    assert code == 0, stderr
    hub, local = json.loads((tmp_path / "both.json").read_text())["systems"]
    assert hub["kind"] == "dataset" and hub["name"] == "loopback/evaluated:r1" and local["kind"] == "run"
    assert hub["scores"] == local["scores"]  # the same videos, streamed from parquet: the same bits
    assert [edit["id"] for edit in hub["edits"]] == [f"generated/{edit['id']}.mp4" for edit in local["edits"]]
    assert "loopback/evaluated:r1" in stdout and "r1" in stdout


def test_several_systems_get_one_row_each(run_eval, bench, tmp_path):
    other = tmp_path / "other" / "edits"
    shutil.copytree(bench.edits, other)
    write_video(other / "bar0.mp4", moving_bar(9, tint=10), fps=8)
    code, stdout, stderr = run_eval(str(bench.edits), str(other), "--instructions", str(bench.instructions), "--json", "-")
    assert code == 0, stderr
    first, second = json.loads(stdout)["systems"]
    assert (first["name"], second["name"]) == (str(bench.edits), str(other))  # same folder name: named by path
    assert first["edits"][1:] == second["edits"][1:] and first["edits"][0] != second["edits"][0]
    assert str(other) in stderr  # the table goes to stderr when the JSON takes stdout


def write_bad_input(bench, problem: str) -> str:
    """Break the bench in one way; returns the text the error must contain."""
    lines = bench.instructions.read_text().splitlines()
    if problem == "missing video":
        (bench.edits / "bar1.mp4").unlink()
        return f"{bench.instructions}:2: missing video {bench.edits / 'bar1.mp4'}"
    if problem == "no instruction":
        write_video(bench.edits / "extra.mp4", moving_bar(9), fps=8)
        return f"{bench.edits / 'extra.mp4'}: no instruction for it in {bench.instructions}"
    if problem == "blank instruction":
        row = json.loads(lines[2])
        lines[2] = json.dumps({**row, "instruction": "  "})
        bench.instructions.write_text("\n".join(lines) + "\n")
        return f"{bench.instructions}:3: no instruction for bar2.mp4"
    if problem == "unreadable file":
        (bench.edits / "bar2.mp4").write_bytes(b"not a video at all" * 10)
        return f"{bench.instructions}:3: {bench.edits / 'bar2.mp4'}: cannot be opened as a video"
    if problem == "wrong frame count":
        write_video(bench.sources / "bar0.mp4", moving_bar(5), fps=8)
        return f"{bench.instructions}:1: the edit has 9 frames, its source 5"
    raise AssertionError(problem)


PROBLEMS = ["missing video", "no instruction", "blank instruction", "unreadable file", "wrong frame count"]


@pytest.mark.parametrize("problem", PROBLEMS)
def test_bad_input_is_a_one_line_error_naming_it(run_eval, bench, problem):
    expected = write_bad_input(bench, problem)
    code, _, stderr = run_eval(str(bench.edits), "--instructions", str(bench.instructions), "--source", str(bench.sources))
    assert code == 1 and "Traceback" not in stderr
    assert expected in stderr and "--skip-bad" in stderr
    assert len([line for line in stderr.splitlines() if line.startswith("Error:")]) == 1


@pytest.mark.parametrize("problem", PROBLEMS)
def test_skip_bad_counts_and_lists_the_skipped_edit(run_eval, bench, problem, tmp_path, caplog):
    expected = write_bad_input(bench, problem)
    out = tmp_path / "skip.json"
    args = (str(bench.edits), "--instructions", str(bench.instructions), "--source", str(bench.sources), "--skip-bad", "--json", str(out))
    code, stdout, stderr = run_eval(*args)
    assert code == 0, stderr
    (system,) = json.loads(out.read_text())["systems"]
    (skipped,) = system["skipped"]
    assert f"{skipped['where']}: {skipped['reason']}".startswith(expected)
    assert system["scores"]["edits"] == len(system["edits"]) == (4 if problem == "no instruction" else 3)
    assert "(+1 skipped)" in stdout and "1 edit(s) skipped as bad input" in stdout
    assert f"skipped {expected}" in caplog.text  # logged as it happens


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("EDITS",), "no instructions for its videos; give --instructions FILE"),
        (("EDITS", "--instructions", "BENCH/nope.jsonl"), "nope.jsonl: no such instruction file"),
        (("EDITS", "--instructions", "BROKEN"), "broken.jsonl:2: not a JSON object"),
        (("EDITS", "--instructions", "TWICE"), "twice.jsonl:2: 'bar0.mp4' is listed again (first at line 1)"),
        (("EDITS", "--instructions", "INSTRUCTIONS"), 'no source video for the judge: give --source or "source"'),
        (("RUN", "--instructions", "INSTRUCTIONS"), "--instructions and --source apply to a folder of videos"),
        (("BENCH/no-such-thing",), "is not a folder of videos, a run directory or a loadable dataset"),
        (("INSTRUCTIONS",), "give a folder of videos, a run directory or a datasets source, not a file"),
    ],
)
def test_user_errors_are_one_line(run_eval, bench, fixture_run, args, message):
    (bench.instructions.parent / "broken.jsonl").write_text('{"video": "bar0.mp4", "instruction": "x"}\n{"video": \n')
    twice = '{"video": "bar0.mp4", "instruction": "x"}\n{"video": "./bar0.mp4", "instruction": "y"}\n'
    (bench.instructions.parent / "twice.jsonl").write_text(twice)
    names = {
        "EDITS": str(bench.edits),
        "RUN": str(fixture_run),
        "INSTRUCTIONS": str(bench.instructions),
        "BROKEN": str(bench.instructions.parent / "broken.jsonl"),
        "TWICE": str(bench.instructions.parent / "twice.jsonl"),
    }
    resolved = [names.get(arg, arg.replace("BENCH", str(bench.instructions.parent))) for arg in args]
    code, _, stderr = run_eval(*resolved, judge="no source" in message)
    assert code == 1 and "Traceback" not in stderr, stderr
    assert message in stderr


def test_sources_resolve_from_the_jsonl_field_or_by_name(run_eval, bench, tmp_path):
    """``source`` fields are relative to --source (else to the JSONL's folder); without one, the same name under --source."""
    rows = [json.loads(line) for line in bench.instructions.read_text().splitlines()]
    shutil.move(bench.sources / "bar0.mp4", bench.sources / "renamed.mp4")
    rows[0]["source"] = "renamed.mp4"
    write_video(bench.sources / "bar0.mp4", torch.zeros((5, 32, 64, 3), dtype=torch.uint8), fps=8)  # wrong length if used
    instructions = tmp_path / "with-sources.jsonl"
    instructions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, _, stderr = run_eval(str(bench.edits), "--instructions", str(instructions), "--source", str(bench.sources))
    assert code == 0, stderr  # bar0's source is renamed.mp4 (9 frames), not the 5-frame decoy bar0.mp4


def write_dataset_folder(bench, folder: Path, features: dict, columns: dict) -> Path:
    """The bench's edits as a local parquet dataset with ``columns`` of ``features``."""
    import datasets

    dataset = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    folder.mkdir(parents=True)
    dataset.to_parquet(folder / "train.parquet")  # video paths only: the files stay in the bench
    return folder


def test_a_local_dataset_folder_with_class_label_categories(run_eval, bench, tmp_path):
    import datasets

    rows = [json.loads(line) for line in bench.instructions.read_text().splitlines()]
    names = sorted({row["category"] for row in rows})
    features = {
        "edited": datasets.Video(),
        "instruction": datasets.Value("string"),
        "source": datasets.Value("string"),  # a path string, not a video: not read
        "category": datasets.ClassLabel(names=names),
    }
    columns = {
        "edited": [str(bench.edits / row["video"]) for row in rows],
        "instruction": [row["instruction"] for row in rows],
        "source": ["elsewhere.mp4"] * len(rows),
        "category": [names.index(row["category"]) for row in rows],
    }
    folder = write_dataset_folder(bench, tmp_path / "edits-dataset", features, columns)
    code, stdout, stderr = run_eval(str(folder), str(bench.edits), "--instructions", str(bench.instructions), "--json", "-")
    assert code == 0, stderr
    from_dataset, from_folder = json.loads(stdout)["systems"]
    assert from_dataset["kind"] == "dataset" and from_folder["kind"] == "folder"
    assert [edit["id"] for edit in from_dataset["edits"]] == [str(bench.edits / name) for name in bench.names]
    assert from_dataset["categories"] == from_folder["categories"] and set(from_dataset["categories"]) == set(names)
    assert from_dataset["scores"] == from_folder["scores"]


def test_a_dataset_without_the_triplet_columns_is_a_one_line_error(run_eval, bench, tmp_path):
    import datasets

    features = {"edited": datasets.Video(), "prompt": datasets.Value("string")}
    columns = {"edited": [str(bench.edits / bench.names[0])], "prompt": ["Make it snow."]}
    folder = write_dataset_folder(bench, tmp_path / "no-instruction", features, columns)
    code, _, stderr = run_eval(str(folder))
    assert code == 1 and "Traceback" not in stderr
    assert f"{folder}: needs an 'edited' Video column and an 'instruction' string column (columns: edited, prompt)" in stderr


@pytest.mark.parametrize("option", ["--clip", "--vlm"])
def test_a_model_that_cannot_be_loaded_is_a_one_line_error(bench, models, option, tmp_path, capsys):
    from ditto_hf.cli import main

    chosen = {"--clip": models["clip"], "--vlm": models["vlm"], option: str(tmp_path / "no-model")}
    args = [str(bench.edits), "--instructions", str(bench.instructions), "--source", str(bench.sources), "--device", "cpu"]
    with pytest.raises(SystemExit) as exit:
        main(["eval", *args, "--clip", chosen["--clip"], "--vlm", chosen["--vlm"], "--judge-prompt", models["prompt"]])
    stderr = capsys.readouterr().err
    assert exit.value.code == 1 and "Traceback" not in stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert line.startswith(f"Error: {option} {tmp_path / 'no-model'}: cannot load it (")
