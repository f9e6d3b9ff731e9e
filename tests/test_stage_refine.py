"""The ``refine`` stage: the tiny Wan2.2 low-noise expert runs the last steps on the generated video."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import StageContext
from ditto_hf.generate.stages.refine import RefineStage
from ditto_hf.tiny.wan import BOUNDARY_RATIO, save_tiny_wan_refiner
from ditto_hf.video import probe, read_frames, write_video

FAST = {"max_sequence_length": 32}


@pytest.fixture(scope="module")
def refiner(tmp_path_factory) -> Path:
    return save_tiny_wan_refiner(tmp_path_factory.mktemp("tiny-wan22") / "wan22")


def make_generated(work_dir: Path, clip: Path, size: tuple[int, int]) -> Sample:
    """A sample as ``generate`` leaves it: a 4k+1-frame video at a Wan size, and a caption."""
    frames = read_frames(clip, num_frames=5, size=size)
    write_video(work_dir / "generated" / f"{clip.stem}.mp4", frames, 20.0)
    return Sample(
        sample_id=clip.stem,
        input_path=str(clip),
        generated=f"generated/{clip.stem}.mp4",
        caption="a red car in the city",
    )


def make_stage(refiner: Path, work_dir: Path, **options) -> RefineStage:
    spec = ModelSpec(str(refiner), device="cpu", dtype="float32")
    stage = RefineStage({"model": spec, **FAST, **options}, StageContext(work_dir=work_dir))
    stage.setup()
    return stage


@pytest.fixture(scope="module")
def clips(sample_clips) -> dict[str, Path]:
    return {clip.stem: clip for clip in sample_clips}


class Recorder:
    """Forward hooks (the pipeline runs unchanged) on the denoiser and the text encoder."""

    def __init__(self, pipeline):
        self.timesteps: list[float] = []
        self.prompts: list[str] = []
        tokenizer = pipeline.tokenizer
        self.hooks = [
            pipeline.transformer.register_forward_pre_hook(
                lambda module, args, kwargs: self.timesteps.append(float(kwargs["timestep"][0])), with_kwargs=True
            ),
            pipeline.text_encoder.register_forward_pre_hook(
                lambda module, args: self.prompts.append(tokenizer.decode(args[0][0], skip_special_tokens=True))
            ),
        ]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for hook in self.hooks:
            hook.remove()


def test_refines_the_last_steps_below_the_expert_boundary(refiner, clips, tmp_path):
    stage = make_stage(refiner, tmp_path)  # defaults: 40-step schedule, strength 0.1
    sample = make_generated(tmp_path, clips["orbit"], (64, 32))
    with Recorder(stage.pipeline) as recorded:
        stage.process([sample])
    assert sample.ok, sample.error
    schedule = stage.pipeline.scheduler.timesteps.tolist()
    assert len(schedule) == 40
    # classifier-free guidance: a conditional and an unconditional call per step, on the last 4 steps
    assert recorded.timesteps[::2] == recorded.timesteps[1::2] == schedule[-4:]
    assert max(recorded.timesteps) < BOUNDARY_RATIO * 1000  # the low-noise expert's range
    caption, negative = recorded.prompts
    assert caption == "a red car in the city"
    assert negative and stage.config.negative_prompt.startswith(negative)  # cut at max_sequence_length


def test_output_matches_the_generated_video(refiner, clips, tmp_path):
    stage = make_stage(refiner, tmp_path, num_inference_steps=8, strength=0.25, guidance_scale=1.0)
    samples = [
        make_generated(tmp_path, clips["orbit"], (64, 32)),
        make_generated(tmp_path, clips["portrait"], (32, 64)),
    ]
    stage.process(samples)
    for sample, size in zip(samples, [(64, 32), (32, 64)], strict=False):
        assert sample.ok, sample.error
        assert sample.refined == f"refined/{sample.sample_id}.mp4"
        assert sample.timings["refine"] > 0
        info = probe(tmp_path / sample.refined)
        assert (info.display_size, info.num_frames, info.fps) == (size, 5, pytest.approx(20.0))
        assert sample.edited == sample.refined
        assert not torch.equal(read_frames(tmp_path / sample.refined), read_frames(tmp_path / sample.generated))


def test_uses_the_low_noise_expert_and_an_empty_prompt_on_request(refiner, clips, tmp_path):
    from diffusers import WanTransformer3DModel

    stage = make_stage(refiner, tmp_path, num_inference_steps=4, strength=0.25, prompt_source="empty", guidance_scale=1.0)
    low_noise = WanTransformer3DModel.from_pretrained(refiner, subfolder="transformer_2")
    high_noise = WanTransformer3DModel.from_pretrained(refiner, subfolder="transformer")
    weights = stage.pipeline.transformer.state_dict()
    assert all(torch.equal(weights[name], value) for name, value in low_noise.state_dict().items())
    assert not all(torch.equal(weights[name], value) for name, value in high_noise.state_dict().items())
    sample = make_generated(tmp_path, clips["static"], (64, 32))
    with Recorder(stage.pipeline) as recorded:
        stage.process([sample])
    assert sample.ok, sample.error
    assert recorded.prompts == [""] and len(recorded.timesteps) == 1  # guidance 1: no negative pass


def test_a_sample_without_generated_video_fails_alone(refiner, clips, tmp_path):
    stage = make_stage(refiner, tmp_path, num_inference_steps=4, strength=0.25, guidance_scale=1.0)
    good = make_generated(tmp_path, clips["zoom"], (64, 32))
    pending = Sample(sample_id="pending", input_path="pending.mp4")
    odd = make_generated(tmp_path, clips["orbit"], (64, 32))
    write_video(tmp_path / odd.generated, read_frames(clips["orbit"], num_frames=5, size=(40, 24)), 20.0)
    stage.process([pending, good, odd])
    assert good.ok and good.refined
    assert pending.status == "failed" and "generated video" in pending.error
    assert odd.status == "failed" and "multiples of 16" in odd.error


@pytest.mark.parametrize(
    "options, message",
    [
        ({"strength": 0.0}, "strength"),
        ({"strength": 0.01}, "runs no step"),
        ({"prompt_source": "title"}, "prompt_source"),
    ],
)
def test_bad_config_is_a_user_error(options, message, tmp_path):
    with pytest.raises(DittoError, match=message):
        RefineStage(options, StageContext(work_dir=tmp_path))


def test_default_strength_starts_below_the_real_boundary():
    """Wan2.2 A14B ships UniPC with flow shift 12 and boundary 0.875: 4 of 40 steps stay below it."""
    from diffusers import UniPCMultistepScheduler

    config = RefineStage.Config()
    assert config.model.id == "Wan-AI/Wan2.2-T2V-A14B-Diffusers" and config.refine_steps == 4
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=12.0)
    scheduler.set_timesteps(config.num_inference_steps)
    assert float(scheduler.timesteps[-config.refine_steps]) < 0.875 * 1000
