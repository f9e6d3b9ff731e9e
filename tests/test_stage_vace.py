"""The ``generate`` stage: a tiny Wan2.1-VACE pipeline, loaded from disk through the registry."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from lora_fixtures import write_lora
from PIL import Image

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import StageContext
from ditto_hf.generate.helpers.wan import sample_generator
from ditto_hf.generate.stages.vace import LORA_ADAPTER, VaceStage
from ditto_hf.tiny.wan import save_tiny_wan_lora, save_tiny_wan_vace
from ditto_hf.video import center_crop_resize, probe, read_frames, write_video

SIZE = {"width": 64, "height": 32, "num_frames": 5, "num_inference_steps": 2, "max_sequence_length": 32}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-wan-vace")
    return {"vace": save_tiny_wan_vace(root / "vace"), "lora": save_tiny_wan_lora(root / "lora")}


def make_inputs(work_dir: Path, clip: Path) -> Sample:
    """A sample as the earlier stages leave it: a grey 'depth' video and an edited keyframe png."""
    frames = read_frames(clip, num_frames=13, layout="THWC")
    grey = frames.float().mean(dim=-1, keepdim=True).expand_as(frames).round().to(torch.uint8)
    write_video(work_dir / "depth" / f"{clip.stem}.mp4", grey, probe(clip).fps)
    edited = 255 - frames[0].numpy()  # an "edit" clearly different from the depth frames
    (work_dir / "keyframes").mkdir(parents=True, exist_ok=True)
    Image.fromarray(edited).save(work_dir / "keyframes" / f"{clip.stem}.png")
    return Sample(
        sample_id=clip.stem,
        input_path=str(clip),
        depth=f"depth/{clip.stem}.mp4",
        edited_keyframe=f"keyframes/{clip.stem}.png",
        instruction="turn it into an anime painting",
    )


def make_stage(checkpoints, work_dir: Path, **options) -> VaceStage:
    spec = ModelSpec(str(checkpoints["vace"]), device="cpu", dtype="float32")
    stage = VaceStage({"model": spec, **SIZE, **options}, StageContext(work_dir=work_dir, seed=7))
    stage.setup()
    return stage


def decoded(work_dir: Path, sample: Sample) -> torch.Tensor:
    return read_frames(work_dir / sample.generated)


@pytest.fixture(scope="module")
def clips(sample_clips) -> dict[str, Path]:
    return {clip.stem: clip for clip in sample_clips}


@pytest.fixture(scope="module")
def baseline(checkpoints, clips, tmp_path_factory):
    """One run without LoRA on a landscape and a portrait clip (later tests rerun variants of
    these samples, overwriting their files: the first output of the orbit clip is kept here)."""
    work_dir = tmp_path_factory.mktemp("vace-run")
    samples = [make_inputs(work_dir, clips[name]) for name in ("orbit", "portrait")]
    stage = make_stage(checkpoints, work_dir)
    stage.process(samples)
    return BaselineRun(stage, work_dir, samples, first_orbit=decoded(work_dir, samples[0]))


@dataclass
class BaselineRun:
    stage: VaceStage
    work_dir: Path
    samples: list[Sample]
    first_orbit: torch.Tensor


def test_generated_video_has_configured_size_frames_and_rate(baseline):
    work_dir, samples = baseline.work_dir, baseline.samples
    for sample in samples:
        assert sample.ok, sample.error
        assert sample.generated == f"generated/{sample.sample_id}.mp4"
        assert sample.timings["vace"] > 0
        info = probe(work_dir / sample.generated)
        assert info.num_frames == 5
        assert info.fps == pytest.approx(24.0)
    landscape, portrait = samples
    assert probe(work_dir / landscape.generated).display_size == (64, 32)
    assert probe(work_dir / portrait.generated).display_size == (32, 64)  # orientation follows the clip


def test_rerun_is_reproducible_and_samples_get_their_own_noise(baseline):
    stage, work_dir, samples = baseline.stage, baseline.work_dir, baseline.samples
    rerun = Sample.from_dict({**samples[0].to_dict(), "generated": ""})
    stage.process([rerun])
    assert torch.equal(decoded(work_dir, rerun), baseline.first_orbit)
    seeds = {
        sample_generator(run, stage_seed, name).initial_seed()
        for run, stage_seed, name in [(7, 0, "orbit"), (7, 0, "portrait"), (8, 0, "orbit"), (7, 1, "orbit")]
    }
    assert len(seeds) == 4  # run seed, stage seed and sample id all change the noise


def test_vae_encodes_the_depth_frames_and_the_edited_keyframe(baseline):
    """A forward hook on the VAE encoder sees what the pipeline conditions on: the control video
    (the sample's depth frames at the output size) and the reference image (the edited keyframe)."""
    stage, work_dir, samples = baseline.stage, baseline.work_dir, baseline.samples
    sample = Sample.from_dict({**samples[0].to_dict(), "generated": ""})
    seen: list[torch.Tensor] = []
    hook = stage.pipeline.vae.encoder.register_forward_pre_hook(
        lambda module, args: seen.extend(args[0][0].permute(1, 0, 2, 3).clone())  # (C, T, H, W) -> frames
    )
    try:
        stage.process([sample])
    finally:
        hook.remove()
    assert sample.ok, sample.error

    def as_model_input(frames_tchw: torch.Tensor) -> torch.Tensor:
        return frames_tchw.float() / 127.5 - 1.0

    depth = read_frames(work_dir / sample.depth, num_frames=5, size=(64, 32), layout="TCHW")
    with Image.open(work_dir / sample.edited_keyframe) as image:
        keyframe = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)[None]
    keyframe = center_crop_resize(keyframe, (64, 32))

    def encoded(frame: torch.Tensor) -> bool:
        return any(candidate.shape == frame.shape and torch.allclose(candidate, frame, atol=1e-4) for candidate in seen)

    assert all(encoded(frame) for frame in as_model_input(depth)), "the depth frames were not the control video"
    assert encoded(as_model_input(keyframe)[0]), "the edited keyframe was not the reference image"
    assert not encoded(as_model_input(read_frames(sample.input_path, num_frames=1, size=(64, 32), layout="TCHW"))[0])


