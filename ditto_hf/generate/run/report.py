"""What a run shows: live per-stage progress, the final cost table and the ``--dry-run`` plan.

Progress is read from the resume markers (``state/<stage>/*.json``), so it works the same for every
engine, including Ray actors on other machines writing to a shared ``RUN_DIR``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Self

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.run.recipe import Recipe
from ditto_hf.generate.run.rundir import RunDir

PAPER_GPU_MINUTES_PER_SAMPLE = 10.0  # the paper's figure after distillation and quantisation


class ProgressMonitor:
    """Polls the markers of each stage and shows done / failed / rejected and samples/s."""

    def __init__(self, run: RunDir, stages: list[str], total: int, console: Console, interval: float = 0.5):
        self.run, self.stages, self.total, self.interval = run, stages, total, interval
        self.markers: dict[str, dict[str, tuple[int, str]]] = {stage: {} for stage in stages}  # name -> (mtime, status)
        self.counts: dict[str, Counter] = {stage: Counter() for stage in stages}
        self.first: dict[str, tuple[float, int]] = {}  # (time, new markers) when new markers first appeared
        self.latest: dict[str, tuple[float, int]] = {}  # ... and when they last grew
        self.resumed = {stage: self._scan(stage) for stage in stages}  # markers from earlier invocations
        self.progress = Progress(
            TextColumn("{task.fields[stage]:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks = {stage: self.progress.add_task(stage, stage=stage, status="", total=total) for stage in stages}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def __enter__(self) -> Self:
        self.progress.start()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.refresh()
        self.progress.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def refresh(self) -> None:
        for stage in self.stages:
            done = self._scan(stage)
            new = done - self.resumed[stage]
            if new > self.latest.get(stage, (0.0, 0))[1]:
                now = time.perf_counter()
                self.first.setdefault(stage, (now, new))
                self.latest[stage] = (now, new)
            counts = self.counts[stage]
            status = f"ok {counts['ok']}  rejected {counts['rejected']}  failed {counts['failed']}  {self._rate(stage)}"
            self.progress.update(self.tasks[stage], completed=done, status=status)

    def _rate(self, stage: str) -> str:
        """Samples per second while the stage's markers were growing."""
        if stage not in self.first or self.latest[stage][0] <= self.first[stage][0]:
            return "-/s"
        (start, count0), (end, count1) = self.first[stage], self.latest[stage]
        return f"{(count1 - count0) / (end - start):.2f}/s"

    def _scan(self, stage: str) -> int:
        """Read the stage's new or rewritten markers; return how many markers the stage has."""
        folder = self.run.root / "state" / stage
        if not folder.is_dir():
            return 0
        known = self.markers[stage]
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.name.endswith(".json"):
                    continue
                mtime = entry.stat().st_mtime_ns
                if known.get(entry.name, (None,))[0] == mtime:
                    continue
                try:
                    status = json.loads(Path(entry.path).read_text()).get("status", "ok")
                except (OSError, ValueError):
                    continue
                known[entry.name] = (mtime, status)
        self.counts[stage] = Counter(status for _, status in known.values())
        return len(known)


