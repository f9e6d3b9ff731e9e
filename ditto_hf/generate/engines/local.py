"""The local engine: every stage in this process, one stage (one set of models) at a time.

Stages run in recipe order over the pending samples, in batches of the stage's ``batch_size``, so
only one stage's models occupy the accelerator at any moment (the paper's models do not fit
together on one GPU). With ``wave_size`` the samples are taken through the whole chain a wave at a
time, so kept samples appear long before a large run ends (each wave loads the models again).
Resume markers are written by a background thread, so file I/O overlaps the next batch's model work.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.engines.base import Engine, EngineJob, StageWorker, batches
from ditto_hf.generate.run.rundir import WorkItem, atomic_write

logger = logging.getLogger(__name__)


class LocalEngine(Engine):
    """Runs the stages in one process, stage after stage.

    ``wave_size``: samples taken through every stage before the next ones start (``None``: all at once).
    """

    name = "local"

    def __init__(self, job: EngineJob, wave_size: int | None = None):
        super().__init__(job)
        self.wave_size = wave_size

    def run(self, items: list[WorkItem]) -> list[Sample]:
        size = self.wave_size or max(len(items), 1)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="markers") as writer:
            for offset in range(0, len(items), size):
                self._run_wave(items[offset : offset + size], writer)
        return [item.sample for item in items]

    def _run_wave(self, items: list[WorkItem], writer: ThreadPoolExecutor) -> None:
        """Take ``items`` through their remaining stages, one stage at a time (samples change in place)."""
        for index in range(len(self.job.stages)):
            todo = [item.sample for item in items if item.runs(index)]
            if todo:
                self._run_stage(index, todo, writer)

    def _run_stage(self, index: int, samples: list[Sample], writer: ThreadPoolExecutor) -> None:
        spec = self.job.stages[index]
        logger.info("stage %s: %d sample(s)", spec.name, len(samples))
        worker = StageWorker(self.job, spec)
        worker.setup()
        pending: list[Future] = []
        try:
            for batch in batches(samples, spec.batch_size):
                pending.append(writer.submit(_write_markers, worker.process(batch)))
        finally:
            worker.teardown()
            for future in pending:
                future.result()  # surface write errors before the next stage starts


def _write_markers(records: list[tuple[Path, str]]) -> None:
    for path, text in records:
        atomic_write(path, text)
