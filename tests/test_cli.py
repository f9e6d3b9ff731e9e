"""The ``ditto-hf`` entry point: help, version, probe, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ditto_hf import __version__


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ditto_hf.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_every_command_group():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()}
    # only the commands that work are listed
    assert listed == {"probe", "stream", "index", "mirror", "check", "generate", "edit", "lora", "eval", "export", "view"}


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_probe_table_and_json(sample_clips):
    table = run_cli("probe", *map(str, sample_clips))
    assert table.returncode == 0, table.stderr
    assert "h264" in table.stdout and "320" in table.stdout and "192" in table.stdout
    rows = [json.loads(line) for line in run_cli("probe", "--json", *map(str, sample_clips)).stdout.splitlines()]
    assert [(row["width"], row["height"], row["num_frames"]) for row in rows if row["path"].endswith("portrait.mp4")] == [(192, 320, 48)]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("probe", "does-not-exist.mp4"), 1, "does-not-exist.mp4: no such file"),
        (("probe",), 2, "Missing argument"),
        (("no-such-command",), 2, "No such command"),
    ],
)
def test_exit_codes(args, code, message):
    result = run_cli(*args)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
