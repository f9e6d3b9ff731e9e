"""The stage contract: every generation step is a :class:`Stage` with the same small shape.

A stage declares its :class:`Resources`, takes a typed config (a dataclass nested in the stage as
``Config``), loads its models once in :meth:`Stage.setup`, and maps a batch of samples to a batch
of samples in :meth:`Stage.process`. Engines call only ``setup``, ``process`` and ``teardown``;
stages know nothing about engines.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import typing
from abc import ABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ditto_hf.generate.contract.models import ModelRegistry, ModelSpec
from ditto_hf.generate.contract.sample import Sample

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs. ``max_workers=1`` for stages that keep global state."""

    gpus: float = 0.0
    cpus: float = 1.0
    memory_gb: float = 1.0
    max_workers: int | None = None


@dataclass
class StageConfig:
    """Base for stage configs. Subclasses add fields with documented defaults."""

    batch_size: int = 1

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> StageConfig:
        """Build from a recipe mapping; nested ``ModelSpec`` fields accept mappings or plain ids."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            from ditto_hf.errors import DittoError

            raise DittoError(f"{cls.__qualname__}: unknown option(s) {unknown}; known: {sorted(known)}")
        hints = typing.get_type_hints(cls)
        for name, value in data.items():
            if hints.get(name) is ModelSpec:
                data[name] = ModelSpec.coerce(value)
        return cls(**data)


@dataclass
class StageContext:
    """What a stage may use from the run: where to write, how to load models, the run seed."""

    work_dir: Path
    registry: ModelRegistry = field(default_factory=ModelRegistry)
    seed: int = 0

    def path_for(self, kind: str, sample: Sample, suffix: str) -> tuple[Path, str]:
        """Absolute output path for an artifact of ``sample`` and its run-relative form."""
        relative = f"{kind}/{sample.sample_id}{suffix}"
        absolute = self.work_dir / relative
        absolute.parent.mkdir(parents=True, exist_ok=True)
        return absolute, relative

    def resolve(self, relative: str) -> Path:
        """Absolute path of a run-relative artifact path (absolute paths pass through)."""
        path = Path(relative)
        return path if path.is_absolute() else self.work_dir / path


class Stage(ABC):
    """One step of the generation chain.

    Subclasses set ``name``, ``resources`` and ``Config``, and implement :meth:`process_sample`
    (or :meth:`process_batch` when the model works on batches or the stage needs the whole batch,
    e.g. deduplication). Failures are recorded on the sample, never raised for the whole batch.
    """

    name: ClassVar[str]
    resources: ClassVar[Resources] = Resources()
    Config: ClassVar[type[StageConfig]] = StageConfig

    def __init__(self, config: StageConfig | dict | None, context: StageContext):
        self.config = config if isinstance(config, StageConfig) else self.Config.from_dict(config)
        self.context = context

    # -- lifecycle ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Load models once per worker. Default: nothing to load."""

    def teardown(self) -> None:
        """Release models. Default: nothing to release."""

    # -- work --------------------------------------------------------------------------------
    def process(self, batch: list[Sample]) -> list[Sample]:
        """Run the stage on the ``ok`` samples of ``batch``; others pass through untouched.

        If the batch call raises, each sample is retried alone so that one bad sample is recorded
        as failed without sinking the others. Seconds spent are added to ``sample.timings``.
        """
        live = [sample for sample in batch if sample.ok]
        if not live:
            return batch
        start = time.perf_counter()
        try:
            self.process_batch(live)
        except Exception as exc:  # noqa: BLE001 - isolate the failing sample(s)
            if len(live) == 1:
                live[0].fail(self.name, exc)
                logger.warning("%s failed on %s: %s", self.name, live[0].sample_id, exc)
            else:
                logger.info("%s: batch of %d failed (%s); retrying one by one", self.name, len(live), exc)
                for sample in live:
                    self.process([sample])
                return batch
        per_sample = (time.perf_counter() - start) / len(live)
        for sample in live:
            sample.timings[self.name] = sample.timings.get(self.name, 0.0) + per_sample
        return batch

    def process_batch(self, samples: list[Sample]) -> None:
        """Process ``ok`` samples in place. Default: :meth:`process_sample` on each."""
        for sample in samples:
            self.process_sample(sample)

    def process_sample(self, sample: Sample) -> None:
        """Process one sample in place (set paths, captions, scores; or ``sample.reject``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement process_sample or process_batch")
