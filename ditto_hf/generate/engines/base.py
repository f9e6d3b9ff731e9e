"""What both engines share: the per-stage worker and the engine interface.

An engine receives :class:`~ditto_hf.generate.run.WorkItem` s (a sample and the next stage it
needs), runs the recipe's stages on them and returns every sample's final record. It knows nothing
about what a stage does: it builds ``stage_class(config, context)``, calls ``setup()``,
``process(batch)`` and ``teardown()``, and reads ``Stage.resources``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ditto_hf.generate.contract.models import ModelRegistry, ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import StageContext
from ditto_hf.generate.run.recipe import StageSpec
from ditto_hf.generate.run.rundir import RunDir, WorkItem


@dataclass
class EngineJob:
    """Everything an engine (or a remote worker) needs to rebuild the stages of a run."""

    run_root: Path
    stages: list[StageSpec]
    seed: int = 0
    model_overrides: dict[str, ModelSpec] = field(default_factory=dict)
    torch_threads: int | None = None  # intra-op threads per worker process (None: torch's default)

    @property
    def stage_names(self) -> list[str]:
        return [spec.name for spec in self.stages]


class StageWorker:
    """One instance of one stage, bound to a run directory.

    ``process`` runs the stage on a batch and returns the sample records to persist as resume
    markers (JSON text, serialised at once so later stages can keep mutating the samples).
    """

    def __init__(self, job: EngineJob, spec: StageSpec):
        if job.torch_threads:
            import torch

            torch.set_num_threads(job.torch_threads)
        self.spec = spec
        self.run = RunDir(job.run_root)
        context = StageContext(work_dir=self.run.root, registry=ModelRegistry(job.model_overrides), seed=job.seed)
        self.stage = spec.stage_class()(spec.build_config(), context)
        self.busy_seconds = 0.0

    def setup(self) -> None:
        self.stage.setup()

    def teardown(self) -> None:
        self.stage.teardown()
        self.stage.context.registry.clear()
        _release_accelerator_memory()

    def process(self, batch: list[Sample]) -> list[tuple[Path, str]]:
        """Run the stage on ``batch`` (in place) and return ``(marker path, record)`` pairs."""
        start = time.perf_counter()
        out = self.stage.process(batch)
        self.busy_seconds += time.perf_counter() - start
        if sorted(sample.sample_id for sample in out) != sorted(sample.sample_id for sample in batch):
            raise RuntimeError(
                f"stage {self.spec.name!r} returned other samples than it was given; stages must map a batch to the same samples"
            )
        return [(self.run.marker(self.spec.name, sample.sample_id), sample.to_json()) for sample in batch]


def batches(samples: list[Sample], size: int) -> Iterator[list[Sample]]:
    for offset in range(0, len(samples), size):
        yield samples[offset : offset + size]


class Engine(ABC):
    """Runs the stages of ``job`` over work items and returns every sample's final record.

    Engine-specific options (the local engine's waves, the Ray address) are constructor
    arguments of that engine; a stage runs on the items for which :meth:`WorkItem.runs` holds.
    """

    name: str

    def __init__(self, job: EngineJob):
        self.job = job

    @abstractmethod
    def run(self, items: list[WorkItem]) -> list[Sample]:
        """Process ``items`` through the remaining stages; markers are written as samples finish each stage."""


def _release_accelerator_memory() -> None:
    """Return a finished stage's GPU memory before the next stage loads (a full gc costs ~0.3 s, so
    only when there is an accelerator to free)."""
    import gc

    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
