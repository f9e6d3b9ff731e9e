"""Stage 4b: an edit instruction for each clip, from the video and its caption (Qwen2.5-VL).

The edit type is drawn from :data:`ditto_hf.schema.EDIT_TYPES` by the configured mix, with a
random generator seeded by the run seed and the sample id, so a rerun draws the same type for the
same sample. The prompt asks for that type and the schema pins ``edit_type`` to it; the answer
``{"instruction", "edit_type", "target"}`` is validated before it is stored.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.sample import EDIT_TYPES, Sample
from ditto_hf.generate.helpers.vlm import Request, VLMAnswerError, VLMConfig, VLMStage, check_text

#: What each edit type means, as the prompt explains it to the model.
EDIT_TYPE_DESCRIPTIONS = {
    "global_style": "restyle the whole video in a named visual or artistic style, keeping its content and motion",
    "global_freeform": "change the whole scene freely, e.g. season, weather, time of day, setting or material",
    "local_replace": "replace one object or subject with a different one, keeping the rest unchanged",
    "local_add": "add one new object to the scene that fits its layout and motion",
    "local_remove": "remove one visible object or subject and fill in what is behind it",
}

#: The paper's split: about 70% global edits (style, freeform) and 30% local edits.
PAPER_EDIT_MIX = {
    "global_style": 0.35,
    "global_freeform": 0.35,
    "local_replace": 0.10,
    "local_add": 0.10,
    "local_remove": 0.10,
}


def draw_edit_type(mix: dict[str, float], seed: int, sample_id: str) -> str:
    """The edit type for ``sample_id``: a weighted draw, reproducible from (seed, sample id)."""
    rng = random.Random(f"{seed}:{sample_id}")
    types = sorted(mix)
    return rng.choices(types, weights=[mix[name] for name in types], k=1)[0]


class InstructStage(VLMStage):
    """Qwen2.5-VL edit instruction from video + caption; sets ``instruction`` and ``edit_type``."""

    name = "instruct"

    @dataclass
    class Config(VLMConfig):
        """Instruction prompt and the edit-type mix (see :class:`VLMConfig` for the shared fields)."""

        prompt: str = "instruct_v1"
        """Versioned prompt; placeholders ``$caption``, ``$edit_type``, ``$edit_type_description``."""
        edit_mix: dict[str, float] = field(default_factory=lambda: dict(PAPER_EDIT_MIX))
        """Relative weight of each edit type (names from ``ditto_hf.schema.EDIT_TYPES``); 0 disables one."""

        def __post_init__(self) -> None:
            super().__post_init__()
            unknown = sorted(set(self.edit_mix) - set(EDIT_TYPES))
            if unknown:
                raise DittoError(f"instruct.edit_mix: unknown edit type(s) {unknown}; known: {list(EDIT_TYPES)}")
            if any(weight < 0 for weight in self.edit_mix.values()) or not any(self.edit_mix.values()):
                raise DittoError(f"instruct.edit_mix needs weights >= 0, at least one positive: {self.edit_mix}")

    def edit_type_for(self, sample: Sample) -> str:
        return draw_edit_type(self.config.edit_mix, self.context.seed, sample.sample_id)

    def request(self, sample: Sample) -> Request:
        if not sample.caption:
            raise DittoError(f"sample {sample.sample_id} has no caption: run the caption stage before instruct")
        edit_type = self.edit_type_for(sample)
        text = self.prompt.render(
            caption=sample.caption,
            edit_type=edit_type,
            edit_type_description=EDIT_TYPE_DESCRIPTIONS[edit_type],
        )
        schema = self.prompt.with_text_limit(self.config.max_answer_chars)
        schema["properties"]["edit_type"] = {"type": "string", "enum": [edit_type]}
        return Request([self.frames(sample.video), text], schema, self.config.sample_fps)

    def apply(self, sample: Sample, answer: dict) -> None:
        expected = self.edit_type_for(sample)
        if answer["edit_type"] != expected:
            raise VLMAnswerError(f"edit_type {answer['edit_type']!r} differs from the requested {expected!r}")
        sample.instruction = check_text(answer["instruction"], "instruction")
        sample.edit_type = expected
        sample.extra["edit_target"] = check_text(answer["target"], "target")
        sample.extra["instruct_prompt"] = self.prompt.name
