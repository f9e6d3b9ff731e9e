"""``ditto-hf edit`` and ``EdittoPipeline`` on a tiny Wan2.1-VACE pipeline saved and loaded through
``from_pretrained``, with LoRA files in the released spellings (the Ditto and CausVid LoRAs come
from a loopback Hub when a test asks for them by name)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from lora_fixtures import write_lora, write_vace_branch
from safetensors.torch import save_file

from ditto_hf.cli import main
from ditto_hf.edit import DITTO_REPO, PRESETS, EdittoPipeline
from ditto_hf.edit.presets import CAUSVID_LORA
from ditto_hf.errors import DittoError
from ditto_hf.tiny.wan import save_tiny_wan_vace, tiny_wan_vace_transformer
from ditto_hf.video import center_crop_resize, probe, read_frames

TINY = ("--num-frames", "5", "--width", "64", "--height", "32", "--steps", "2")
INSTRUCTION = "turn it into an anime painting"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("edit")
    return {
        "model": save_tiny_wan_vace(root / "vace"),
        "ditto": write_lora(root / "ditto_global.safetensors", "diffsynth", scale=0.5),
    }


@pytest.fixture(scope="module")
def clips(sample_clips) -> dict[str, Path]:
    return {clip.stem: clip for clip in sample_clips}


@pytest.fixture
def empty_hub_cache(tmp_path_factory, monkeypatch):
    """A Hub cache of this test's own: a file downloaded by one test is not found in the cache by another."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hub-cache")))


