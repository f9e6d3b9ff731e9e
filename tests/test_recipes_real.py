"""The bundled recipes against what the real models and the published recipes say (no weights).

The tiny Wan checkpoints carry the real repos' scheduler configs, so a recipe's sampler settings are
checked on the scheduler the real model ships; the dry-run cost is checked against the recipes' own
per-stage estimates.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from lora_fixtures import write_lora
from test_stage_vace import make_inputs

from ditto_hf.edit.presets import CAUSVID_LORA, PRESETS
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.stage import StageContext
from ditto_hf.generate.run.recipe import bundled_recipes, load_recipe
from ditto_hf.generate.run.report import PAPER_GPU_MINUTES_PER_SAMPLE, CostEstimate
from ditto_hf.generate.stages import stage_class
from ditto_hf.generate.stages.vace import LORA_ADAPTER, VaceStage
from ditto_hf.tiny.wan import VACE_REPO, WAN22_REPO, real_config, real_scheduler, save_tiny_wan_vace

REAL_RECIPES = ("paper", "paper-full", "fast")


def stage_config(recipe: str, stage: str):
    spec = next(spec for spec in load_recipe(recipe).stages if spec.name == stage)
    return spec.build_config()


def test_the_real_recipes_are_bundled_and_valid():
    assert set(REAL_RECIPES) | {"tiny"} == set(bundled_recipes())
    for name in REAL_RECIPES:
        load_recipe(name).validate()


def test_fast_is_the_official_fast_recipe():
    """ComfyUI workflow: CausVid rank32 v2 LoRA at 1.0, UniPC 4 steps, guidance 1.2, shift 2, VACE strength 0.975."""
    vace, preset = stage_config("fast", "vace"), PRESETS["fast"]
    assert (vace.lora, vace.lora_weight_name, vace.lora_scale) == (CAUSVID_LORA.source, CAUSVID_LORA.weight_name, CAUSVID_LORA.scale)
    assert vace.lora_weight_name == "Wan21_CausVid_14B_T2V_lora_rank32_v2.safetensors" and vace.lora_scale == 1.0
    settings = (vace.num_inference_steps, vace.guidance_scale, vace.flow_shift, vace.conditioning_scale)
    assert settings == (4, 1.2, 2.0, 0.975)
    assert settings == (preset.num_inference_steps, preset.guidance_scale, preset.flow_shift, preset.conditioning_scale)
    assert real_config(VACE_REPO, "scheduler_config.json")["_class_name"] == "UniPCMultistepScheduler" and preset.scheduler == "unipc"


def test_paper_is_the_distilled_quantised_path_and_paper_full_the_full_steps():
    vace, refine, keyframe = (stage_config("paper", name) for name in ("vace", "refine", "keyframe"))
    assert vace.lora_weight_name == CAUSVID_LORA.weight_name and vace.num_inference_steps == 4
    assert (vace.width, vace.height) == (832, 480)  # generate at 480p ...
    assert (refine.width, refine.height, refine.refine_steps, refine.num_inference_steps) == (1280, 720, 4, 40)  # ... refine at 720p
    assert (refine.flow_shift, refine.guidance_scale, refine.expert_subfolder) == (12.0, 3.0, "transformer_2")
    for config in (vace, refine, keyframe):
        assert config.model.quantization is not None and config.model.quantization.backend == "torchao"
    full_vace, full_refine = stage_config("paper-full", "vace"), stage_config("paper-full", "refine")
    assert full_vace.lora is None and full_vace.model.quantization is None and full_refine.model.quantization is None
    assert (full_vace.num_inference_steps, full_vace.guidance_scale, full_vace.flow_shift) == (50, 5.0, 5.0)
    assert (full_vace.width, full_vace.height, full_vace.num_frames) == (1280, 720, 101)
    for name in REAL_RECIPES:
        assert stage_config(name, "refine").flow_shift == 12.0  # never the repo's 3.0
        assert stage_config(name, "depth").model.resolved_dtype() == torch.float32


def test_the_refine_recipes_start_where_ditto_s_enhancer_does():
    scheduler = real_scheduler(WAN22_REPO)
    for name in ("paper", "paper-full"):
        refine = stage_config(name, "refine")
        shifted = type(scheduler).from_config(scheduler.config, flow_shift=refine.flow_shift)
        assert refine.start_timestep(shifted) == 573
    assert stage_config("paper", "refine").start_timestep(scheduler) == 251  # what the repo's shift 3 would give


@pytest.fixture(scope="module")
def tiny_vace(tmp_path_factory) -> Path:
    return save_tiny_wan_vace(tmp_path_factory.mktemp("tiny-vace-real") / "vace")


def settings(scheduler) -> dict:
    return {key: value for key, value in scheduler.config.items() if not key.startswith("_")}


def test_the_fast_vace_settings_reach_the_pipeline_on_the_real_scheduler(tiny_vace, sample_clips, tmp_path):
    """The fast recipe's vace entry, with only the model, sizes and LoRA file swapped for tiny ones."""
    options = yaml.safe_load(bundled_recipes()["fast"].read_text())["stages"]["vace"]
    lora = write_lora(tmp_path / "loras" / options["lora_weight_name"], "comfy-main", scale=0.5)  # ComfyUI spelling, main blocks
    for key in ("estimate_seconds", "estimate_source"):
        options.pop(key)
    model = ModelSpec(str(tiny_vace), device="cpu", dtype="float32")
    tiny = {"model": model, "lora": str(lora.parent), "width": 64, "height": 32, "num_frames": 5, "max_sequence_length": 32}
    stage = VaceStage({**options, **tiny}, StageContext(work_dir=tmp_path, seed=7))
    stage.setup()
    assert stage.pipeline.get_list_adapters() == {"transformer": [LORA_ADAPTER]}
    scheduler = stage.pipeline.scheduler
    expected = type(real_scheduler(VACE_REPO)).from_config(real_config(VACE_REPO, "scheduler_config.json"), flow_shift=2.0)
    assert type(scheduler).__name__ == "UniPCMultistepScheduler" and settings(scheduler) == settings(expected)
    calls: list[tuple[float, list[float]]] = []
    hook = stage.pipeline.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((float(kwargs["timestep"][0]), kwargs["control_hidden_states_scale"].tolist())),
        with_kwargs=True,
    )
    sample = make_inputs(tmp_path, {clip.stem: clip for clip in sample_clips}["orbit"])
    try:
        stage.process([sample])
    finally:
        hook.remove()
    assert sample.ok, sample.error
    expected.set_timesteps(4)
    timesteps = [timestep for timestep, _ in calls]
    assert timesteps[::2] == timesteps[1::2] == expected.timesteps.tolist()  # guidance 1.2: two passes per step
    assert all(scales == [pytest.approx(0.975)] * len(scales) for _, scales in calls)


