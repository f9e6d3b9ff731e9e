"""The triplet schema shared by the builder, the Hub mirror and generate runs."""

from __future__ import annotations

from datasets import Features, Value, Video

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

#: Extra text columns a generate run adds to each kept triplet (how it was made).
PROVENANCE_FEATURES = Features(
    {
        "sample_id": Value("string"),
        "edit_type": Value("string"),
        "input_path": Value("string"),
        "keyframe_path": Value("string"),
        "edited_keyframe_path": Value("string"),
        "depth_path": Value("string"),
        "generated_path": Value("string"),
    }
)

#: A run's per-sample records, as structs the viewer and ``datasets`` filter on without parsing:
#: column -> type of each field. Fields are the names the run recorded (score names, stage names).
RECORD_COLUMNS = {"scores": "float64", "reasons": "string", "timings": "float64"}


def record_features(names: dict[str, list[str]]) -> Features:
    """``scores`` / ``reasons`` / ``timings`` as structs with the fields in ``names`` (column -> field
    names); a column with no field at all is null (parquet cannot store a struct without fields)."""
    return Features(
        {
            column: {name: Value(kind) for name in names.get(column, [])} if names.get(column) else Value("null")
            for column, kind in RECORD_COLUMNS.items()
        }
    )


def run_features(names: dict[str, list[str]]) -> Features:
    """The schema of a run's ``manifest.parquet``: the triplet, then how it was made."""
    return Features({**TRIPLET_FEATURES, **PROVENANCE_FEATURES, **record_features(names)})
