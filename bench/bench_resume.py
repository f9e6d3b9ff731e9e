"""Resume planning of a generate run at scale, against listing and parsing every marker once.

Writes a synthetic run directory: N samples through a three-stage recipe, most samples finished,
some rejected or failed on the way, some not started (markers written as the engines write them).
Measured in one run, each in a fresh forked process (cold Python objects, warm page cache), as CPU
seconds (user + system: the scan is CPU-bound once the markers are in the page cache):

- baseline: one ``os.scandir`` per stage folder, then open, read and ``json.loads`` every marker;
- per-sample: ``RunDir.resume_point`` for each sample (a look-up per stage per sample, misses
  included): the resume planning before the batched scan;
- batched: ``RunDir.resume_points`` (one scan per stage, each existing marker read once);
- monitor: starting the progress monitor after the batched resume (it reuses what resume read),
  against starting it cold (it reads every marker again).

    python bench/bench_resume.py [--samples 10000 100000 333334]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench_plan import in_child  # the script's folder is on sys.path

STAGES = ["dedup", "motion", "vlm"]


def write_run(root: Path, samples: int) -> int:
    """Markers of ``samples`` synthetic samples; returns how many marker files were written."""
    from ditto_hf.generate.contract.sample import Sample
    from ditto_hf.generate.run.rundir import STATE

    for stage in STAGES:
        (root / STATE / stage).mkdir(parents=True, exist_ok=True)
    written = 0
    for number in range(samples):
        done = len(STAGES) if number % 10 else number % len(STAGES)  # 10% stopped early or not started
        for index in range(done):
            record = Sample(f"s{number:07d}", f"inputs/s{number:07d}.mp4", video=f"video/s{number:07d}.mp4", caption="a clip")
            record.timings = {stage: 1.25 for stage in STAGES[: index + 1]}
            if index == done - 1 and number % 13 == 0:
                record.reject(STAGES[index], "below threshold", score=0.2)
            (root / STATE / STAGES[index] / f"{record.sample_id}.json").write_text(record.to_json())
            written += 1
    return written


def timed(function, *args) -> float:
    """CPU seconds (user + system) of ``function(*args)``: steadier than wall time on a shared machine."""
    start = time.process_time()
    function(*args)
    return time.process_time() - start


def list_and_parse(root: Path) -> None:
    for stage in STAGES:
        with os.scandir(root / "state" / stage) as entries:
            for entry in entries:
                with open(entry.path, "rb") as handle:
                    json.loads(handle.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, nargs="+", default=[10_000, 100_000, 333_334])
    args = parser.parse_args()

    from ditto_hf.generate.contract.sample import Sample

    work = Path(tempfile.mkdtemp(prefix="ditto-bench-resume-"))
    print(
        f"{'samples':>8}{'markers':>9}{'baseline s':>11}{'per-sample s':>13}{'batched s':>10}{'x base':>7}"
        f"{'µs/marker':>10}{'monitor cold s':>15}{'after resume s':>15}"
    )
    for count in args.samples:
        root = work / f"run-{count}"
        markers = write_run(root, count)
        samples = [Sample(f"s{number:07d}", f"inputs/s{number:07d}.mp4") for number in range(count)]
        baseline = in_child(timed, list_and_parse, root)
        per_sample = in_child(timed, resume_one_by_one, root, samples)
        batched = in_child(timed, resume_batched, root, samples)
        cold, warm = in_child(start_monitor, root, samples, False), in_child(start_monitor, root, samples, True)
        print(
            f"{count:>8}{markers:>9}{baseline:>11.2f}{per_sample:>13.2f}{batched:>10.2f}{batched / baseline:>7.2f}"
            f"{batched / markers * 1e6:>10.1f}{cold:>15.2f}{warm:>15.2f}"
        )


def resume_one_by_one(root: Path, samples: list) -> list:
    from ditto_hf.generate.run.rundir import RunDir

    run = RunDir(root)
    return [run.resume_point(sample, STAGES) for sample in samples]


def resume_batched(root: Path, samples: list) -> list:
    from ditto_hf.generate.run.rundir import RunDir

    return RunDir(root).resume_points(samples, STAGES)


def start_monitor(root: Path, samples: list, resume_first: bool) -> float:
    """Seconds to start the progress monitor, after the batched resume or cold."""
    from rich.console import Console

    from ditto_hf.generate.run.report import ProgressMonitor
    from ditto_hf.generate.run.rundir import RunDir

    run = RunDir(root)
    if resume_first:
        run.resume_points(samples, STAGES)
    return timed(ProgressMonitor, run, STAGES, len(samples), Console(quiet=True))


if __name__ == "__main__":
    main()
