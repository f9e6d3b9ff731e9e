"""Shared helpers for the engine tests: a recipe of the real test stages in ditto_hf.testing.stages."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import yaml

STAGES = "ditto_hf.testing.stages"


def write_fixture_recipe(
    folder: Path,
    *,
    min_brightness: float = 115.0,
    fail_sample: str = "",
    fail_while_exists: str = "",
    smooth_passes: int = 0,
    batch_size: int = 2,
) -> tuple[Path, Path]:
    """A clip -> brightness -> mirror recipe; returns (recipe path, call log path)."""
    log = folder / "calls.log"
    recipe = {
        "name": "fixture",
        "seed": 0,
        "stages": {
            "clip": {"class": f"{STAGES}:ClipStage", "batch_size": batch_size, "call_log": str(log)},
            "brightness": {
                "class": f"{STAGES}:BrightnessStage",
                "min_brightness": min_brightness,
                "call_log": str(log),
                "estimate_seconds": 0.5,
            },
            "mirror": {
                "class": f"{STAGES}:MirrorStage",
                "call_log": str(log),
                "fail_sample": fail_sample,
                "fail_while_exists": fail_while_exists,
                "smooth_passes": smooth_passes,
                "estimate_seconds": 30,
            },
        },
    }
    path = folder / "fixture.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path, log


def calls(log: Path) -> Counter:
    """How many times each (stage, sample_id) ran, from the call log."""
    if not log.exists():
        return Counter()
    return Counter(tuple(line.split()) for line in log.read_text().splitlines())


def table_rows(path: Path, drop=("timings",)) -> list[dict]:
    """Rows of a run's parquet table, comparable across runs (timings removed)."""
    rows = pq.read_table(path).to_pylist()
    for row in rows:
        for key in drop:
            row.pop(key, None)
        for key in ("source", "edited"):
            if isinstance(row.get(key), dict):
                row[key] = row[key]["path"]
    return sorted(rows, key=lambda row: row["sample_id"])


def scores(row: dict) -> dict:
    return row["scores"]
