"""The ``refine`` stage: the tiny Wan2.2 low-noise expert runs the last steps on the generated video.

The tiny refiner carries the real repo's scheduler config (UniPC, ``flow_shift=3.0``) and
``boundary_ratio``, so the stage's own shift (Ditto's enhancer: 12) is what these tests see."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import StageContext
from ditto_hf.generate.stages.refine import RefineStage
from ditto_hf.tiny.wan import BOUNDARY_RATIO, WAN22_REPO, real_config, real_scheduler, save_tiny_wan_refiner
from ditto_hf.video import probe, read_frames, write_video

FAST = {"max_sequence_length": 32, "width": 64, "height": 32}
#: Where the last 4 of 40 UniPC steps start: Ditto's enhancer (shift 12) vs the repo's scheduler (shift 3).
ENHANCER_START, REPO_SHIFT_START = 573, 251


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
    stage = make_stage(refiner, tmp_path)  # defaults: 40-step schedule, strength 0.1, shift 12
    assert stage.pipeline.scheduler.config.flow_shift == 12.0
    sample = make_generated(tmp_path, clips["orbit"], (64, 32))
    with Recorder(stage.pipeline) as recorded:
        stage.process([sample])
    assert sample.ok, sample.error
    schedule = stage.pipeline.scheduler.timesteps.tolist()
    assert len(schedule) == 40
    # classifier-free guidance: a conditional and an unconditional call per step, on the last 4 steps
    assert recorded.timesteps[::2] == recorded.timesteps[1::2] == schedule[-4:]
    assert recorded.timesteps[0] == ENHANCER_START  # sigma ~0.57, as in Ditto's enhancer
    assert max(recorded.timesteps) < BOUNDARY_RATIO * 1000  # the low-noise expert's range
    caption, negative = recorded.prompts
    assert caption == "a red car in the city"
    assert negative and stage.config.negative_prompt.startswith(negative)  # cut at max_sequence_length


def test_the_shift_is_the_stage_s_not_the_repo_s():
    """The real Wan2.2-T2V-A14B-Diffusers scheduler says shift 3: kept, the refinement would start
    at sigma ~0.25; the stage's default 12 starts it where Ditto's enhancer does."""
    config = RefineStage.Config()
    assert config.flow_shift == 12.0 and config.refine_steps == 4
    assert real_config(WAN22_REPO, "scheduler_config.json")["flow_shift"] == 3.0
    assert config.start_timestep(real_scheduler(WAN22_REPO)) == REPO_SHIFT_START
    shifted = type(real_scheduler(WAN22_REPO)).from_config(real_scheduler(WAN22_REPO).config, flow_shift=config.flow_shift)
    assert config.start_timestep(shifted) == ENHANCER_START
    shifted.set_timesteps(config.num_inference_steps)
    assert float(shifted.sigmas[-config.refine_steps - 1]) == pytest.approx(0.5739, abs=1e-3)


def test_upscales_to_the_output_size_in_the_clip_s_orientation(refiner, clips, tmp_path):
    """Ditto's enhancer resizes to 1280x720 (720x1280 portrait): here 64x32 generated -> 128x64."""
    stage = make_stage(refiner, tmp_path, num_inference_steps=4, strength=0.25, guidance_scale=1.0, width=128, height=64)
    samples = [
        make_generated(tmp_path, clips["orbit"], (64, 32)),
        make_generated(tmp_path, clips["portrait"], (32, 64)),
    ]
    seen: list[tuple[int, int]] = []
    hook = stage.pipeline.vae.encoder.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    try:
        stage.process(samples)
    finally:
        hook.remove()
    assert [probe(tmp_path / sample.refined).display_size for sample in samples] == [(128, 64), (64, 128)]
    assert (64, 128) in seen and (128, 64) in seen  # the encoder saw the upscaled frames (height, width)


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
    broken = make_generated(tmp_path, clips["orbit"], (64, 32))
    (tmp_path / broken.generated).write_bytes(b"not a video")
    stage.process([pending, good, broken])
    assert good.ok and good.refined
    assert pending.status == "failed" and "generated video" in pending.error
    assert broken.status == "failed" and broken.generated in broken.error


@pytest.mark.parametrize(
    "options, message",
    [
        ({"strength": 0.0}, "strength"),
        ({"strength": 0.01}, "runs no step"),
        ({"prompt_source": "title"}, "prompt_source"),
        ({"width": 1000}, "multiples of 16"),
    ],
)
def test_bad_config_is_a_user_error(options, message, tmp_path):
    with pytest.raises(DittoError, match=message):
        RefineStage(options, StageContext(work_dir=tmp_path))


def test_default_strength_starts_below_the_real_boundary():
    """Wan2.2 A14B: boundary 0.875 (model_index.json); with the stage's shift, 4 of 40 steps stay below it."""
    config = RefineStage.Config()
    assert config.model.id == WAN22_REPO and config.expert_subfolder == "transformer_2"
    assert real_config(WAN22_REPO, "model_index.json")["transformer_2"] == ["diffusers", "WanTransformer3DModel"]
    scheduler = real_scheduler(WAN22_REPO)
    shifted = type(scheduler).from_config(scheduler.config, flow_shift=config.flow_shift)
    assert config.start_timestep(shifted) < BOUNDARY_RATIO * scheduler.config.num_train_timesteps
