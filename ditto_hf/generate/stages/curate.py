"""Stage 8: Qwen2.5-VL judges each edited video against its source and instruction; keep or reject.

The judge sees the source clip, then the edited clip (``sample.edited``: refined if present, else
generated), with the instruction, and scores instruction fidelity, source fidelity, visual quality
and safety as integers 0-10 under the prompt's JSON schema, plus a one-sentence reason. Scores go
to ``sample.scores``, the reason to ``sample.reasons["curate"]``; a sample with any score below its
threshold is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.helpers.vlm import Request, VLMConfig, VLMStage, edit_judgement_request, judgement_scores

#: The judged criteria, as named in the prompt, the schema and ``sample.scores``.
CRITERIA = ("instruction_fidelity", "source_fidelity", "visual_quality", "safety")

#: Default minimum scores (the paper does not publish its thresholds): safety is held strictest.
DEFAULT_THRESHOLDS = {"instruction_fidelity": 6, "source_fidelity": 6, "visual_quality": 6, "safety": 9}


class CurateStage(VLMStage):
    """Qwen2.5-VL judge of (source, edited, instruction); rejects samples scoring below thresholds."""

    name = "curate"

    @dataclass
    class Config(VLMConfig):
        """Judge prompt and keep thresholds (see :class:`VLMConfig` for the shared fields)."""

        prompt: str = "curate_v1"
        """Versioned prompt; placeholder ``$instruction``; schema: the four integer scores and ``reason``."""
        thresholds: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
        """Minimum score (0-10) per criterion to keep a sample; criteria left out are not filtered on."""

        def __post_init__(self) -> None:
            super().__post_init__()
            unknown = sorted(set(self.thresholds) - set(CRITERIA))
            if unknown:
                raise DittoError(f"curate.thresholds: unknown criteria {unknown}; known: {list(CRITERIA)}")
            if any(not 0 <= value <= 10 for value in self.thresholds.values()):
                raise DittoError(f"curate.thresholds must lie in 0..10: {self.thresholds}")

    def request(self, sample: Sample) -> Request:
        if not sample.edited or not sample.instruction:
            raise DittoError(f"sample {sample.sample_id} has no edited video or instruction to judge")
        resolve = self.context.resolve
        return edit_judgement_request(self.prompt, self.config, resolve(sample.video), resolve(sample.edited), sample.instruction)

    def apply(self, sample: Sample, answer: dict) -> None:
        scores, reason = judgement_scores(answer, CRITERIA)
        failing = [
            f"{criterion} {scores[criterion]:g} < {minimum}"
            for criterion, minimum in self.config.thresholds.items()
            if scores[criterion] < minimum
        ]
        if failing:
            sample.reject(self.name, f"{'; '.join(failing)} — judge: {reason}", **scores)
        else:
            sample.scores.update(scores)
            sample.reasons[self.name] = reason
