"""Qwen2.5-VL chat with JSON-schema-constrained decoding, shared by the caption, instruct and curate
stages and by ``ditto-hf eval``'s judge.

Every answer is generated under a grammar compiled from the prompt's JSON schema (xgrammar,
plugged into transformers' ``generate`` as a logits processor), so even a weak or random model
produces parseable JSON that ends within the schema's length limits. Answers are still validated
strictly (JSON Schema, then each stage's own checks): a bad answer raises :class:`VLMAnswerError`
and the sample is recorded as failed, never written to the dataset.

Prompts are versioned files in a package's ``prompts/`` folder (``ditto_hf/generate/prompts/`` for
the chain): ``<name>.txt`` (a :class:`string.Template`, ``$field`` placeholders) and ``<name>.json``
(the answer schema). Judging an edit (source clip, edited clip, instruction -> integer scores and a
reason) is one request shape, :func:`edit_judgement_request` / :func:`judgement_scores`, used by
the curate stage and by the evaluation judge alike.
"""

from __future__ import annotations

import json
import logging
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import Resources, Stage, StageConfig
from ditto_hf.video import VideoSource, read_frames

logger = logging.getLogger(__name__)

DEFAULT_VLM = "Qwen/Qwen2.5-VL-7B-Instruct"


class VLMAnswerError(ValueError):
    """The model's answer is not valid for its schema or fails a semantic check."""


@dataclass(frozen=True)
class Prompt:
    """A versioned prompt: the instruction template and the JSON schema of the answer."""

    name: str
    template: string.Template
    schema: dict

    @classmethod
    def load(cls, name: str, package: str = "ditto_hf.generate") -> Prompt:
        """Load ``<name>.txt`` + ``<name>.json`` from ``package``'s prompts, or from a path to a ``.txt``."""
        path = Path(name)
        if path.suffix == ".txt":
            text_file, schema_file = path, path.with_suffix(".json")
        else:
            folder = resources.files(package) / "prompts"
            text_file, schema_file = folder / f"{name}.txt", folder / f"{name}.json"
        if not text_file.is_file() or not schema_file.is_file():
            raise DittoError(f"prompt {name!r}: need both {text_file} and {schema_file}")
        return cls(name, string.Template(text_file.read_text()), json.loads(schema_file.read_text()))

    def render(self, **fields: str) -> str:
        """The prompt text with its ``$placeholders`` filled (a missing field raises ``KeyError``)."""
        return self.template.substitute(**fields).strip()

    def with_text_limit(self, max_chars: int | None) -> dict:
        """The answer schema with every string's ``maxLength`` capped at ``max_chars`` (if given)."""
        schema = json.loads(json.dumps(self.schema))
        if max_chars:
            for spec in schema.get("properties", {}).values():
                if spec.get("type") == "string" and "enum" not in spec:
                    spec["maxLength"] = min(spec.get("maxLength", max_chars), max_chars)
        return schema


@dataclass
class Request:
    """One chat turn for the VLM: interleaved text and videos (``TCHW`` uint8 frames), one answer schema."""

    content: list[str | torch.Tensor]
    schema: dict
    fps: float


class StructuredVLM:
    """A Qwen2.5-VL model + processor that answers :class:`Request` s with schema-valid JSON text."""

    def __init__(self, model, processor, max_new_tokens: int = 512):
        import xgrammar

        self.model, self.processor, self.max_new_tokens = model, processor, max_new_tokens
        vocab_size = model.config.get_text_config().vocab_size
        self._compiler = xgrammar.GrammarCompiler(xgrammar.TokenizerInfo.from_huggingface(processor.tokenizer, vocab_size=vocab_size))
        self._grammars: dict[str, Any] = {}

    def grammar(self, schema: dict):
        """The compiled grammar of ``schema`` (cached); fields in schema order, no free whitespace."""
        key = json.dumps(schema)
        if key not in self._grammars:
            self._grammars[key] = self._compiler.compile_json_schema(key, any_whitespace=False)
        return self._grammars[key]

    def chat_text(self, request: Request) -> str:
        """The request as chat-template text, with a video placeholder per video."""
        parts = [{"type": "text", "text": part} if isinstance(part, str) else {"type": "video"} for part in request.content]
        return self.processor.apply_chat_template([{"role": "user", "content": parts}], add_generation_prompt=True, tokenize=False)

    def encode(self, requests: list[Request]):
        """Processor inputs for a batch of requests (left-padded; videos in request order)."""
        videos = [(part, request.fps) for request in requests for part in request.content if isinstance(part, torch.Tensor)]
        metadata = [{"fps": fps, "total_num_frames": len(frames)} for frames, fps in videos]
        return self.processor(
            text=[self.chat_text(request) for request in requests],
            videos=[frames for frames, _ in videos] or None,
            video_metadata=metadata or None,
            cap_pixels_per_frame=True,
            padding=True,
            padding_side="left",
            return_tensors="pt",
        ).to(self.model.device)

    @torch.inference_mode()
    def answer(self, requests: list[Request]) -> list[str]:
        """Generate one constrained answer per request (greedy, batched)."""
        from xgrammar.contrib.hf import LogitsProcessor

        inputs = self.encode(requests)
        constraint = LogitsProcessor([self.grammar(request.schema) for request in requests])
        output = self.model.generate(
            **inputs,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            logits_processor=[constraint],
        )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)

    def ask(self, requests: list[Request]) -> list[dict | VLMAnswerError]:
        """Answer ``requests`` in one batch and parse each answer against its schema; an answer
        that fails to parse comes back as its :class:`VLMAnswerError`, so it spoils only itself."""
        results: list[dict | VLMAnswerError] = []
        for request, text in zip(requests, self.answer(requests), strict=True):
            try:
                results.append(parse_answer(text, request.schema))
            except VLMAnswerError as exc:
                results.append(exc)
        return results


