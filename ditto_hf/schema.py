"""The triplet schema shared by the builder, the Hub mirror and generate runs."""

from __future__ import annotations

from datasets import Features, Image, Value, Video

#: One Ditto-1M triplet. ``source_path`` / ``edited_path`` are as in the release metadata
#: (relative to ``videos/``) or, for generate runs, relative to the run directory.
TRIPLET_FEATURES = Features(
    {
        "source": Video(),
        "edited": Video(),
        "instruction": Value("string"),
        "category": Value("string"),
        "source_path": Value("string"),
        "edited_path": Value("string"),
        "caption": Value("string"),
    }
)

#: Extra columns a generate run adds to each kept triplet (how it was made).
PROVENANCE_FEATURES = Features(
    {
        "sample_id": Value("string"),
        "edit_type": Value("string"),
        "input_path": Value("string"),
        "keyframe_path": Value("string"),
        "edited_keyframe_path": Value("string"),
        "depth_path": Value("string"),
        "generated_path": Value("string"),
        "scores": Value("string"),  # JSON object: score name -> float
        "reasons": Value("string"),  # JSON object: stage -> reason text
        "timings": Value("string"),  # JSON object: stage -> seconds
    }
)

RUN_FEATURES = Features({**TRIPLET_FEATURES, **PROVENANCE_FEATURES})

#: A finished run as a ``Dataset`` (``RunDir.dataset()``, what ``publish`` embeds): the manifest's
#: columns plus the edited keyframe image itself, so a published run carries it (empty when the
#: recipe has no keyframe stage).
RUN_DATASET_FEATURES = Features({**RUN_FEATURES, "edited_keyframe": Image()})
