"""The local engine: every stage in this process, one stage (one set of models) at a time.

Stages run in recipe order over all pending samples, in batches of the stage's ``batch_size``, so
only one stage's models occupy the accelerator at any moment (the paper's models do not fit
together on one GPU). Resume markers are written by a background thread, so file I/O overlaps
the next batch's model work.
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
        count = len(self.job.stages)
        finished = [item.sample for item in items if item.start >= count]
        carried: list[Sample] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="markers") as writer:
            for index, spec in enumerate(self.job.stages):
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
