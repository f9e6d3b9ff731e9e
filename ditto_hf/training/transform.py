"""A triplet row and the training step → the inputs of a VACE training step, keyframe per the curriculum.

Ditto trains VACE to make the edited video (``video``) from the source video (``vace_video``, its
context) and the instruction (``prompt``); during the modality curriculum the edited keyframe rides
along as ``vace_reference_image``. The names are DiffSynth-Studio's metadata columns, so the same
dict feeds its ``WanTrainingModule`` (after conversion to PIL) or a plain diffusers loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ditto_hf.training.curriculum import ModalityCurriculum
from ditto_hf.training.frames import DEFAULT_NUM_FRAMES, DEFAULT_SIZE, diffsynth_crop_resize, image_pixels, triplet_frames

#: Row columns that can hold the edited keyframe image (a ``datasets.Image``, a path or bytes).
KEYFRAME_COLUMNS = ("edited_keyframe", "vace_reference_image")


def sample_key(row: dict) -> str:
    """The identity of a triplet for the curriculum's draw: its sample id, else its edited video's path."""
    for column in ("sample_id", "edited_path"):
        if row.get(column):
            return str(row[column])
    edited = row.get("edited")
    path = edited.get("path") if isinstance(edited, dict) else None
    if path:
        return str(path)
    raise ValueError("the row has no sample_id or edited_path to key the curriculum's draw; pass key=...")


class VaceTrainingTransform:
    """``transform(row, step)`` → ``{"prompt", "video", "vace_video", "use_keyframe", "keyframe_from",
    "sample_key"}`` plus ``"vace_reference_image"`` when the curriculum gives the keyframe.

    ``video`` / ``vace_video`` are uint8 ``(T, C, H, W)`` (``T = 4k+1``, DiffSynth's crop);
    ``vace_reference_image`` is uint8 ``(C, H, W)``: the row's edited keyframe when it has one
    (``keyframe_from == "row"``), else the first frame of the edited video (``"first_frame"``).
    With ``pad_absent=True`` an absent keyframe is an all-zero image instead of a missing key, so
    torch's default collate can batch rows (``use_keyframe`` then says which ones are real).
    """

    def __init__(
        self,
        curriculum: ModalityCurriculum,
        *,
        num_frames: int = DEFAULT_NUM_FRAMES,
        size: tuple[int, int] = DEFAULT_SIZE,
        key: Callable[[dict], str] = sample_key,
        pad_absent: bool = False,
    ):
        self.curriculum = curriculum
        self.num_frames = num_frames
        self.size = size
        self.key = key
        self.pad_absent = pad_absent

    def __call__(self, row: dict, step: int) -> dict:
        source, edited, instruction = triplet_frames(row, num_frames=self.num_frames, size=self.size, four_k_plus_one=True)
        key = self.key(row)
        use = self.curriculum.use_keyframe(step, key)
        keyframe, keyframe_from = self.keyframe(row, edited)
        out = {
            "prompt": instruction,
            "video": edited,
            "vace_video": source,
            "use_keyframe": use,
            "keyframe_from": keyframe_from,
            "sample_key": key,
        }
        if use:
            out["vace_reference_image"] = keyframe
        elif self.pad_absent:
            out["vace_reference_image"] = torch.zeros_like(keyframe)
        return out

    def keyframe(self, row: dict, edited: torch.Tensor) -> tuple[torch.Tensor, str]:
        """The edited keyframe at the training size, and where it came from."""
        for column in KEYFRAME_COLUMNS:
            if row.get(column) is not None:
                pixels = image_pixels(row[column], f"row {self.key(row)}: {column}")
                return diffsynth_crop_resize(pixels[None], self.size)[0], "row"
        return edited[0], "first_frame"

    def map_function(self, rows_per_step: int) -> Callable[[dict, int], dict]:
        """A ``dataset.map(..., with_indices=True)`` function for a stream read in order, where row
        ``i`` is trained at step ``i // rows_per_step`` (per-rank batch size x accumulation steps)."""

        def transform(row: dict, index: int) -> dict:
            return self(row, index // rows_per_step)

        return transform
