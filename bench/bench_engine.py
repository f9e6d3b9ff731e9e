"""Engine overhead and Ray speed-up, measured on real (light) stages over copies of the sample clips.

1. Overhead of the local engine: wall time of ``execute`` (markers, threads, tables excluded) against
   a bare loop that builds the same stages and calls ``process`` on the same batches. Goal: <= 5 %.
2. Ray vs local: the same run with the Ray engine on a local 2-CPU Ray (startup included and not).

    python bench/bench_engine.py [--copies 3] [--repeats 3] [--smooth-passes 40] [--skip-ray]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from ditto_hf.generate.engines.base import EngineJob, StageWorker, batches
from ditto_hf.generate.run.driver import execute, prepare
from ditto_hf.samples import sample_clips

STAGES = "ditto_hf.testing.stages"


def write_inputs(folder: Path, copies: int) -> Path:
    inputs = folder / "inputs"
    inputs.mkdir()
    for copy in range(copies):
        for clip in sample_clips():
            shutil.copy(clip, inputs / f"{clip.stem}_{copy:02d}.mp4")
    return inputs


def write_recipe(folder: Path, smooth_passes: int) -> Path:
    stages = {
        "clip": {"class": f"{STAGES}:ClipStage", "width": 192, "height": 192, "num_frames": 24, "fps": 24.0, "batch_size": 4},
        "brightness": {"class": f"{STAGES}:BrightnessStage", "batch_size": 4},
        "mirror": {"class": f"{STAGES}:MirrorStage", "smooth_passes": smooth_passes, "batch_size": 4},
    }
    path = folder / "bench.yaml"
    # one torch thread per worker for both engines: the local engine gets its parallelism from
    # nothing else, Ray from running actors side by side
    path.write_text(yaml.safe_dump({"name": "bench", "seed": 0, "torch_threads": 1, "stages": stages}, sort_keys=False))
    return path


def bare_loop(recipe, samples, work_dir: Path) -> float:
    """The stages called directly, stage after stage, no markers: the baseline."""
    job = EngineJob(run_root=work_dir, stages=recipe.stages, seed=recipe.seed, torch_threads=recipe.torch_threads)
    start = time.perf_counter()
    live = samples
    for spec in recipe.stages:
        worker = StageWorker(job, spec)
        worker.setup()
        for batch in batches(live, spec.batch_size):
            worker.stage.process(batch)
        worker.teardown()
        live = [sample for sample in live if sample.ok]
    return time.perf_counter() - start


def engine_run(recipe_path: Path, inputs: Path, output: Path, engine: str) -> tuple[float, float]:
    """(engine wall seconds, sum of the stage seconds recorded on the samples)."""
    recipe, run, samples = prepare(recipe_path, output, inputs)
    result = execute(recipe, run, samples, engine=engine)
    compute = sum(sum(sample.timings.values()) for sample in result.records)
    return result.engine_seconds, compute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=3, help="copies of the 4 sample clips (samples = 4 x copies)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating bare / engine repeats (best of each kept)")
    parser.add_argument("--smooth-passes", type=int, default=40, help="compute in the mirror stage")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    try:
        inputs, recipe_path = write_inputs(folder, args.copies), write_recipe(folder, args.smooth_passes)
        bare_loop(*prepare(recipe_path, folder / "warm-up", inputs, limit=4)[::2], folder / "warm-up")  # first decode/encode
        bare, local_wall, local_compute = float("inf"), float("inf"), 0.0
        for repeat in range(args.repeats):  # alternate, keep the best of each: the machine may be shared
            recipe, _, samples = prepare(recipe_path, folder / f"bare{repeat}", inputs)
            bare = min(bare, bare_loop(recipe, samples, folder / f"bare{repeat}"))
            wall, compute = engine_run(recipe_path, inputs, folder / f"local{repeat}", "local")
            if wall < local_wall:
                local_wall, local_compute = wall, compute
        print(f"samples: {4 * args.copies}")
        print(f"bare stage loop:       {bare:8.2f} s")
        print(f"local engine:          {local_wall:8.2f} s   (stage compute recorded on samples: {local_compute:.2f} s)")
        print(
            f"engine overhead:       {100 * (local_wall / bare - 1):+7.1f} % vs the bare loop   "
            f"{100 * (local_wall / local_compute - 1):+7.1f} % vs the sum of stage compute   (goal <= 5 %)"
        )
        if not args.skip_ray:
            import ray

            start = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            startup = time.perf_counter() - start
            ray_wall, _ = engine_run(recipe_path, inputs, folder / "ray", "ray")
            ray.shutdown()
            print(f"ray engine (2 CPUs):   {ray_wall:8.2f} s   (+ {startup:.1f} s ray.init)")
            print(
                f"ray vs local speed-up: {local_wall / ray_wall:8.2f} x (pipeline incl. actor start)   "
                f"{local_wall / (ray_wall + startup):.2f} x incl. ray.init"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
