"""Keyframe stage on the sample clips with a tiny random Qwen-Image-Edit pipeline.

The pipeline's working area is capped (``working_area``) so an edit takes a fraction of a second
on CPU. Checked: the saved keyframe is exactly the chosen frame, the edited keyframe has the
video's size and depends on both the keyframe and the instruction, seeds make it reproducible,
and a sample without an instruction fails alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ditto_hf.generate.contract.models import ModelRegistry, ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import StageContext
from ditto_hf.generate.stages.keyframe import KeyframeStage
from ditto_hf.tiny.qwen import save_tiny_qwen_image_edit
from ditto_hf.video import read_frames


@pytest.fixture(scope="module")
def tiny_edit(tmp_path_factory) -> ModelSpec:
    directory = save_tiny_qwen_image_edit(tmp_path_factory.mktemp("models") / "qwen-image-edit")
    return ModelSpec(id=str(directory), device="cpu", dtype="float32")


#: One registry for the module, so the tiny pipeline loads once per pipeline class.
REGISTRY = ModelRegistry()


def run_keyframe(spec, work_dir, samples, **options) -> list[Sample]:
    config = {"model": spec, "num_inference_steps": 2, "working_area": 32 * 32, **options}
    context = StageContext(work_dir=work_dir, registry=REGISTRY, seed=3)
    stage = KeyframeStage(KeyframeStage.Config.from_dict(config), context)
    stage.setup()
    stage.process(samples)
    return samples


def pixels(work_dir, relative: str) -> np.ndarray:
    return np.asarray(Image.open(work_dir / relative).convert("RGB"))


def clip_sample(clip, instruction="Turn the ball blue.", sample_id=None) -> Sample:
    return Sample(sample_id=sample_id or clip.stem, input_path=str(clip), video=str(clip), instruction=instruction)


def test_keyframe_saved_and_edited_at_video_size(tiny_edit, tmp_path, sample_clips):
    samples = run_keyframe(tiny_edit, tmp_path, [clip_sample(clip) for clip in sample_clips])
    for sample, clip in zip(samples, sample_clips, strict=False):
        assert sample.status == "ok", sample.error
        assert sample.keyframe == f"keyframe/{sample.sample_id}.png"
        assert sample.edited_keyframe == f"edited_keyframe/{sample.sample_id}.png"
        first_frame = read_frames(clip, num_frames=1)[0].numpy()
        np.testing.assert_array_equal(pixels(tmp_path, sample.keyframe), first_frame)
        edited = pixels(tmp_path, sample.edited_keyframe)
        assert edited.shape == first_frame.shape  # 192x320 landscape or 320x192 portrait
        assert not np.array_equal(edited, first_frame)
        assert sample.timings["keyframe"] > 0
    assert not list(tmp_path.rglob("*.tmp"))


def test_edit_depends_on_frame_instruction_and_seed(tiny_edit, tmp_path, sample_clips):
    clip = sample_clips[0]
    variants = {
        "base": ({}, "Turn the ball blue."),
        "again": ({}, "Turn the ball blue."),
        "other_prompt": ({}, "Add a hat to the person."),
        "last_frame": ({"frame_index": -1}, "Turn the ball blue."),
        "other_seed": ({"seed": 1}, "Turn the ball blue."),
    }
    edited = {}
    for name, (options, instruction) in variants.items():
        work_dir = tmp_path / name
        (sample,) = run_keyframe(tiny_edit, work_dir, [clip_sample(clip, instruction, sample_id="s")], **options)
        assert sample.status == "ok", sample.error
        edited[name] = pixels(work_dir, sample.edited_keyframe)
        if name == "last_frame":
            np.testing.assert_array_equal(pixels(work_dir, sample.keyframe), read_frames(clip)[-1].numpy())
    np.testing.assert_array_equal(edited["base"], edited["again"])
    for name in ("other_prompt", "last_frame", "other_seed"):
        assert not np.array_equal(edited["base"], edited[name]), name


def test_missing_instruction_or_frame_fails_alone(tiny_edit, tmp_path, sample_clips):
    samples = [clip_sample(clip) for clip in sample_clips[:2]]
    samples[0].instruction = ""
    run_keyframe(tiny_edit, tmp_path, samples)
    assert samples[0].status == "failed" and "no instruction" in samples[0].error
    assert samples[1].status == "ok", samples[1].error

    (late,) = run_keyframe(tiny_edit, tmp_path, [clip_sample(sample_clips[0])], frame_index=480)
    assert late.status == "failed" and "out of range" in late.error


def test_plus_pipeline_runs_the_same_checkpoint(tiny_edit, tmp_path, sample_clips):
    (sample,) = run_keyframe(tiny_edit, tmp_path, [clip_sample(sample_clips[1])], pipeline="QwenImageEditPlusPipeline")
    assert sample.status == "ok", sample.error
    assert pixels(tmp_path, sample.edited_keyframe).shape == (320, 192, 3)


def test_config_rejects_unknown_pipeline():
    with pytest.raises(Exception, match="keyframe.pipeline"):
        KeyframeStage.Config.from_dict({"pipeline": "StableDiffusionPipeline"})
