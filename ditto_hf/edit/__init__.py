"""Editto: edit videos from text instructions with Wan2.1-VACE and the Ditto LoRAs, on diffusers.

``EdittoPipeline.from_pretrained(model=..., lora=..., preset=...)`` loads the model and its LoRAs;
calling it on a video and an instruction returns the edited frames (``.save(path)`` writes mp4).
Presets (``PRESETS``): ``quality`` (the official inference) and ``fast`` (the ComfyUI recipe).
"""

from ditto_hf.edit.inputs import PreparedVideo, prepare_video
from ditto_hf.edit.pipeline import EdittoOutput, EdittoPipeline
from ditto_hf.edit.presets import DEFAULT_MODEL, DITTO_LORAS, DITTO_REPO, OUTPUT_FPS, PRESETS, EditPreset

__all__ = [
    "DEFAULT_MODEL",
    "DITTO_LORAS",
    "DITTO_REPO",
    "OUTPUT_FPS",
    "PRESETS",
    "EditPreset",
    "EdittoOutput",
    "EdittoPipeline",
    "PreparedVideo",
    "prepare_video",
]
