"""Where the source clips of a run come from: folder, list file, datasets source."""

from __future__ import annotations

import datasets
import pytest

from ditto_hf.errors import DittoError
from ditto_hf.generate.run.inputs import discover_samples
from ditto_hf.generate.run.rundir import RunDir


def test_folder_and_list_file_give_the_same_stable_ids(tmp_path, sample_clips):
    run = RunDir(tmp_path / "run")
    from_folder = discover_samples(sample_clips[0].parent, run)
    listing = tmp_path / "clips.txt"
    lines = ["# my clips", *(str(clip) for clip in sample_clips), str(sample_clips[0]) + "  # listed twice", ""]
    listing.write_text("\n".join(lines))
    from_list = discover_samples(listing, run)
    assert [sample.sample_id for sample in from_list] == [sample.sample_id for sample in from_folder]
    assert len(from_list) == 4 and [sample.sample_id for sample in discover_samples(listing, run, limit=2)] == [
        s.sample_id for s in from_folder[:2]
    ]


def test_list_file_names_the_bad_line(tmp_path, sample_clips):
    listing = tmp_path / "clips.txt"
    listing.write_text(f"{sample_clips[0]}\nmissing.mp4\n")
    with pytest.raises(DittoError, match=r"clips.txt:2: 'missing.mp4' is not a file"):
        discover_samples(listing, RunDir(tmp_path / "run"))


def test_datasets_source_is_copied_into_the_run(tmp_path, sample_clips):
    folder = tmp_path / "clips-dataset"
    folder.mkdir()
    features = datasets.Features({"clip": datasets.Video(), "note": datasets.Value("string")})
    table = datasets.Dataset.from_dict({"clip": [str(clip) for clip in sample_clips], "note": ["x"] * 4}, features=features)
    table.to_parquet(str(folder / "train.parquet"))
    run = RunDir(tmp_path / "run")
    samples = discover_samples(str(folder), run, limit=3)
    assert len(samples) == 3 and len({sample.sample_id for sample in samples}) == 3
    for sample, clip in zip(samples, sample_clips, strict=False):
        assert sample.input_path.startswith("inputs/")
        assert (run.root / sample.input_path).read_bytes() == clip.read_bytes()
    assert [sample.sample_id for sample in discover_samples(str(folder), run, limit=3)] == [sample.sample_id for sample in samples]


def test_dataset_without_video_column_is_refused(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    datasets.Dataset.from_dict({"text": ["a", "b"]}).to_parquet(str(folder / "train.parquet"))
    with pytest.raises(DittoError, match="no Video column"):
        discover_samples(str(folder), RunDir(tmp_path / "run"))
