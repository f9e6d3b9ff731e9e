"""The ``depth`` stage: both backends (tiny Video Depth Anything, the default; tiny Depth Anything
per frame with temporal alignment), the grey depth video, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import StageContext
from ditto_hf.generate.stages.depth import DepthStage, align_depths, fit_scale_shift, to_grey_video
from ditto_hf.tiny.depth import save_tiny_depth_anything
from ditto_hf.tiny.paper_filters import save_tiny_video_depth_anything
from ditto_hf.video import probe, read_frames


@pytest.fixture(scope="module")
def depth_model(tmp_path_factory) -> Path:
    return save_tiny_depth_anything(tmp_path_factory.mktemp("tiny-depth") / "depth-anything")


def make_stage(depth_model: Path, work_dir: Path, **options) -> DepthStage:
    spec = ModelSpec(str(depth_model), device="cpu", dtype="float32")
    options = {"backend": "depth-anything-v2", "frames_per_batch": 16, **options}
    stage = DepthStage({"model": spec, **options}, StageContext(work_dir=work_dir))
    stage.setup()
    return stage


@pytest.fixture(scope="module")
def depth_run(depth_model, sample_clips, tmp_path_factory):
    """The stage over a landscape and a portrait clip, plus one sample whose video is missing."""
    work_dir = tmp_path_factory.mktemp("depth-run")
    clips = {clip.stem: clip for clip in sample_clips}
    samples = [Sample(sample_id=name, input_path=str(clips[name]), video=str(clips[name])) for name in ("orbit", "portrait")]
    missing = Sample(sample_id="gone", input_path="gone.mp4", video=str(work_dir / "gone.mp4"))
    stage = make_stage(depth_model, work_dir)
    stage.process([samples[0], missing, samples[1]])
    return stage, work_dir, samples, missing


def test_fit_scale_shift_recovers_an_affine_map():
    prediction = torch.rand(24, 40)
    scale, shift = fit_scale_shift(prediction, 3.0 * prediction - 0.5)
    assert scale == pytest.approx(3.0) and shift == pytest.approx(-0.5)
    assert fit_scale_shift(torch.full((4, 4), 2.0), torch.full((4, 4), 5.0)) == (1.0, 3.0)  # flat frame


@pytest.mark.parametrize("align_to", ["previous", "first"])
def test_alignment_removes_per_frame_scale_and_shift(align_to):
    base = torch.rand(16, 24)
    drifting = torch.stack([base * (1 + 0.3 * k) + 0.2 * k for k in range(6)])  # what per-frame models return
    aligned = align_depths(drifting, align_to)
    assert torch.allclose(aligned, base.expand_as(aligned), atol=1e-5)


def test_grey_video_uses_one_range_for_the_clip():
    depths = torch.stack([torch.zeros(4, 6), torch.ones(4, 6), torch.full((4, 6), 2.0)])
    video = to_grey_video(depths)
    assert video.shape == (3, 4, 6, 3) and video.dtype == torch.uint8
    assert video[0].max() == 0 and video[2].min() == 255 and video[1].unique().tolist() == [128]
    assert torch.equal(video[..., 0], video[..., 2])


def test_depth_video_matches_the_clip(depth_run):
    _, work_dir, samples, _ = depth_run
    for sample in samples:
        assert sample.ok, sample.error
        assert sample.depth == f"depth/{sample.sample_id}.mp4"
        source, depth = probe(sample.video), probe(work_dir / sample.depth)
        assert depth.display_size == source.display_size
        assert depth.num_frames == source.num_frames == 48
        assert depth.fps == pytest.approx(source.fps)
        frames = read_frames(work_dir / sample.depth).int()
        assert (frames[..., 0] - frames[..., 1]).abs().max() <= 3  # grey (up to yuv420 rounding)
        assert frames.max() - frames.min() > 200  # normalised over the clip


def test_batched_predictions_equal_the_transformers_depth_pipeline(depth_run):
    """Frames pushed through the model in batches get the same depth as the transformers
    ``depth-estimation`` pipeline computes for each frame alone."""
    from PIL import Image
    from transformers import pipeline

    stage, _, samples, _ = depth_run
    frames = read_frames(samples[0].video, num_frames=20, layout="TCHW")
    batched = stage.backend.predict_frames(frames)
    estimator = pipeline("depth-estimation", model=stage.backend.model, image_processor=stage.backend.processor, device="cpu")
    for index in (0, 17):
        alone = estimator(Image.fromarray(frames[index].permute(1, 2, 0).numpy()))["predicted_depth"]
        assert torch.allclose(batched[index], alone.squeeze(), atol=1e-4)
    assert not torch.allclose(batched[0], batched[17])


def test_missing_video_fails_alone(depth_run):
    _, _, samples, missing = depth_run
    assert all(sample.ok for sample in samples)
    assert missing.status == "failed" and missing.rejected_by == "depth"
    assert "gone.mp4" in missing.error and "no such file" in missing.error
    assert not missing.depth


def test_sample_without_a_video_is_a_clear_failure(depth_run):
    stage, _, _, _ = depth_run
    sample = Sample(sample_id="raw", input_path="raw.mp4")
    stage.process([sample])
    assert sample.status == "failed" and "standardise" in sample.error


def test_bad_config_is_a_user_error(tmp_path):
    with pytest.raises(DittoError, match="align_to"):
        DepthStage({"align_to": "last"}, StageContext(work_dir=tmp_path))
    with pytest.raises(DittoError, match="backend 'midas' is unknown; available: video-depth-anything, depth-anything-v2"):
        DepthStage({"backend": "midas"}, StageContext(work_dir=tmp_path))


def test_video_depth_anything_is_the_default_backend():
    config = DepthStage.Config()
    assert config.backend == "video-depth-anything" and config.model.id == "depth-anything/Video-Depth-Anything-Small"
    assert DepthStage.Config(backend="depth-anything-v2").model.id == "depth-anything/Depth-Anything-V2-Small-hf"
    assert DepthStage.Config(model="my/vda").model.id == "my/vda"


# -- the Video Depth Anything backend ---------------------------------------------------------------
@pytest.fixture(scope="module")
def video_depth_model(tmp_path_factory) -> Path:
    return save_tiny_video_depth_anything(tmp_path_factory.mktemp("tiny-vda") / "video-depth-anything")


def test_video_depth_anything_writes_the_clips_depth(video_depth_model, sample_clips, tmp_path):
    spec = ModelSpec(str(video_depth_model), device="cpu", dtype="float32")
    stage = DepthStage({"model": spec, "input_size": 28}, StageContext(work_dir=tmp_path))
    stage.setup()
    clips = {clip.stem: clip for clip in sample_clips}
    samples = [Sample(sample_id=name, input_path=str(clips[name]), video=str(clips[name])) for name in ("orbit", "portrait")]
    stage.process(samples)
    for sample in samples:
        assert sample.ok, sample.error
        source, depth = probe(sample.video), probe(tmp_path / sample.depth)
        assert depth.display_size == source.display_size and depth.num_frames == source.num_frames == 48  # two windows
        # what was written is the model's clip depth, normalised over the clip (up to yuv420 rounding)
        expected = to_grey_video(stage.backend.model.predict_video(read_frames(sample.video, layout="TCHW"), input_size=28))
        assert (read_frames(tmp_path / sample.depth).int() - expected.int()).abs().float().mean() < 2
    rerun = Sample(sample_id="again", input_path=str(clips["orbit"]), video=str(clips["orbit"]))
    stage.process([rerun])
    assert (tmp_path / rerun.depth).read_bytes() == (tmp_path / samples[0].depth).read_bytes()  # same bytes


def test_video_depth_anything_without_weights_says_where_to_get_them(tmp_path):
    stage = DepthStage({}, StageContext(work_dir=tmp_path))
    with pytest.raises(DittoError, match="cannot get weights from 'depth-anything/Video-Depth-Anything-Small'.*offline"):
        stage.setup()


@pytest.mark.parametrize("backend", ["video-depth-anything", "depth-anything-v2"])
def test_auto_precision_is_float32_even_on_cuda(backend):
    """The depth models are small and the scale/shift alignment is precision-sensitive: ``auto`` is
    float32 (not bf16 on CUDA); an explicit dtype is kept."""
    config = DepthStage.Config(backend=backend, model={"id": "", "device": "cuda"})
    assert config.model.dtype == "float32" and config.model.resolved_dtype() == torch.float32
    assert DepthStage.Config(backend=backend).model.resolved_dtype() == torch.float32
    assert DepthStage.Config(backend=backend, model={"id": "x", "dtype": "bfloat16"}).model.dtype == "bfloat16"
