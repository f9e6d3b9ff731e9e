"""The Ray engine: one Ray Data actor pool per stage, streaming samples from stage to stage.

Each stage becomes a ``map_batches`` over an ``ActorPoolStrategy`` pool whose actors ask for the
stage's declared GPUs and load the stage's models once, in the actor's constructor. Samples travel
as rows ``{sample_id, record (JSON), start}``; an actor runs its stage only on rows that still
need it and writes the same resume markers as the local engine, so ``RUN_DIR`` must be on a file
system every node sees.
"""

from __future__ import annotations

import logging
import math

from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.engines.base import Engine, EngineJob, StageWorker
from ditto_hf.generate.run.recipe import StageSpec
from ditto_hf.generate.run.rundir import WorkItem, atomic_write

logger = logging.getLogger(__name__)


class StageActor:
    """A Ray Data callable class: one loaded stage; processes the rows that need it."""

    def __init__(self, job: EngineJob, index: int):
        self.index = index
        self.worker = StageWorker(job, job.stages[index])
        self.worker.setup()

    def __call__(self, batch: dict) -> dict:
        records = [Sample.from_json(text) for text in batch["record"]]
        live = [sample for sample, start in zip(records, batch["start"], strict=True) if WorkItem(sample, int(start)).runs(self.index)]
        if live:
            for path, text in self.worker.process(live):
                atomic_write(path, text)
        return {
            "sample_id": [sample.sample_id for sample in records],
            "record": [sample.to_json() for sample in records],
            "start": [int(start) for start in batch["start"]],
        }


class RayEngine(Engine):
    """Runs the stages as a streaming Ray Data pipeline.

    ``address`` is passed to ``ray.init`` (``"auto"`` joins a running cluster); when Ray is already
    initialised in this process the existing session is used.
    """

    name = "ray"

    def __init__(self, job: EngineJob, address: str | None = None):
        super().__init__(job)
        self.address = address

    def run(self, items: list[WorkItem]) -> list[Sample]:
        import ray

        count = len(self.job.stages)
        finished = [item.sample for item in items if item.start >= count]
        pending = [item for item in items if item.start < count]
        if not pending:
            return finished
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, log_to_driver=False)
        try:
            return finished + self._stream(pending)
        finally:
            if started_here:
                ray.shutdown()

    def _stream(self, pending: list[WorkItem]) -> list[Sample]:
        import ray

        ray.data.DataContext.get_current().enable_progress_bars = False  # progress comes from the markers
        dataset = ray.data.from_items(
            [{"sample_id": item.sample.sample_id, "record": item.sample.to_json(), "start": item.start} for item in pending]
        )
        count, first = len(self.job.stages), min(item.start for item in pending)
        cluster = ray.cluster_resources()
        for index in range(first, count):
            dataset = self._add_stage(dataset, index, cluster, stages_in_flight=count - first)
        return [Sample.from_json(row["record"]) for row in dataset.take_all()]

    def _add_stage(self, dataset, index: int, cluster: dict, stages_in_flight: int):
        import ray

        spec = self.job.stages[index]
        gpus, cpus, workers = actor_shape(spec, cluster, stages_in_flight)
        logger.info("stage %s: up to %d actor(s), %.2f GPU / %.2f CPU each", spec.name, workers, gpus, cpus)
        return dataset.map_batches(
            StageActor,
            fn_constructor_kwargs={"job": self.job, "index": index},
            batch_size=spec.batch_size,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
            num_gpus=gpus,
            num_cpus=cpus,
            batch_format="default",
        )


def actor_shape(spec: StageSpec, cluster: dict, stages_in_flight: int) -> tuple[float, float, int]:
    """(GPUs, CPUs, most actors) for one stage's pool on ``cluster`` (``ray.cluster_resources()``).

    Actors ask for the stage's declared GPUs; on a cluster without GPUs they run on CPU. CPU
    shares are sized so every stage of the pipeline holds one actor and half the CPUs stay free
    for Ray Data to scale up the pools that fall behind (to at most one actor per CPU). The pool
    size is capped by the stage's ``max_workers`` and the recipe's ``workers``.
    """
    resources = spec.resources
    total_gpus, total_cpus = float(cluster.get("GPU", 0)), float(cluster.get("CPU", 1))
    gpus = resources.gpus if total_gpus > 0 else 0.0
    if gpus and resources.gpus > total_gpus:
        from ditto_hf.errors import DittoError

        raise DittoError(f"stage {spec.name!r} needs {resources.gpus} GPU(s) per worker; the Ray cluster has {total_gpus:g}")
    cpus = min(resources.cpus, total_cpus / (2 * stages_in_flight))
    spare = total_cpus - (stages_in_flight - 1) * cpus  # what is left once the other stages hold one actor
    workers = math.floor(total_gpus / gpus) if gpus else min(math.floor(spare / cpus + 1e-9), math.floor(total_cpus))
    for cap in (resources.max_workers, spec.workers):
        if cap:
            workers = min(workers, cap)
    if not gpus and resources.gpus:
        logger.warning("stage %s declares %g GPU(s) but the Ray cluster has none: running on CPU", spec.name, resources.gpus)
    return gpus, cpus, max(1, workers)