def parse_answer(text: str, schema: dict) -> dict:
    """Parse and validate one answer; raise :class:`VLMAnswerError` naming what is wrong."""
    import jsonschema

    try:
        answer = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VLMAnswerError(f"answer is not JSON ({exc.msg}; probably cut at max_new_tokens): {text[:200]!r}") from exc
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(answer), key=lambda error: error.path)
    if errors:
        raise VLMAnswerError(f"answer violates its schema ({errors[0].message}): {text[:200]!r}")
    return answer


def check_text(value: str, what: str) -> str:
    """A free-text answer field, stripped; raise if it is blank or holds control characters."""
    value = value.strip()
    if not value:
        raise VLMAnswerError(f"{what} is blank")
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise VLMAnswerError(f"{what} contains control characters: {value[:80]!r}")
    return value


def judgement_scores(answer: dict, criteria: Sequence[str]) -> tuple[dict[str, float], str]:
    """The scores of ``criteria`` (as floats) and the checked ``reason`` of a schema-valid judgement."""
    return {criterion: float(answer[criterion]) for criterion in criteria}, check_text(answer["reason"], "reason")


@dataclass
class VLMConfig(StageConfig):
    """Options shared by the Qwen2.5-VL stages (caption, instruct, curate) and the evaluation judge."""

    model: ModelSpec = field(default_factory=lambda: ModelSpec(DEFAULT_VLM))
    """Qwen2.5-VL checkpoint (Hub id or local folder) loaded with ``AutoModelForImageTextToText``."""
    prompt: str = ""
    """Versioned prompt name in ``ditto_hf/generate/prompts`` (or a path to a ``.txt`` with its ``.json``)."""
    sample_fps: float = 2.0
    """Frames per second sampled from each video for the model (Qwen2.5-VL's usual video rate)."""
    max_frames: int = 16
    """At most this many sampled frames per video (from the start of the clip)."""
    max_new_tokens: int = 512
    """Hard cap on generated tokens; an answer cut by it fails to parse and the sample fails."""
    max_answer_chars: int | None = None
    """Optional tighter cap on every free-text field's ``maxLength`` in the prompt's schema."""

    def __post_init__(self) -> None:
        if self.sample_fps <= 0 or self.max_frames < 1 or self.max_new_tokens < 1:
            raise DittoError("sample_fps, max_frames and max_new_tokens must be positive")

    def frames(self, video: VideoSource) -> torch.Tensor:
        """Frames of ``video`` sampled at ``sample_fps`` (``TCHW`` uint8), at most ``max_frames``."""
        return read_frames(video, fps=self.sample_fps, num_frames=self.max_frames, layout="TCHW")


def edit_judgement_request(prompt: Prompt, config: VLMConfig, source: VideoSource, edited: VideoSource, instruction: str) -> Request:
    """Ask to judge an edit: the source clip, then the edited clip, then ``prompt`` with ``$instruction`` filled."""
    content = ["Source video:", config.frames(source), "Edited video:", config.frames(edited), prompt.render(instruction=instruction)]
    return Request(content, prompt.with_text_limit(config.max_answer_chars), config.sample_fps)


class VLMStage(Stage):
    """Base of the Qwen2.5-VL stages: loads the model once, samples videos, asks in batches."""

    resources = Resources(gpus=1, memory_gb=24)
    config: VLMConfig

    def setup(self) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        model = self.context.registry.load(AutoModelForImageTextToText, self.config.model)
        processor = self.context.registry.load(AutoProcessor, self.config.model)
        self.vlm = StructuredVLM(model, processor, self.config.max_new_tokens)
        self.prompt = Prompt.load(self.config.prompt)

    def teardown(self) -> None:
        self.vlm = None

    def frames(self, relative: str) -> torch.Tensor:
        """Frames of a run video sampled at ``sample_fps`` (``TCHW`` uint8), at most ``max_frames``."""
        return self.config.frames(self.context.resolve(relative))

    def process_batch(self, samples: list[Sample]) -> None:
        """Ask the VLM once for the whole batch, then apply each answer; a bad answer fails its sample only."""
        answers = self.vlm.ask([self.request(sample) for sample in samples])
        for sample, answer in zip(samples, answers, strict=True):
            try:
                if isinstance(answer, VLMAnswerError):
                    raise answer
                self.apply(sample, answer)
            except VLMAnswerError as exc:
                sample.fail(self.name, exc)
                logger.warning("%s failed on %s: %s", self.name, sample.sample_id, exc)

    def request(self, sample: Sample) -> Request:
        """The chat request for ``sample``."""
        raise NotImplementedError

    def apply(self, sample: Sample, answer: dict) -> None:
        """Check a schema-valid answer and store it on ``sample`` (raise :class:`VLMAnswerError` if unusable)."""
        raise NotImplementedError
