"""``ModelSpec.quantization``: torchao through diffusers' / transformers' own ``quantization_config``.

int8 weight-only runs on CPU, so the tiny models prove the option reaches ``from_pretrained`` and the
quantised model still runs inside the stages; float8 is GPU-only and fails on CPU with one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from lora_fixtures import write_lora
from test_stage_refine import make_generated
from test_stage_vace import SIZE, make_inputs, predictions

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelRegistry, ModelSpec, Quantization
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import StageContext
from ditto_hf.generate.stages.refine import RefineStage
from ditto_hf.generate.stages.vace import VaceStage
from ditto_hf.tiny.qwen import save_tiny_qwen_vl
from ditto_hf.tiny.wan import save_tiny_wan_refiner, save_tiny_wan_vace
from ditto_hf.video import read_frames

INT8 = {"backend": "torchao", "type": "int8wo"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-quant")
    return {"vace": save_tiny_wan_vace(root / "vace"), "refiner": save_tiny_wan_refiner(root / "refiner")}


@pytest.fixture(scope="module")
def clips(sample_clips) -> dict[str, Path]:
    return {clip.stem: clip for clip in sample_clips}


def is_int8(weight: torch.Tensor) -> bool:
    from torchao.quantization import Int8Tensor

    return isinstance(weight, Int8Tensor)


def test_a_recipe_mapping_becomes_a_hashable_spec():
    spec = ModelSpec.coerce(yaml.safe_load("{id: some/model, quantization: {backend: torchao, type: int8wo, components: [transformer]}}"))
    assert spec.quantization == Quantization(type="int8wo", components=("transformer",))
    assert hash(spec) == hash(ModelSpec.coerce({"id": "some/model", "quantization": {"type": "int8wo", "components": ["transformer"]}}))
    assert spec.without_quantization(subfolder="vae").quantization is None
    assert ModelSpec("some/model", quantization="float8wo").quantization.type == "float8wo"


@pytest.mark.parametrize(
    "value, message",
    [({"type": "int3"}, "int3.*int8wo, int8dq, float8wo, float8dq"), ({"backend": "gguf"}, "backend 'gguf'.*torchao")],
)
def test_an_unknown_quantization_is_a_user_error(value, message):
    with pytest.raises(DittoError, match=message):
        ModelSpec("some/model", quantization=value)


def test_int8_reaches_from_pretrained_and_the_model_still_runs(checkpoints):
    from diffusers import WanTransformer3DModel

    registry = ModelRegistry()
    spec = ModelSpec(str(checkpoints["refiner"]), subfolder="transformer_2", device="cpu", dtype="float32")
    full = registry.load(WanTransformer3DModel, spec)
    quantised = registry.load(WanTransformer3DModel, spec.with_overrides(quantization=INT8))
    assert quantised.config.quantization_config.quant_method == "torchao"
    assert is_int8(quantised.blocks[0].attn1.to_q.weight) and not is_int8(full.blocks[0].attn1.to_q.weight)
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "hidden_states": torch.randn(1, 16, 2, 4, 4, generator=generator),
        "timestep": torch.tensor([500]),
        "encoder_hidden_states": torch.randn(1, 8, 32, generator=generator),
    }
    with torch.inference_mode():
        reference, output, again = (model(**inputs).sample for model in (full, quantised, quantised))
    assert torch.equal(output, again)  # deterministic
    assert not torch.equal(output, reference)  # the int8 weights are used ...
    relative = (output - reference).norm() / reference.norm()
    assert relative < 0.05, f"int8 weight-only error {relative:.4f}"  # ... and stay close to the float weights


def test_vace_quantises_its_transformer_only_and_runs(checkpoints, clips, tmp_path):
    spec = ModelSpec(str(checkpoints["vace"]), device="cpu", dtype="float32", quantization=INT8)
    stage = VaceStage({"model": spec, **SIZE}, StageContext(work_dir=tmp_path, seed=7))
    stage.setup()
    pipeline = stage.pipeline
    assert is_int8(pipeline.transformer.blocks[0].attn1.to_q.weight)
    assert is_int8(pipeline.transformer.vace_blocks[0].attn1.to_q.weight)
    assert not any(is_int8(weight) for weight in pipeline.vae.state_dict().values())  # the VAE stays in float32
    assert not any(is_int8(weight) for weight in pipeline.text_encoder.state_dict().values())  # not listed
    sample = make_inputs(tmp_path, clips["orbit"])
    stage.process([sample])
    assert sample.ok, sample.error
    first = read_frames(tmp_path / sample.generated)
    rerun = Sample.from_dict({**sample.to_dict(), "generated": ""})
    stage.process([rerun])
    assert torch.equal(read_frames(tmp_path / rerun.generated), first)


def test_vace_fuses_a_lora_into_the_weights_then_quantises(checkpoints, clips, tmp_path):
    """A quantised transformer cannot take a LoRA (peft's torchao layers refuse the converter's
    biases): the stage loads full precision, fuses the weighted LoRA, then quantises."""
    lora = write_lora(tmp_path / "loras" / "causvid.safetensors", "comfy-main", scale=0.5)
    sample = make_inputs(tmp_path, clips["orbit"])

    def run(lora_file: Path | None, quantization: dict | None) -> tuple[VaceStage, torch.Tensor]:
        spec = ModelSpec(str(checkpoints["vace"]), device="cpu", dtype="float32", quantization=quantization)
        options = {"model": spec, **SIZE, "lora": None if lora_file is None else str(lora_file), "lora_scale": 0.7}
        stage = VaceStage(options, StageContext(work_dir=tmp_path, seed=7))
        stage.setup()
        return stage, predictions(stage, Sample.from_dict({**sample.to_dict(), "generated": ""}))

    _, base = run(None, None)
    _, with_lora = run(lora, None)
    stage, fused = run(lora, INT8)
    assert stage.pipeline.get_list_adapters() == {}  # fused: no adapter layers left
    assert is_int8(stage.pipeline.transformer.blocks[0].attn1.to_q.weight)
    relative = (fused - with_lora).norm() / with_lora.norm()
    assert relative < 0.05, f"fused int8 vs LoRA in float32: {relative:.4f}"
    assert (fused - with_lora).norm() < 0.5 * (fused - base).norm()  # the LoRA (at its weight) is in the fused weights


def test_refine_quantises_the_expert_it_loads(checkpoints, clips, tmp_path):
    spec = ModelSpec(str(checkpoints["refiner"]), device="cpu", dtype="float32", quantization=INT8)
    options = {"num_inference_steps": 4, "strength": 0.25, "guidance_scale": 1.0, "max_sequence_length": 32, "width": 64, "height": 32}
    stage = RefineStage({"model": spec, **options}, StageContext(work_dir=tmp_path))
    stage.setup()
    assert is_int8(stage.pipeline.transformer.blocks[0].attn1.to_q.weight)
    sample = make_generated(tmp_path, clips["orbit"], (64, 32))
    stage.process([sample])
    assert sample.ok, sample.error


def test_a_transformers_model_gets_the_transformers_config(tmp_path):
    """Qwen2.5-VL (the VLM stages) is a transformers model: quantised through transformers' TorchAoConfig."""
    from transformers import AutoModelForImageTextToText

    folder = save_tiny_qwen_vl(tmp_path / "qwen")
    model = ModelRegistry().load(AutoModelForImageTextToText, ModelSpec(str(folder), device="cpu", dtype="float32", quantization=INT8))
    linears = [module.weight for module in model.modules() if isinstance(module, torch.nn.Linear)]
    assert any(is_int8(weight) for weight in linears)
    ids = torch.tensor([[1, 2, 3]])
    with torch.inference_mode():
        assert torch.isfinite(model(input_ids=ids).logits).all()


