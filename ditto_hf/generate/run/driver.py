"""One generate run from start to finish: recipe, inputs, resume, engine, tables, report.

The ``ditto-hf generate`` command is a thin layer over :func:`prepare` and :func:`execute`; tests
and benchmarks call them directly.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.engines.base import Engine, EngineJob
from ditto_hf.generate.run.inputs import count_sources, discover_samples
from ditto_hf.generate.run.recipe import Recipe, load_recipe
from ditto_hf.generate.run.report import ProgressMonitor, cost_table
from ditto_hf.generate.run.rundir import RunDir

logger = logging.getLogger(__name__)
ENGINES = ("local", "ray")


@dataclass
class RunResult:
    """The outcome of :func:`execute`."""

    run: RunDir
    records: list[Sample]
    engine_seconds: float  # wall time of the engine (stages + engine overhead)

    @property
    def kept(self) -> list[Sample]:
        return [sample for sample in self.records if sample.ok]

    @property
    def failed(self) -> list[Sample]:
        return [sample for sample in self.records if sample.status == "failed"]

    @property
    def rejected(self) -> list[Sample]:
        return [sample for sample in self.records if sample.status == "rejected"]


def make_engine(name: str, job: EngineJob, *, ray_address: str | None = None, wave_size: int | None = None) -> Engine:
    """The engine called ``name`` with its own options: ``wave_size`` (local), ``ray_address`` (ray)."""
    from ditto_hf.errors import DittoError

    if name == "local":
        from ditto_hf.generate.engines.local import LocalEngine

        return LocalEngine(job, wave_size=wave_size)
    if wave_size:
        raise DittoError(f"wave_size applies to the local engine, not to {name!r}")
    if name == "ray":
        try:
            from ditto_hf.generate.engines.ray import RayEngine
        except ImportError as exc:
            raise DittoError(f"the ray engine needs Ray: pip install 'ditto-hf[ray]' ({exc})") from exc
        return RayEngine(job, address=ray_address)
    raise DittoError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


def prepare(
    recipe: str | Path | Recipe,
    output: str | Path,
    src: str | Path | None = None,
    limit: int | None = None,
    command: list[str] | None = None,
) -> tuple[Recipe, RunDir, list[Sample]]:
    """Load and validate the recipe and check the inputs resolve, then (only then) record the recipe
    in the run directory and list the samples."""
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    recipe.validate()
    count_sources(src, limit)
    run = RunDir(output)
    run.begin(recipe.text, recipe.name, command)
    return recipe, run, discover_samples(src, run, limit)


def execute(
    recipe: Recipe,
    run: RunDir,
    samples: list[Sample],
    *,
    engine: str = "local",
    ray_address: str | None = None,
    retry_failed: bool = False,
    wave_size: int | None = None,
    console: Console | None = None,
) -> RunResult:
    """Run the remaining work of every sample and write the manifest and rejected tables.

    ``wave_size`` (local engine) takes that many samples through every stage before starting the
    next ones. With a ``console``, per-stage progress and the cost table are printed to it.
    """
    names = [spec.name for spec in recipe.stages]
    items = [run.resume_point(sample, names, retry_failed) for sample in samples]
    overrides = {key: ModelSpec.coerce(value) for key, value in recipe.model_overrides.items()}
    job = EngineJob(
        run_root=run.root, stages=recipe.stages, seed=recipe.seed, model_overrides=overrides, torch_threads=recipe.torch_threads
    )
    runner = make_engine(engine, job, ray_address=ray_address, wave_size=wave_size)
    start = time.perf_counter()
    if console is None:
        records = runner.run(items)
    else:
        with ProgressMonitor(run, names, len(samples), console):
            records = runner.run(items)
    result = RunResult(run, sorted(records, key=lambda sample: sample.sample_id), time.perf_counter() - start)
    run.write_tables(result.records)
    if console is not None:
        console.print(cost_table(result.records, recipe))
    return result
