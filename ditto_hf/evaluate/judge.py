"""The VLM score: a Qwen2.5-VL judge rates each edit 0-10, as later benchmarks do.

The judge sees the source clip, then the edited clip, then the versioned prompt
(``ditto_hf/evaluate/prompts/judge_v1``) with the instruction, and answers under the prompt's JSON
schema: integer scores for instruction fidelity, preservation of the source (``source_fidelity``),
visual quality and an overall rating, plus a one-sentence reason. It is the chain's VLM layer
(:mod:`ditto_hf.generate.helpers.vlm`, the one the curate stage uses): grammar-constrained
greedy decoding, strict parsing. The VLM score of an edit is its ``overall`` rating.

Reproducible answers: with ``batch_size=1`` (the default) every request is decoded alone. Larger
batches are faster on a GPU; they pad prompts to a common length, which changes the arithmetic and
can tip a near-tie between two tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelRegistry
from ditto_hf.generate.helpers.vlm import (
    Prompt,
    Request,
    StructuredVLM,
    VLMAnswerError,
    VLMConfig,
    edit_judgement_request,
    judgement_scores,
)
from ditto_hf.video import VideoSource

#: What the judge rates, in the order of the prompt and its schema; the VLM score is ``overall``.
CRITERIA = ("instruction_fidelity", "source_fidelity", "visual_quality", "overall")
DEFAULT_JUDGE_PROMPT = "judge_v1"


@dataclass
class JudgeConfig(VLMConfig):
    """The judge's model, prompt and frame sampling (see :class:`VLMConfig` for the shared fields)."""

    prompt: str = DEFAULT_JUDGE_PROMPT
    """Versioned prompt in ``ditto_hf/evaluate/prompts`` (or a path to a ``.txt`` beside its ``.json``);
    placeholder ``$instruction``; schema: the integer scores of :data:`CRITERIA` and ``reason``."""


@dataclass(frozen=True)
class Judgement:
    """The judge's scores (0-10) for one edit and its reason, or the error of an unusable answer."""

    scores: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    error: str = ""


class Judge:
    """Rates (source, edited, instruction) triples with a Qwen2.5-VL model."""

    def __init__(self, vlm: StructuredVLM, config: JudgeConfig):
        self.vlm, self.config = vlm, config
        self.prompt = Prompt.load(config.prompt, package="ditto_hf.evaluate")
        missing = [name for name in (*CRITERIA, "reason") if name not in self.prompt.schema.get("required", [])]
        if missing:
            raise DittoError(f"judge prompt {config.prompt!r}: its schema must require {missing}")

    @classmethod
    def load(cls, config: JudgeConfig, registry: ModelRegistry | None = None) -> Judge:
        """Load the model and processor (safetensors only) named by ``config.model``."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        registry = registry or ModelRegistry()
        model = registry.load(AutoModelForImageTextToText, config.model)
        processor = registry.load(AutoProcessor, config.model)
        return cls(StructuredVLM(model, processor, config.max_new_tokens), config)

    def settings(self) -> dict:
        """The model, prompt and frame sampling, as stated in the output."""
        config = self.config
        return {
            "model": config.model.id,
            "prompt": self.prompt.name,
            "frames": f"{config.sample_fps:g} fps, at most {config.max_frames} per video",
            "max_new_tokens": config.max_new_tokens,
            "batch_size": config.batch_size,
            "criteria": list(CRITERIA),
            "score": "overall",
        }

    def request(self, source: VideoSource, edited: VideoSource, instruction: str) -> Request:
        """The judge's request for one edit (decodes the sampled frames of both videos)."""
        return edit_judgement_request(self.prompt, self.config, source, edited, instruction)

    def rate(self, requests: list[Request]) -> list[Judgement]:
        """Judge the edits of ``requests``, ``batch_size`` per generate call."""
        size = self.config.batch_size
        answers = [answer for start in range(0, len(requests), size) for answer in self.vlm.ask(requests[start : start + size])]
        return [self._judgement(answer) for answer in answers]

    @staticmethod
    def _judgement(answer: dict | VLMAnswerError) -> Judgement:
        try:
            if isinstance(answer, VLMAnswerError):
                raise answer
            scores, reason = judgement_scores(answer, CRITERIA)
        except VLMAnswerError as exc:
            return Judgement(error=str(exc))
        return Judgement(scores, reason)
