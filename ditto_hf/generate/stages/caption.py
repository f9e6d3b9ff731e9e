"""Stage 4a: a dense caption of each standardised clip, written by Qwen2.5-VL.

The model sees frames sampled from ``sample.video`` and answers ``{"caption": ...}`` under the
prompt's JSON schema (see :mod:`ditto_hf.generate.helpers.vlm`); the caption feeds the instruction step
and is published with the triplet.
"""

from __future__ import annotations

from dataclasses import dataclass

from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.helpers.vlm import Request, VLMConfig, VLMStage, check_text


class CaptionStage(VLMStage):
    """Qwen2.5-VL dense caption of the standardised video; sets ``sample.caption``."""

    name = "caption"

    @dataclass
    class Config(VLMConfig):
        """Caption prompt and decoding options (see :class:`VLMConfig` for the shared fields)."""

        prompt: str = "caption_v1"
        """Versioned prompt; its schema is ``{"caption": string}`` with a length limit."""

    def request(self, sample: Sample) -> Request:
        schema = self.prompt.with_text_limit(self.config.max_answer_chars)
        return Request([self.frames(sample.video), self.prompt.render()], schema, self.config.sample_fps)

    def apply(self, sample: Sample, answer: dict) -> None:
        sample.caption = check_text(answer["caption"], "caption")
        sample.extra["caption_prompt"] = self.prompt.name
