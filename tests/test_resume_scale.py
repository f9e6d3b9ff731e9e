"""Resume planning over many synthetic markers: one directory scan per stage, each marker read at
most once, no look-ups of markers that do not exist, the same answer as sample-by-sample."""

from __future__ import annotations

import sys

import pytest
from rich.console import Console

from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.run.report import ProgressMonitor
from ditto_hf.generate.run.rundir import STATE, RunDir

STAGES = ["dedup", "motion", "vlm"]
SAMPLES = 3000
_OPENED: list[str] = []
_WATCHING: list[str] = []


def _audit(event: str, args) -> None:
    if _WATCHING and event == "open" and isinstance(args[0], str) and args[0].startswith(_WATCHING[0]):
        _OPENED.append(args[0])


sys.addaudithook(_audit)


def state_of(number: int) -> tuple[int, str]:
    """How far synthetic sample ``number`` got: (stages with a marker, status of the last one)."""
    done = number % (len(STAGES) + 1)
    status = "ok"
    if done and number % 7 == 0:
        status = "rejected"
    elif done and number % 11 == 0:
        status = "failed"
    return done, status


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[RunDir, list[Sample]]:
    run = RunDir(tmp_path_factory.mktemp("resume") / "run")
    samples = [Sample(f"s{number:06d}", f"inputs/s{number:06d}.mp4") for number in range(SAMPLES)]
    for number, sample in enumerate(samples):
        done, status = state_of(number)
        for index in range(done):
            record = Sample(sample.sample_id, sample.input_path, video=f"video/{sample.sample_id}.mp4")
            record.timings = {stage: 0.5 for stage in STAGES[: index + 1]}
            if index == done - 1 and status == "rejected":
                record.reject(STAGES[index], "too static", motion=0.1)
            elif index == done - 1 and status == "failed":
                record.fail(STAGES[index], "CUDA out of memory")
            run.write_marker(STAGES[index], record)
    (run.root / STATE / STAGES[0] / ".s000001.json.tmp").write_text("{")  # a temporary file left by a kill
    return run, samples


@pytest.mark.parametrize("retry_failed", [False, True])
def test_resume_points_equal_resume_point_one_by_one(run, retry_failed):
    run_dir, samples = run
    together = run_dir.resume_points(samples, STAGES, retry_failed)
    one_by_one = [run_dir.resume_point(sample, STAGES, retry_failed) for sample in samples]
    assert [(item.start, item.sample) for item in together] == [(item.start, item.sample) for item in one_by_one]
    starts = {item.start for item in together}
    assert starts == {0, 1, 2, 3}


def test_resume_reads_each_existing_marker_once_and_never_misses(run):
    run_dir, samples = run
    markers = sorted(str(path) for path in (run_dir.root / STATE).glob("*/*.json"))
    needed = []
    for number, sample in enumerate(samples):
        done, _ = state_of(number)
        needed += [str(run_dir.marker(stage, sample.sample_id)) for stage in STAGES[:done]]
    _OPENED.clear()
    _WATCHING.append(str(run_dir.root / STATE))
    try:
        run_dir.resume_points(samples, STAGES)
    finally:
        _WATCHING.clear()
    assert sorted(_OPENED) == sorted(needed) == markers  # every marker once, nothing that is not there


def test_progress_monitor_starts_from_what_resume_read(run):
    run_dir, samples = run
    run_dir.resume_points(samples, STAGES)
    _OPENED.clear()
    _WATCHING.append(str(run_dir.root / STATE))
    try:
        monitor = ProgressMonitor(run_dir, STAGES, len(samples), Console(file=None, quiet=True))
    finally:
        _WATCHING.clear()
    assert _OPENED == []  # resume planning read them all already
    for index, stage in enumerate(STAGES):
        expected = {"ok": 0, "rejected": 0, "failed": 0}
        for number in range(SAMPLES):
            done, status = state_of(number)
            if done > index:
                expected[status if done == index + 1 else "ok"] += 1
        assert {key: monitor.counts[stage][key] for key in expected} == expected
        assert monitor.resumed[stage] == sum(expected.values())
        if index == 0:
            expected_failed = expected["failed"]
    retried = next(number for number in range(SAMPLES) if state_of(number) == (1, "failed"))
    run_dir.write_marker(STAGES[0], Sample(samples[retried].sample_id, samples[retried].input_path))  # a retry rewrites it
    _WATCHING.append(str(run_dir.root / STATE))
    try:
        monitor.refresh()
    finally:
        _WATCHING.clear()
    assert _OPENED == [str(run_dir.marker(STAGES[0], samples[retried].sample_id))]
    assert monitor.counts[STAGES[0]]["failed"] == expected_failed - 1
