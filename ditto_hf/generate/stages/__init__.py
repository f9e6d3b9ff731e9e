"""The stages of the Ditto generation chain, in the paper's order.

``STAGES`` maps a stage name (as recipes use it) to ``module:Class``; classes are imported on use
so that a worker only imports the libraries its own stage needs.
"""

from __future__ import annotations

import importlib

STAGES: dict[str, str] = {
    "standardise": "ditto_hf.generate.stages.standardise:StandardiseStage",
    "dedup": "ditto_hf.generate.stages.dedup:DedupStage",
    "motion": "ditto_hf.generate.stages.motion:MotionStage",
    "caption": "ditto_hf.generate.stages.caption:CaptionStage",
    "instruct": "ditto_hf.generate.stages.instruct:InstructStage",
    "keyframe": "ditto_hf.generate.stages.keyframe:KeyframeStage",
    "depth": "ditto_hf.generate.stages.depth:DepthStage",
    "vace": "ditto_hf.generate.stages.vace:VaceStage",
    "curate": "ditto_hf.generate.stages.curate:CurateStage",
    "refine": "ditto_hf.generate.stages.refine:RefineStage",
}

#: The paper's order.
DEFAULT_CHAIN: tuple[str, ...] = tuple(STAGES)


def stage_class(name: str):
    """Import and return the stage class registered as ``name``."""
    if name not in STAGES:
        from ditto_hf.errors import DittoError

        raise DittoError(f"unknown stage {name!r}; known stages: {', '.join(STAGES)}")
    module_name, class_name = STAGES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)
