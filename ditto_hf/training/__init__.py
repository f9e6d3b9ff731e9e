"""Training on Ditto triplets: DiffSynth's frame convention, the modality curriculum, the VACE transform.

- :func:`triplet_frames` / :func:`frames_transform`: the first N frames of a triplet's videos,
  resized and centre-cropped exactly as DiffSynth-Studio's loader does (``ImageCropAndResize``).
- :class:`ModalityCurriculum`: the paper's modality curriculum learning (MCL) schedule: the edited
  keyframe is given to VACE beside the instruction during warm-up, then less and less often.
- :class:`VaceTrainingTransform`: a triplet row and the step → the tensors VACE training takes,
  with the keyframe present or absent as the curriculum decides.
"""

from ditto_hf.training.curriculum import ModalityCurriculum
from ditto_hf.training.frames import DEFAULT_NUM_FRAMES, DEFAULT_SIZE, diffsynth_crop_resize, frames_transform, triplet_frames
from ditto_hf.training.transform import VaceTrainingTransform, sample_key

__all__ = [
    "DEFAULT_NUM_FRAMES",
    "DEFAULT_SIZE",
    "ModalityCurriculum",
    "VaceTrainingTransform",
    "diffsynth_crop_resize",
    "frames_transform",
    "sample_key",
    "triplet_frames",
]