@contextmanager
def denoiser_outputs(pipeline):
    """Collect the transformer's noise predictions (a forward hook; the pipeline runs unchanged)."""
    outputs: list[torch.Tensor] = []
    hook = pipeline.transformer.register_forward_hook(lambda module, args, output: outputs.append(output[0].clone()))
    try:
        yield outputs
    finally:
        hook.remove()


def predictions(stage: VaceStage, sample: Sample) -> torch.Tensor:
    """Run ``sample`` through the stage and return every noise prediction of the run."""
    with denoiser_outputs(stage.pipeline) as outputs:
        stage.process([sample])
    assert sample.ok, sample.error
    return torch.stack(outputs)


def test_the_keyframe_conditions_the_denoiser(baseline):
    stage, work_dir, samples = baseline.stage, baseline.work_dir, baseline.samples
    Image.new("RGB", (320, 192), (0, 255, 0)).save(work_dir / "keyframes" / "green.png")
    original = Sample.from_dict({**samples[0].to_dict(), "generated": ""})
    green = Sample.from_dict({**samples[0].to_dict(), "generated": "", "edited_keyframe": "keyframes/green.png"})
    assert not torch.allclose(predictions(stage, original), predictions(stage, green))


def test_lora_loads_and_its_weight_is_applied(baseline, checkpoints, tmp_path):
    base_stage, samples = baseline.stage, baseline.samples
    sample = make_inputs(tmp_path, Path(samples[0].input_path))
    reference = predictions(base_stage, Sample.from_dict(sample.to_dict()))
    stage = make_stage(checkpoints, tmp_path, lora=str(checkpoints["lora"]), lora_scale=1.0)
    assert LORA_ADAPTER in stage.pipeline.get_list_adapters()["transformer"]
    with_lora = predictions(stage, Sample.from_dict(sample.to_dict()))
    assert (with_lora - reference).abs().max() > 1e-3
    stage.pipeline.set_adapters([LORA_ADAPTER], [0.0])  # weight 0 gives back the base model
    assert torch.equal(predictions(stage, Sample.from_dict(sample.to_dict())), reference)


@pytest.mark.parametrize("spelling", ["comfy-main", "diffsynth-prefixed"])
def test_a_comfyui_or_diffsynth_lora_in_the_recipe_goes_through_the_converter(spelling, baseline, checkpoints, tmp_path):
    """CausVid-style ComfyUI keys (main blocks) and DiffSynth VACE keys, given as a folder + weight name."""
    lora = write_lora(tmp_path / "loras" / "Wan21_CausVid_14B_T2V_lora_rank32.safetensors", spelling, scale=0.5)
    sample = make_inputs(tmp_path, Path(baseline.samples[0].input_path))
    reference = predictions(baseline.stage, Sample.from_dict(sample.to_dict()))
    stage = make_stage(checkpoints, tmp_path, lora=str(lora.parent), lora_weight_name=lora.name)
    assert stage.pipeline.get_list_adapters() == {"transformer": [LORA_ADAPTER]}
    assert (predictions(stage, Sample.from_dict(sample.to_dict())) - reference).abs().max() > 1e-3


def test_a_sample_with_a_missing_keyframe_fails_alone(baseline):
    stage, samples = baseline.stage, baseline.samples
    good = Sample.from_dict({**samples[1].to_dict(), "generated": ""})
    missing = Sample.from_dict({**samples[0].to_dict(), "generated": "", "edited_keyframe": "keyframes/none.png"})
    no_instruction = Sample.from_dict({**samples[0].to_dict(), "generated": "", "instruction": ""})
    stage.process([missing, good, no_instruction])
    assert good.ok and good.generated
    assert missing.status == "failed" and "keyframes/none.png" in missing.error and missing.rejected_by == "vace"
    assert no_instruction.status == "failed" and "instruction" in no_instruction.error


@pytest.mark.parametrize(
    "options, message",
    [({"num_frames": 10}, r"4k\+1"), ({"width": 50}, "multiples of 16"), ({"num_inference_steps": 0}, "at least 1")],
)
def test_bad_config_is_a_user_error(options, message, tmp_path):
    with pytest.raises(DittoError, match=message):
        VaceStage(options, StageContext(work_dir=tmp_path))


def test_defaults_are_the_paper_model_and_size():
    config = VaceStage.Config()
    assert config.model.id == "Wan-AI/Wan2.1-VACE-14B-diffusers"
    assert (config.width, config.height, config.num_frames) == (1280, 720, 101)
