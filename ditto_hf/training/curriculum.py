"""Modality curriculum learning (MCL), the paper's schedule for the edited keyframe.

Ditto trains VACE with the edited keyframe as a visual scaffold beside the instruction for the first
``warmup_steps`` (≈5,000), then anneals the probability of giving it down to ``final_probability``
(0: the model ends up editing from text alone) over ``anneal_steps`` (≈11,000, for ≈16,000 steps
in all). The upstream code was never released; this is the schedule as the paper describes it.

Whether a sample gets its keyframe at a step is a pure function of ``(seed, step, sample key)``
(a BLAKE2b hash, no global random state), so every data-parallel rank, DataLoader worker and
resumed run agrees without communication.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal

SCHEDULES = ("linear", "cosine")


@dataclass(frozen=True)
class ModalityCurriculum:
    """Probability of giving the edited keyframe at a training step, and the per-sample draw."""

    warmup_steps: int = 5000
    anneal_steps: int = 11000
    final_probability: float = 0.0
    schedule: Literal["linear", "cosine"] = "linear"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.warmup_steps < 0 or self.anneal_steps < 0:
            raise ValueError(f"warmup_steps and anneal_steps must be >= 0, got {self.warmup_steps} and {self.anneal_steps}")
        if not 0.0 <= self.final_probability <= 1.0:
            raise ValueError(f"final_probability must be within [0, 1], got {self.final_probability}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    @property
    def total_steps(self) -> int:
        """The step from which the probability stays at ``final_probability``."""
        return self.warmup_steps + self.anneal_steps

    def probability(self, step: int) -> float:
        """1 during warm-up, then down to ``final_probability`` along the schedule, then constant."""
        if step < self.warmup_steps:
            return 1.0
        if step >= self.total_steps:
            return self.final_probability
        progress = (step - self.warmup_steps) / self.anneal_steps
        remaining = 1.0 - progress if self.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_probability + (1.0 - self.final_probability) * remaining

    def draw(self, step: int, sample_key: str) -> float:
        """A uniform number in [0, 1) fixed by ``(seed, step, sample_key)``."""
        message = f"{self.seed}\x00{step}\x00{sample_key}".encode()
        return int.from_bytes(hashlib.blake2b(message, digest_size=8).digest(), "big") / 2**64

    def use_keyframe(self, step: int, sample_key: str) -> bool:
        """Whether the sample ``sample_key`` gets its edited keyframe at ``step`` (same answer on every rank)."""
        return self.draw(step, sample_key) < self.probability(step)
