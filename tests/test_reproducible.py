"""Same recipe, same bytes: encoding and the whole tiny chain do not depend on heap state, thread
count, batch size or wave size.

x264's AVX-512 code makes its output depend on uninitialised heap memory, and its default thread
count follows the host's cores; ``MALLOC_PERTURB_`` fills freed and new heap memory with a chosen
byte, so two child processes with different values expose any such dependence every time.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from ditto_hf.generate.run.recipe import bundled_recipes

ENCODE = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from ditto_hf.video import encode_bytes
t = torch.arange(9).view(9, 1, 1, 1)
y = torch.arange(64).view(1, 64, 1, 1)
x = torch.arange(64).view(1, 1, 64, 1)
c = torch.tensor([3, 5, 7]).view(1, 1, 1, 3)
frames = ((x + y) * c + 11 * t).remainder(256).to(torch.uint8)
print(hashlib.sha256(encode_bytes(frames, 20)).hexdigest())
"""


def child_env(perturb: int | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "MALLOC_PERTURB_"}
    if perturb is not None:
        env["MALLOC_PERTURB_"] = str(perturb)
    return env


def encode_in_child(perturb: int | None, threads: int) -> str:
    result = subprocess.run(
        [sys.executable, "-c", ENCODE, str(threads)], env=child_env(perturb), capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_encoding_gives_the_same_bytes_in_any_heap_state_and_thread_count():
    digests = {(perturb, threads): encode_in_child(perturb, threads) for perturb, threads in [(None, 1), (85, 1), (170, 2), (3, 2)]}
    assert len(set(digests.values())) == 1, digests


def run_tiny_chain(output: Path, recipe: Path, perturb: int, *extra: str) -> None:
    command = [sys.executable, "-m", "ditto_hf.cli", "generate", "--output", str(output), "--recipe", str(recipe), *extra]
    result = subprocess.run(command, env={**child_env(perturb), "COLUMNS": "160"}, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def artifacts(run: Path) -> dict[str, str]:
    """SHA-256 of every file a run wrote, except the ones that record when and how it was invoked."""
    skip = {"run.json", "recipe.yaml", "manifest.parquet", "rejected.parquet"}
    files = [path for path in run.rglob("*") if path.is_file() and path.name not in skip and "state" not in path.relative_to(run).parts]
    return {str(path.relative_to(run)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


def table(path: Path) -> list[dict]:
    rows = pq.read_table(path).to_pylist()
    for row in rows:
        row.pop("timings")
    return rows


@pytest.mark.slow
def test_tiny_chain_is_bit_identical_across_batch_size_wave_size_and_heap_state(tmp_path):
    recipe = yaml.safe_load(bundled_recipes()["tiny"].read_text())
    unbatched = tmp_path / "unbatched.yaml"
    for stage in recipe["stages"].values():
        stage["batch_size"] = 1
    unbatched.write_text(yaml.safe_dump(recipe, sort_keys=False))

    run_tiny_chain(tmp_path / "batched", bundled_recipes()["tiny"], 85)
    run_tiny_chain(tmp_path / "unbatched", unbatched, 170, "--wave-size", "2")

    batched_files, unbatched_files = artifacts(tmp_path / "batched"), artifacts(tmp_path / "unbatched")
    assert len(batched_files) > 20 and any(name.endswith(".mp4") for name in batched_files)
    assert batched_files == unbatched_files
    for name in ("manifest.parquet", "rejected.parquet"):
        assert table(tmp_path / "batched" / name) == table(tmp_path / "unbatched" / name)