def edit(*args: str, capsys) -> tuple[int, str]:
    """``ditto-hf edit ARGS`` in this process: (exit code, stderr)."""
    try:
        main(["edit", *args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def test_edit_writes_the_frames_and_size_asked_for(files, clips, tmp_path, capsys):
    output = tmp_path / "edited.mp4"
    code, err = edit(
        str(clips["orbit"]),
        INSTRUCTION,
        "-o",
        str(output),
        "--model",
        str(files["model"]),
        "--lora",
        str(files["ditto"]),
        *TINY,
        capsys=capsys,
    )
    assert code == 0, err
    info = probe(output)
    assert (info.num_frames, info.display_size, info.fps) == (5, (64, 32), 20.0)
    assert f"{clips['orbit']}: 320x192, 48 frames at 24 fps -> first 5 frames, centre-cropped to 320x160, resized to 64x32" in err
    assert "Wan/DiffSynth names, lora_A/lora_B, 20 layers (rank 4) on the VACE branch, weight 1" in err
    assert "denoising" in err and f"wrote {output}: 5 frames, 64x32 at 20 fps (2 steps flow_match_euler shift 5, guidance 5, seed 1)" in err

    code, err = edit(
        str(clips["orbit"]),
        INSTRUCTION,
        "-o",
        str(tmp_path / "24.mp4"),
        "--model",
        str(files["model"]),
        "--lora",
        "none",
        "--fps",
        "24",
        *TINY,
        capsys=capsys,
    )
    assert code == 0 and probe(tmp_path / "24.mp4").fps == 24.0 and "no Ditto LoRA" in err


def test_the_lora_changes_the_edit_and_scale_zero_is_the_base_model_exactly(files, clips, tmp_path, capsys):
    common = (str(clips["orbit"]), INSTRUCTION, "--model", str(files["model"]), *TINY)
    runs = {
        "none": ("--lora", "none"),
        "zero": ("--lora", str(files["ditto"]), "--lora-scale", "0"),
        "lora": ("--lora", str(files["ditto"])),
    }
    for name, options in runs.items():
        code, err = edit(*common, "-o", str(tmp_path / f"{name}.mp4"), *options, capsys=capsys)
        assert code == 0, err
    none, zero, lora = ((tmp_path / f"{name}.mp4").read_bytes() for name in runs)
    assert zero == none
    assert not torch.equal(read_frames(tmp_path / "lora.mp4"), read_frames(tmp_path / "none.mp4"))


@pytest.fixture(scope="module")
def editto(files) -> EdittoPipeline:
    preset = replace(PRESETS["quality"], width=64, height=32, num_frames=5, num_inference_steps=2)
    return EdittoPipeline.from_pretrained(str(files["model"]), lora=str(files["ditto"]), preset=preset, device="cpu")


def test_the_source_video_is_the_vace_context_without_mask_or_reference(editto, clips):
    """The VAE encodes what the official inference conditions on: the first frames of the input at the
    output size (the reactive part, mask all ones) and zeros (the inactive part); no reference image."""
    seen: list[torch.Tensor] = []
    hook = editto.pipe.vae.encoder.register_forward_pre_hook(lambda module, args: seen.extend(args[0][0].permute(1, 0, 2, 3).clone()))
    try:
        result = editto(clips["zoom"], INSTRUCTION, show_progress=False)
    finally:
        hook.remove()
    source = center_crop_resize(read_frames(clips["zoom"], num_frames=5, layout="TCHW"), (64, 32)).float() / 127.5 - 1.0
    assert result.frames.shape == (5, 32, 64, 3) and result.frames.dtype == torch.uint8
    assert all(any(torch.allclose(frame, candidate, atol=1e-5) for candidate in seen) for frame in source)
    assert all(candidate.abs().max() == 0 or any(torch.allclose(candidate, frame, atol=1e-5) for frame in source) for candidate in seen)


def test_the_quality_preset_samples_at_diffsynths_noise_levels(editto, clips):
    """DiffSynth's Wan sampler (the official inference): N Euler steps at shift(1 - i/N), then to 0."""
    timesteps: list[torch.Tensor] = []
    hook = editto.pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: timesteps.append(kwargs["timestep"]), with_kwargs=True
    )
    try:
        editto(clips["orbit"], INSTRUCTION, num_inference_steps=4, show_progress=False)
    finally:
        hook.remove()
    sigmas = torch.linspace(1, 0, 4 + 1)[:-1]
    expected = 1000 * 5 * sigmas / (1 + 4 * sigmas)  # shift 5, DiffSynth's FlowMatchScheduler(sigma_min=0, extra_one_step=True)
    seen = torch.stack([step.flatten()[0] for step in timesteps[::2]])  # guidance 5: a conditional and an unconditional pass per step
    assert len(timesteps) == 8 and torch.allclose(seen, expected, rtol=0, atol=1e-3)
    assert torch.equal(editto.pipe.scheduler.sigmas[-1], torch.tensor(0.0))


def test_a_portrait_input_gets_an_upright_size_and_frames_work_as_input(editto, clips, tmp_path):
    portrait = editto(clips["portrait"], INSTRUCTION, show_progress=False)
    assert portrait.frames.shape == (5, 64, 32, 3) and "resized to 32x64" in portrait.note
    frames = read_frames(clips["orbit"], num_frames=7)
    from_frames = editto(frames, INSTRUCTION, show_progress=False)
    assert from_frames.note == "input: 320x192, 7 frames -> first 5 frames, centre-cropped to 320x160, resized to 64x32"
    assert torch.equal(from_frames.frames, editto(clips["orbit"], INSTRUCTION, show_progress=False).frames)
    saved = from_frames.save(tmp_path / "api.mp4", fps=10)
    assert probe(saved).num_frames == 5 and probe(saved).fps == 10.0


def test_the_fast_preset_loads_causvid_and_the_ditto_lora_by_name(files, clips, hub_server, empty_hub_cache, tmp_path, capsys):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    uploads = {
        (DITTO_REPO, "models/ditto_global.safetensors"): "diffsynth-prefixed",
        (CAUSVID_LORA.source, CAUSVID_LORA.weight_name): "comfy-main",
    }
    for (repo, name), spelling in uploads.items():
        api.create_repo(repo, exist_ok=True)
        api.upload_file(path_or_fileobj=str(write_lora(tmp_path / name, spelling, scale=0.5)), path_in_repo=name, repo_id=repo)

    output = tmp_path / "fast.mp4"
    code, err = edit(
        str(clips["orbit"]), INSTRUCTION, "-o", str(output), "--model", str(files["model"]), "--preset", "fast", *TINY[:4], capsys=capsys
    )
    assert code == 0, err
    assert probe(output).num_frames == 5
    assert f"LoRA {DITTO_REPO}/models/ditto_global.safetensors: Wan/DiffSynth names" in err
    assert f"LoRA {CAUSVID_LORA.source}/{CAUSVID_LORA.weight_name}: Wan/DiffSynth names, lora_down/lora_up, alpha" in err
    assert "(4 steps unipc shift 2, guidance 1.2, seed 1)" in err

    editto = EdittoPipeline.from_pretrained(str(files["model"]), lora="global", lora_scale=0.5, preset="fast", device="cpu")
    assert editto.pipe.get_list_adapters() == {"transformer": ["ditto", "causvid"]}
    calls: list[dict] = []
    hook = editto.pipe.transformer.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs), with_kwargs=True)
    try:
        editto(clips["orbit"], INSTRUCTION, width=64, height=32, num_frames=5, show_progress=False)
    finally:
        hook.remove()
    scheduler = editto.pipe.scheduler
    assert type(scheduler).__name__ == "UniPCMultistepScheduler" and scheduler.config.flow_shift == 2.0
    assert len(calls) == 8  # 4 steps, guidance 1.2 > 1: a conditional and an unconditional pass each
    assert all(torch.allclose(call["control_hidden_states_scale"], torch.tensor(0.975)) for call in calls)


