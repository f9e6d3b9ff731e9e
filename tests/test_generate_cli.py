"""``ditto-hf generate`` as users run it: a real subprocess, killed with SIGKILL and resumed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engine_fixtures import calls, table_rows, write_fixture_recipe

from ditto_hf.generate.run.driver import execute, prepare


def generate(*args: str, output: Path) -> subprocess.Popen:
    """``ditto-hf generate ARGS`` in a child process, its stdout and stderr going to ``output``."""
    command = [sys.executable, "-m", "ditto_hf.cli", "generate", *args]
    with output.open("w") as stream:
        return subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "160"})


def markers(run: Path) -> set[tuple[str, str]]:
    return {(path.parent.name, path.stem) for path in (run / "state").glob("*/*.json")}


def kill_when(process: subprocess.Popen, ready, output: Path, timeout: float = 120) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` is true."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"the run ended before the kill point:\n{output.read_text()}"
        assert time.monotonic() < deadline, "kill point not reached"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def test_kill_9_twice_then_resume_matches_an_uninterrupted_run(tmp_path, sample_clips):
    recipe_args = {"smooth_passes": 10, "batch_size": 1}
    reference_recipe, _ = write_fixture_recipe(tmp_path, **recipe_args)
    reference = execute(*prepare(reference_recipe, tmp_path / "reference"))
    (tmp_path / "cli").mkdir()
    recipe, log = write_fixture_recipe(tmp_path / "cli", **recipe_args)
    run = tmp_path / "cli" / "run"
    command = ("--input", str(sample_clips[0].parent), "--output", str(run), "--recipe", str(recipe))

    # 1st kill: inside the first stage (some samples have a clip marker, the others nothing);
    # 2nd kill: inside the last stage. After each, remember which markers existed and the calls so far.
    kill_points = [("clip", 2), ("mirror", 1)]
    snapshots = []
    for number, (stage, count) in enumerate(kill_points):
        output = tmp_path / f"killed-{number}.log"
        kill_when(
            generate(*command, output=output),
            lambda stage=stage, count=count: len(list((run / "state" / stage).glob("*.json"))) >= count,
            output,
        )
        snapshots.append((markers(run), calls(log)))
    assert not (run / "manifest.parquet").exists() and {stage for stage, _ in snapshots[-1][0]} == {"clip", "brightness", "mirror"}

    finished = generate(*command, output=tmp_path / "finished.log")
    finished.wait(timeout=300)
    output = (tmp_path / "finished.log").read_text()
    assert finished.returncode == 0, output
    assert "kept 3, rejected 1, failed 0" in output and "GPU-seconds per kept sample" in output
    assert re.search(r"brightness .* 4/4 ok 3  rejected 1  failed 0", output)  # progress counts resumed markers too
    final = calls(log)
    for marked, calls_then in snapshots:
        rerun = {marker for marker in marked if final[marker] != calls_then[marker]}
        assert not rerun, f"stages ran again on samples they had finished: {rerun}"
    assert set(final) == set(calls(tmp_path / "calls.log")), "a sample was lost or a stage skipped"
    assert table_rows(run / "manifest.parquet") == table_rows(reference.run.root / "manifest.parquet")
    assert table_rows(run / "rejected.parquet") == table_rows(reference.run.root / "rejected.parquet")
    assert len(json.loads((run / "run.json").read_text())["invocations"]) == 3


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """``ditto-hf generate ARGS`` in this process: returns (exit code, stdout + stderr)."""
    from ditto_hf.cli import main

    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str) -> tuple[int, str]:
        try:
            main(["generate", *args])
            code = 0
        except SystemExit as exit:
            code = exit.code
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run


def test_dry_run_prints_plan_and_estimate_without_running(tmp_path, run_cli):
    recipe, log = write_fixture_recipe(tmp_path)
    code, output = run_cli("--output", str(tmp_path / "run"), "--recipe", str(recipe), "--limit", "2", "--dry-run")
    assert code == 0, output
    assert "Plan: recipe 'fixture', 2 source clip(s)" in output
    assert "MirrorStage" in output and "0.50 GPU-min per source clip" in output  # mirror: 30 s x 1 GPU
    assert not (tmp_path / "run").exists() and not log.exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--recipe", "nope"), 1, "neither a bundled recipe"),
        (("--push-to-hub", "me/repo"), 2, "--push-to-hub and --config-name go together"),
        (("--input", "/no/such/folder", "--recipe", "FIXTURE"), 1, "is not a folder, list file, video or loadable dataset"),
    ],
)
def test_user_errors_are_one_line(tmp_path, run_cli, args, code, message):
    recipe, _ = write_fixture_recipe(tmp_path)
    args = tuple(str(recipe) if arg == "FIXTURE" else arg for arg in args)
    exit_code, output = run_cli("--output", str(tmp_path / "run"), *args)
    assert exit_code == code and message in output and "Traceback" not in output
