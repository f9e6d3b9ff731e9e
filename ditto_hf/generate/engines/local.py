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

from ditto_hf.generate.engines.base import Engine, StageWorker, batches
from ditto_hf.generate.run import WorkItem, atomic_write
from ditto_hf.generate.sample import Sample

logger = logging.getLogger(__name__)


class LocalEngine(Engine):
    """Runs the stages in one process, stage after stage."""

    name = "local"

    def run(self, items: list[WorkItem]) -> list[Sample]:
        size = self.job.wave_size or max(len(items), 1)
        records: list[Sample] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="markers") as writer:
            for offset in range(0, len(items), size):
                records += self._run_wave(items[offset : offset + size], writer)
        return records

    def _run_wave(self, items: list[WorkItem], writer: ThreadPoolExecutor) -> list[Sample]:
        """Take ``items`` through their remaining stages, one stage at a time."""
        count = len(self.job.stages)
        finished = [item.sample for item in items if item.start >= count]
        carried: list[Sample] = []
        for index in range(count):
            finished += [sample for sample in carried if not sample.ok]
            todo = [sample for sample in carried if sample.ok] + [item.sample for item in items if item.start == index]
            carried = self._run_stage(index, todo, writer) if todo else []
        return finished + carried

    def _run_stage(self, index: int, samples: list[Sample], writer: ThreadPoolExecutor) -> list[Sample]:
        spec = self.job.stages[index]
        logger.info("stage %s: %d sample(s)", spec.name, len(samples))
        worker = StageWorker(self.job, spec)
        worker.setup()
        pending: list[Future] = []
        try:
            for batch in batches(samples, spec.batch_size()):
                pending.append(writer.submit(_write_markers, worker.process(batch)))
        finally:
            worker.teardown()
            for future in pending:
                future.result()  # surface write errors before the next stage starts
        return samples


def _write_markers(records: list[tuple[Path, str]]) -> None:
    for path, text in records:
        atomic_write(path, text)