def expected_minutes_per_kept(name: str) -> float:
    """GPU-minutes per kept sample from the recipe file itself: each stage's seconds x GPUs,
    weighted by the share of clips the earlier filters pass on, over the share kept."""
    stages = yaml.safe_load(bundled_recipes()[name].read_text())["stages"]
    total, reach = 0.0, 1.0
    for stage, entry in stages.items():
        total += entry["estimate_seconds"] * stage_class(stage).resources.gpus * reach
        reach *= entry.get("pass_rate", 1.0)
    return total / reach / 60


def test_the_dry_run_cost_comes_from_the_recipe_estimates():
    cost = {name: CostEstimate.of(load_recipe(name)) for name in REAL_RECIPES}
    for name, estimate in cost.items():
        assert estimate.gpu_minutes_per_kept == pytest.approx(expected_minutes_per_kept(name))
        assert not estimate.missing
        assert all(stage.source for stage in estimate.stages), f"{name}: a stage estimate without a source"
    assert cost["paper"].gpu_minutes_per_kept <= PAPER_GPU_MINUTES_PER_SAMPLE  # the paper's distilled, quantised figure
    assert cost["paper-full"].gpu_minutes_per_kept >= 5 * cost["paper"].gpu_minutes_per_kept


def test_dry_run_prints_gpu_seconds_per_stage_with_sources_and_the_total_per_kept_sample(sample_clips, capsys, monkeypatch):
    from ditto_hf.cli import main

    monkeypatch.setenv("COLUMNS", "400")
    main(["generate", "--input", str(sample_clips[0].parent), "--output", "unused", "--recipe", "paper", "--dry-run"])
    output = " ".join(capsys.readouterr().err.split())
    assert f"{expected_minutes_per_kept('paper'):.2f} GPU-min per kept sample" in output
    assert "estimates for H100 80GB" in output and "Wan-AI/Wan2.1-VACE-14B-diffusers (float8dq)" in output
    assert "scaled from paper-full's 240 s" in output  # the refine estimate's source
    assert not Path("unused").exists()