def cost_table(records: list[Sample], recipe: Recipe) -> Table:
    """Seconds per stage per sample, GPU-seconds per kept sample and acceptance rate per stage
    (samples passed on / samples that reached the stage)."""
    kept = sum(sample.ok for sample in records)
    table = Table(title=f"Cost of this run ({kept} kept of {len(records)})")
    for column in ("stage", "samples", "s / sample", "GPUs", "GPU-s / kept", "rejected", "failed", "acceptance"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    total_gpu_seconds = 0.0
    for spec in recipe.stages:
        seconds = [sample.timings[spec.name] for sample in records if spec.name in sample.timings]
        rejected = sum(sample.status == "rejected" and sample.rejected_by == spec.name for sample in records)
        failed = sum(sample.status == "failed" and sample.rejected_by == spec.name for sample in records)
        gpus = spec.resources.gpus
        gpu_seconds = sum(seconds) * gpus
        total_gpu_seconds += gpu_seconds
        reached = len(seconds) + failed
        acceptance = f"{(len(seconds) - rejected) / reached:.0%}" if reached else "-"
        table.add_row(spec.name, str(reached), _mean(seconds), f"{gpus:g}", _per(gpu_seconds, kept), str(rejected), str(failed), acceptance)
    if kept:
        per_kept = f"{total_gpu_seconds / kept:.2f} ({total_gpu_seconds / kept / 60:.3f} GPU-min"
    else:
        per_kept = f"- (no sample kept, {total_gpu_seconds:.2f} spent"
    table.caption = (
        f"GPU-seconds per kept sample: {per_kept}; the paper reports "
        f"~{PAPER_GPU_MINUTES_PER_SAMPLE:g} GPU-min with distilled, quantised models). GPU-seconds = stage seconds x declared GPUs."
    )
    return table


@dataclass(frozen=True)
class StageEstimate:
    """One stage of the ``--dry-run`` cost: GPU-seconds per sample that reaches it, and how many do."""

    stage: str
    gpu_seconds: float | None  # estimate_seconds x declared GPUs; None when the recipe gives no estimate
    reach: float  # fraction of the source clips that reach the stage (the pass rates before it)
    source: str


@dataclass(frozen=True)
class CostEstimate:
    """The recipe's cost per source clip and per kept sample, from its per-stage estimates."""

    stages: list[StageEstimate]
    kept_fraction: float  # product of every stage's pass rate

    @classmethod
    def of(cls, recipe: Recipe) -> CostEstimate:
        stages, reach = [], 1.0
        for spec in recipe.stages:
            seconds = None if spec.estimate_seconds is None else spec.estimate_seconds * spec.resources.gpus
            stages.append(StageEstimate(spec.name, seconds, reach, spec.estimate_source))
            reach *= spec.pass_rate
        return cls(stages, reach)

    @property
    def gpu_seconds_per_clip(self) -> float:
        """Expected GPU-seconds per source clip (each stage weighted by the clips that reach it)."""
        return sum((stage.gpu_seconds or 0.0) * stage.reach for stage in self.stages)

    @property
    def gpu_minutes_per_kept(self) -> float:
        return self.gpu_seconds_per_clip / self.kept_fraction / 60

    @property
    def missing(self) -> list[str]:
        return [stage.stage for stage in self.stages if stage.gpu_seconds is None]


def plan_table(recipe: Recipe, num_samples: int | None) -> Table:
    """The ``--dry-run`` plan: stages, models, resources, and the recipe's estimates with their sources
    (GPU-seconds per sample reaching each stage, GPU-minutes per source clip and per kept sample)."""
    clips = "an unknown number of" if num_samples is None else str(num_samples)
    gpu = recipe.gpu_class or "the recipe's reference GPU"
    table = Table(title=f"Plan: recipe {recipe.name!r}, {clips} source clip(s), estimates for {gpu}")
    columns = ("stage", "class", "models", "GPUs", "memory GB", "max workers", "batch", "est. GPU-s / sample", "reach", "source")
    for column in columns:
        table.add_column(column, justify="left" if column in ("stage", "class", "models", "source") else "right", overflow="fold")
    cost = CostEstimate.of(recipe)
    for spec, estimate in zip(recipe.stages, cost.stages, strict=True):
        stage_class, config, resources = spec.stage_class(), spec.build_config(), spec.resources
        specs = {field.name: getattr(config, field.name) for field in fields(config)}
        models = [_model_label(name, value) for name, value in specs.items() if isinstance(value, ModelSpec)]
        table.add_row(
            spec.name,
            stage_class.__qualname__,
            "\n".join(models) or "-",
            f"{resources.gpus:g}",
            f"{resources.memory_gb:g}",
            str(resources.max_workers or spec.workers or "-"),
            str(config.batch_size),
            "?" if estimate.gpu_seconds is None else f"{estimate.gpu_seconds:g}",
            f"{estimate.reach:.0%}",
            estimate.source or "-",
        )
    per_clip = cost.gpu_seconds_per_clip
    total = "" if num_samples is None else f", {per_clip * num_samples / 3600:.2f} GPU-hours for {num_samples} clip(s)"
    missing = f" Stages without an estimate count as 0: {', '.join(cost.missing)}." if cost.missing else ""
    table.caption = (
        f"Estimated: {per_clip / 60:.2f} GPU-min per source clip{total}; "
        f"{cost.gpu_minutes_per_kept:.2f} GPU-min per kept sample ({cost.kept_fraction:.0%} of the clips kept, from the pass rates). "
        f"From the recipe's estimate_seconds x declared GPUs on {gpu} (the paper: ~{PAPER_GPU_MINUTES_PER_SAMPLE:g} GPU-min "
        f"per sample with distilled, quantised models).{missing}"
    )
    return table


def _model_label(name: str, spec: ModelSpec) -> str:
    quantization = f" ({spec.quantization.type})" if spec.quantization else ""
    return f"{name}={spec.id}{quantization}"


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.3f}" if values else "-"


def _per(total: float, count: int) -> str:
    return f"{total / count:.3f}" if count else "-"