@pytest.mark.parametrize("kind", ["float8wo", "float8dq"])
def test_float8_on_cpu_fails_with_one_clear_line(kind, checkpoints):
    from diffusers import WanVACEPipeline

    spec = ModelSpec(str(checkpoints["vace"]), device="cpu", quantization={"type": kind})
    with pytest.raises(DittoError) as error:
        ModelRegistry().load(WanVACEPipeline, spec)
    message = str(error.value)
    assert "\n" not in message and kind in message and "CUDA" in message and "int8wo" in message


def test_float8_in_a_recipe_stops_the_cli_with_one_line(checkpoints, sample_clips, tmp_path, capsys):
    from ditto_hf.cli import main

    model = {"id": str(checkpoints["vace"]), "device": "cpu", "quantization": {"type": "float8wo"}}
    recipe = tmp_path / "fp8.yaml"
    recipe.write_text(yaml.safe_dump({"name": "fp8", "stages": {"vace": {"model": model, **SIZE}}}))
    with pytest.raises(SystemExit) as exit:
        main(["generate", "--input", str(sample_clips[0]), "--output", str(tmp_path / "run"), "--recipe", str(recipe)])
    assert exit.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "float8wo" in errors[0] and "int8wo" in errors[0]


def test_pipeline_components_follow_the_real_model_index():
    """On the real repos' model_index.json: each listed component the pipeline loads itself gets the
    config of its own library; components passed in (the refine expert) or unknown to the class are skipped."""
    from diffusers import TorchAoConfig as DiffusersTorchAoConfig
    from diffusers import WanVACEPipeline, WanVideoToVideoPipeline
    from transformers import TorchAoConfig as TransformersTorchAoConfig

    from ditto_hf.generate.contract.models import quantization_config_for
    from ditto_hf.tiny.wan import REAL_CONFIGS

    vace = ModelSpec(
        str(REAL_CONFIGS / "Wan2.1-VACE-14B-diffusers"), quantization={"type": "int8wo", "components": ["transformer", "text_encoder"]}
    )
    mapping = quantization_config_for(WanVACEPipeline, vace, True, {"vae": object()}).quant_mapping
    assert set(mapping) == {"transformer", "text_encoder"}
    assert isinstance(mapping["transformer"], DiffusersTorchAoConfig) and isinstance(mapping["text_encoder"], TransformersTorchAoConfig)
    wan22 = ModelSpec(str(REAL_CONFIGS / "Wan2.2-T2V-A14B-Diffusers"), quantization=INT8)
    assert quantization_config_for(WanVideoToVideoPipeline, wan22, True, {"transformer": object(), "vae": object()}) is None
