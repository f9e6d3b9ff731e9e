"""standardise: fps resampling, crop/resize by orientation, 4k+1 trimming, rejects and failures."""

from __future__ import annotations

import pytest
import torch

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import StageContext
from ditto_hf.generate.stages.standardise import StandardiseStage
from ditto_hf.video import probe, read_frames, resample_indices, write_video

TINY = {"fps": 20, "landscape_size": [64, 32], "portrait_size": [32, 64], "num_frames": 17}


def make_stage(work_dir, **overrides) -> StandardiseStage:
    return StandardiseStage({**TINY, **overrides}, StageContext(work_dir))


def indexed_clip(path, num_frames: int, fps: float, width: int = 96, height: int = 64):
    """A clip whose frame brightness encodes its index (level 20 + 8·i), so resampling is visible."""
    levels = 20 + 8 * torch.arange(num_frames, dtype=torch.float32)
    frames = levels.view(-1, 1, 1, 1).expand(num_frames, height, width, 3).round().to(torch.uint8)
    return write_video(path, frames, fps)


def test_clips_are_resampled_cropped_by_orientation_and_trimmed(tmp_path, sample_clips):
    stage = make_stage(tmp_path)
    samples = [Sample(clip.stem, str(clip)) for clip in sample_clips]
    stage.process(samples)
    for sample in samples:
        assert sample.ok, sample.error
        assert sample.video == f"video/{sample.sample_id}.mp4"
        info = probe(stage.context.resolve(sample.video))
        expected = (32, 64) if sample.sample_id == "portrait" else (64, 32)
        assert (info.width, info.height, info.num_frames) == (*expected, 17)
        assert info.fps == pytest.approx(20)
        assert sample.extra["source_info"]["fps"] == pytest.approx(24)
        assert sample.timings["standardise"] > 0


def test_output_frames_follow_the_resampled_source_frames(tmp_path):
    source = indexed_clip(tmp_path / "indexed.mp4", num_frames=48, fps=24)  # 1.2 source frames per output frame
    sample = Sample("indexed", str(source))
    make_stage(tmp_path / "run").process([sample])
    assert sample.ok, sample.error
    levels = read_frames(tmp_path / "run" / sample.video).float().mean(dim=(1, 2, 3))
    expected = 20 + 8 * torch.tensor(resample_indices(48, 24, 20)[:17], dtype=torch.float32)
    assert torch.allclose(levels, expected, atol=2.5), (levels, expected)


def test_centre_crop_keeps_the_middle_of_a_wide_clip(tmp_path):
    frames = torch.zeros(24, 64, 192, 3, dtype=torch.uint8)
    frames[:, :, 64:128] = 200  # bright middle third; a 2:1 crop of 192x64 keeps x in [32, 160)
    sample = Sample("wide", str(write_video(tmp_path / "wide.mp4", frames, 24)))
    make_stage(tmp_path / "run", num_frames=9).process([sample])
    out = read_frames(tmp_path / "run" / sample.video).float().mean(dim=(0, 1, 3))  # per column
    assert out[16:48].mean() > 180 and out[:12].mean() < 20 and out[-12:].mean() < 20


def test_too_short_clip_is_rejected_with_reason_and_scores(tmp_path, sample_clips):
    # 48 frames at 24 fps = 2 s = 40 frames at 20 fps: one short of 41
    sample = Sample("orbit", str(sample_clips[0]))
    make_stage(tmp_path, num_frames=41).process([sample])
    assert sample.status == "rejected" and sample.rejected_by == "standardise"
    assert "too short: 40 frame(s) at 20 fps" in sample.reasons["standardise"]
    assert sample.scores["source_frames"] == 40
    assert sample.video == "" and not (tmp_path / "video").exists()


def test_corrupt_file_fails_without_sinking_the_batch(tmp_path, sample_clips):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    samples = [Sample("corrupt", str(corrupt)), Sample("zoom", str(sample_clips[-1])), Sample("missing", str(tmp_path / "nope.mp4"))]
    make_stage(tmp_path / "run").process(samples)
    assert [s.status for s in samples] == ["failed", "ok", "failed"]
    assert samples[0].error.startswith("VideoError: ") and str(corrupt) in samples[0].error
    assert "no such file" in samples[2].error
    assert (tmp_path / "run" / samples[1].video).is_file()


def test_non_ok_samples_pass_through_untouched(tmp_path, sample_clips):
    sample = Sample("orbit", str(sample_clips[0])).reject("earlier", "not wanted")
    make_stage(tmp_path).process([sample])
    assert sample.video == "" and sample.rejected_by == "earlier" and "standardise" not in sample.timings


@pytest.mark.parametrize(
    ("options", "message"),
    [({"num_frames": 32}, r"4k\+1"), ({"landscape_size": [63, 32]}, "even"), ({"fps": 0}, "positive"), ({"size": 3}, "unknown option")],
)
def test_bad_config_is_a_clear_user_error(tmp_path, options, message):
    with pytest.raises(DittoError, match=message):
        make_stage(tmp_path, **options)