def test_a_whole_vace_branch_file_loads_as_the_lora(files, tmp_path):
    fine_tuned = tiny_wan_vace_transformer(seed=3)
    branch = write_vace_branch(tmp_path / "ditto_global_comfy.safetensors", fine_tuned, prefix="diffusion_model.")
    editto = EdittoPipeline.from_pretrained(str(files["model"]), lora=str(branch), device="cpu")
    loaded = editto.pipe.transformer.state_dict()
    assert all(torch.equal(loaded[name], tensor) for name, tensor in fine_tuned.state_dict().items() if name.startswith("vace"))
    assert editto.pipe.get_list_adapters() == {}
    branch_tensors = sum(name.startswith("vace") for name in fine_tuned.state_dict())
    assert f"whole weights, {branch_tensors} VACE-branch tensors" in editto.describe()[1]
    with pytest.raises(DittoError, match="cannot be weighted"):
        EdittoPipeline.from_pretrained(str(files["model"]), lora=str(branch), lora_scale=0.5, device="cpu")


def test_a_lora_that_does_not_fit_fails_before_the_model_loads(files, clips, tmp_path, capsys):
    """The model folder holds only the transformer config: had the pipeline been loaded first, the
    error would be about missing weights, not about the LoRA."""
    config_only = tmp_path / "config-only"
    (config_only / "transformer").mkdir(parents=True)
    shutil.copy(files["model"] / "transformer" / "config.json", config_only / "transformer" / "config.json")
    wide = tmp_path / "wide.safetensors"
    save_file({"vace_blocks.0.ffn.0.lora_A.weight": torch.zeros(4, 48), "vace_blocks.0.ffn.0.lora_B.weight": torch.zeros(32, 4)}, wide)
    output = tmp_path / "out.mp4"
    code, err = edit(str(clips["orbit"]), INSTRUCTION, "-o", str(output), "--model", str(config_only), "--lora", str(wide), capsys=capsys)
    assert code == 1 and not output.exists()
    assert err.count("\n") == 1 and err.startswith(f"Error: {wide} does not fit {config_only}")
    assert "vace_blocks.0.ffn.0.lora_A.weight: shape 4x48" in err


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("--preset", "slow"), "unknown preset 'slow': choose one of quality, fast"),
        (("--lora", "styles"), "unknown LoRA 'styles': use global, global_style, local, sim2real, a .safetensors file or none"),
        (("--lora", "missing.safetensors"), "missing.safetensors: no such file or folder"),
        (("--offload", "model", "--device", "cpu"), "--offload model moves models between the CPU and a CUDA device"),
        (("--num-frames", "6"), "num_frames must be 4k+1"),
        (("--width", "50"), "multiples of 16"),
    ],
)
def test_bad_options_are_one_line_errors_and_nothing_is_written(arguments, message, files, clips, tmp_path, capsys):
    output = tmp_path / "out.mp4"
    base = (str(clips["orbit"]), INSTRUCTION, "-o", str(output), "--model", str(files["model"]), "--lora", "none", "--steps", "1")
    code, err = edit(*base, *arguments, capsys=capsys)
    assert code == 1 and message in err and err.count("\n") == 1
    assert not output.exists() and list(tmp_path.iterdir()) == []


def test_a_bad_input_video_is_a_one_line_error(files, tmp_path, capsys):
    not_a_video = tmp_path / "clip.mp4"
    not_a_video.write_text("hello")
    output = tmp_path / "out.mp4"
    code, err = edit(str(not_a_video), INSTRUCTION, "-o", str(output), "--model", str(files["model"]), capsys=capsys)
    assert code == 1 and err.count("\n") == 1 and f"{not_a_video}: cannot be opened as a video" in err
    assert not output.exists()
    code, err = edit(str(tmp_path / "absent.mp4"), INSTRUCTION, "-o", str(output), capsys=capsys)
    assert code == 1 and "absent.mp4: no such file" in err


def test_a_missing_ditto_lora_on_an_offline_machine_says_what_failed(files, clips, empty_hub_cache, tmp_path, capsys):
    code, err = edit(str(clips["orbit"]), INSTRUCTION, "-o", str(tmp_path / "out.mp4"), "--model", str(files["model"]), capsys=capsys)
    assert code == 1 and err.count("\n") == 1
    assert f"cannot download models/ditto_global.safetensors from the Hub repo {DITTO_REPO}" in err


def test_presets_are_the_official_settings():
    quality, fast = PRESETS["quality"], PRESETS["fast"]
    assert (quality.width, quality.height, quality.num_frames, quality.seed) == (832, 480, 73, 1)
    assert (quality.num_inference_steps, quality.guidance_scale, quality.flow_shift, quality.conditioning_scale) == (50, 5.0, 5.0, 1.0)
    assert quality.negative_prompt.startswith("色调艳丽，过曝") and quality.extra_loras == ()
    assert (fast.num_inference_steps, fast.guidance_scale, fast.flow_shift, fast.conditioning_scale, fast.scheduler) == (
        4,
        1.2,
        2.0,
        0.975,
        "unipc",
    )
    assert fast.extra_loras == (CAUSVID_LORA,) and CAUSVID_LORA.weight_name == "Wan21_CausVid_14B_T2V_lora_rank32_v2.safetensors"
