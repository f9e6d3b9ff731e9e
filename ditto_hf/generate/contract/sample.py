"""The record that flows through the generation stages."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

Status = Literal["ok", "rejected", "failed"]

#: Edit types of the generation taxonomy (the paper's global / local split), as ``Sample.edit_type``.
EDIT_TYPES = ("global_style", "global_freeform", "local_replace", "local_add", "local_remove")


@dataclass
class Sample:
    """One candidate triplet on its way through the chain.

    Paths are relative to the run's work directory (``StageContext.work_dir``) once a stage has
    written them, so a run directory can be moved. ``status`` is ``ok`` until a filter rejects the
    sample (``rejected``, with ``rejected_by`` and a reason) or a stage fails on it (``failed``, with
    ``error``); stages pass non-``ok`` samples through untouched.
    """

    sample_id: str
    input_path: str
    video: str = ""  # standardised source clip
    keyframe: str = ""  # frame chosen for the image edit (png)
    edited_keyframe: str = ""
    depth: str = ""  # depth video (control for VACE)
    generated: str = ""  # VACE output
    refined: str = ""  # refiner output (the final edited video)
    caption: str = ""
    instruction: str = ""
    edit_type: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    status: Status = "ok"
    rejected_by: str = ""
    error: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def edited(self) -> str:
        """The final edited video: the refined one if the refiner ran, else the generated one."""
        return self.refined or self.generated

    def reject(self, stage: str, reason: str, **scores: float) -> Sample:
        """Mark the sample as filtered out by ``stage``, keeping the reason and the scores."""
        self.status, self.rejected_by = "rejected", stage
        self.reasons[stage] = reason
        self.scores.update(scores)
        return self

    def fail(self, stage: str, error: BaseException | str) -> Sample:
        """Record that ``stage`` could not process the sample."""
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.status, self.rejected_by, self.error = "failed", stage, message
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> Sample:
        known = _field_names(cls)
        if known.issuperset(data):
            return cls(**data)
        return cls(**{key: value for key, value in data.items() if key in known})

    @classmethod
    def from_json(cls, text: str | bytes) -> Sample:
        return cls.from_dict(json.loads(text))


@functools.cache
def _field_names(cls) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))
