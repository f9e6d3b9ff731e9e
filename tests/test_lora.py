"""``ditto_hf.lora``: Wan LoRAs of every known spelling, converted for diffusers, checked, written and
loaded, compared with a DiffSynth-style merge into a tiny Wan2.1-VACE transformer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from lora_fixtures import (
    SPELLINGS,
    diffsynth_merge,
    lora_state_dict,
    run_transformer,
    transformer_inputs,
    write_lora,
    write_vace_branch,
)
from safetensors.torch import load_file, save_file

from ditto_hf.cli import main
from ditto_hf.errors import DittoError
from ditto_hf.lora import (
    LoraMismatchError,
    LoraSpec,
    TransformerLayout,
    apply_adapters,
    convert_lora,
    convert_weights,
    load_adapters,
    load_weights,
    prepare_adapters,
    read_weights,
)
from ditto_hf.tiny.wan import save_tiny_wan_vace, tiny_wan_vace_transformer


@pytest.fixture(scope="module")
def tiny_vace(tmp_path_factory) -> Path:
    """A tiny Wan2.1-VACE pipeline saved like the Hub repo (transformer from seed 0)."""
    return save_tiny_wan_vace(tmp_path_factory.mktemp("lora") / "vace")


@pytest.fixture(scope="module")
def layout() -> TransformerLayout:
    return TransformerLayout.from_module(tiny_wan_vace_transformer(), "tiny VACE")


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    return transformer_inputs()


def load_pipeline(directory: Path):
    from diffusers import WanVACEPipeline

    return WanVACEPipeline.from_pretrained(directory, dtype=torch.float32)


def merged_output(loras: list[tuple[dict, float]], inputs) -> torch.Tensor:
    """The transformer output after merging each (LoRA, weight) the DiffSynth way."""
    transformer = tiny_wan_vace_transformer()
    for lora, weight in loras:
        transformer.load_state_dict(diffsynth_merge(transformer, lora, weight), strict=True)
    return run_transformer(transformer, inputs)


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_every_spelling_gives_the_output_of_a_diffsynth_merge(spelling, tiny_vace, inputs, tmp_path):
    lora = lora_state_dict(spelling)
    path = write_lora(tmp_path / f"{spelling}.safetensors", spelling)
    expected = merged_output([(lora, 0.5)], inputs)
    base = run_transformer(tiny_wan_vace_transformer(), inputs)
    assert (expected - base).abs().max() > 1e-3  # the LoRA matters

    pipe = load_pipeline(tiny_vace)
    (prepared,) = load_adapters(pipe, [LoraSpec(str(path), scale=0.5, adapter_name="ditto")])
    assert pipe.get_list_adapters() == {"transformer": ["ditto"]}
    unfused = run_transformer(pipe.transformer, inputs)
    assert (unfused - expected).abs().max() < 1e-5  # B @ (A @ x) against (W + B @ A) @ x: float rounding only
    pipe.fuse_lora(components=["transformer"])  # W + w * B @ A in place: DiffSynth's arithmetic
    assert torch.equal(run_transformer(pipe.transformer, inputs), expected)
    assert prepared.lora.branches == (("main",) if spelling == "comfy-main" else ("vace",))


@pytest.mark.parametrize(
    "spelling, described",
    [
        ("diffsynth", "Wan/DiffSynth names, lora_A/lora_B, 20 layers (rank 4) on the VACE branch"),
        ("diffsynth-prefixed", "Wan/DiffSynth names, lora_A/lora_B, prefix diffusion_model., 20 layers (rank 4) on the VACE branch"),
        ("vace-attached", "Wan/DiffSynth names, VACE blocks as blocks.L.vace, lora_A/lora_B, 20 layers"),
        ("down-up-alpha", "Wan/DiffSynth names, lora_down/lora_up, alpha, 20 layers"),
        ("comfy-main", "lora_down/lora_up, alpha, prefix diffusion_model., 30 layers (rank 4) on the main blocks; ignored 9 weight delta"),
        ("diffusers", "diffusers names, 20 layers (rank 4) on the VACE branch"),
    ],
)
def test_the_spelling_is_recognised_and_described(spelling, described, layout):
    converted = convert_lora(lora_state_dict(spelling), layout, source="file.safetensors")
    assert described in converted.describe()
    assert all(key.startswith("transformer.") and ".lora_" in key for key in converted.state_dict)


def test_a_ditto_lora_and_a_causvid_lora_work_together(tiny_vace, inputs, tmp_path):
    ditto, causvid = lora_state_dict("diffsynth-prefixed", seed=1), lora_state_dict("comfy-main", seed=2)
    specs = [
        LoraSpec(str(write_lora(tmp_path / "ditto.safetensors", "diffsynth-prefixed", seed=1)), scale=0.5, adapter_name="ditto"),
        LoraSpec(str(write_lora(tmp_path / "causvid.safetensors", "comfy-main", seed=2)), scale=1.0, adapter_name="causvid"),
    ]
    pipe = load_pipeline(tiny_vace)
    load_adapters(pipe, specs)
    assert pipe.get_list_adapters() == {"transformer": ["ditto", "causvid"]}
    pipe.fuse_lora(components=["transformer"])
    assert torch.equal(run_transformer(pipe.transformer, inputs), merged_output([(ditto, 0.5), (causvid, 1.0)], inputs))


def test_main_block_keys_convert_as_diffusers_own_wan_conversion_does(layout, tmp_path):
    """For ComfyUI main-block files (what diffusers already reads) both conversions give the same layers."""
    from diffusers import WanVACEPipeline

    state = lora_state_dict("comfy-main")
    ours = convert_lora(state, layout, source="causvid").state_dict
    theirs = WanVACEPipeline.lora_state_dict(dict(state))

    def deltas(lora: dict) -> dict[str, torch.Tensor]:
        layers = {key.removesuffix(".lora_A.weight") for key in lora if key.endswith(".lora_A.weight")}
        result = {layer: lora[f"{layer}.lora_B.weight"] @ lora[f"{layer}.lora_A.weight"] for layer in layers}
        result.update(
            {f"{layer}.bias": lora.get(f"{layer}.lora_B.bias", torch.zeros(lora[f"{layer}.lora_B.weight"].shape[0])) for layer in layers}
        )
        return result

    ours_deltas, theirs_deltas = deltas(ours), deltas(theirs)
    assert set(ours_deltas) == set(theirs_deltas)
    assert all(torch.equal(ours_deltas[name], theirs_deltas[name]) for name in ours_deltas)


def test_a_full_weight_delta_of_a_linear_layer_is_kept_exactly_and_norm_deltas_are_reported(layout):
    delta = torch.randn(64, 24)
    state = {
        "diffusion_model.head.head.diff": delta,
        "diffusion_model.blocks.0.norm3.diff": torch.full((24,), 0.25),
        "diffusion_model.blocks.0.norm3.diff_b": torch.zeros(24),
        "diffusion_model.blocks.1.diff_m": torch.zeros(1, 6, 24),
        "diffusion_model.head.modulation.diff": torch.zeros(1, 2, 24),
        "diffusion_model.patch_embedding.diff_b": torch.zeros(24),
    }
    converted = convert_lora(state, layout, source="deltas.safetensors")
    lora = converted.state_dict
    assert torch.equal(lora["transformer.proj_out.lora_B.weight"] @ lora["transformer.proj_out.lora_A.weight"], delta)
    assert set(converted.dropped) == set(state) - {"diffusion_model.head.head.diff"}
    assert "ignored 5 weight delta(s)" in converted.describe() and "largest |delta| 0.25" in converted.describe()


def test_deltas_of_parameters_the_model_lacks_or_of_the_wrong_shape_are_errors(layout):
    """A delta is only ever skipped when it names a parameter of the model with its shape."""
    state = {
        "diffusion_model.head.head.diff": torch.randn(64, 24),
        "diffusion_model.blocks.0.cross_attn.norm_k_img.diff": torch.zeros(24),  # an image-to-video model's norm
        "diffusion_model.blocks.7.norm3.diff": torch.zeros(24),  # the tiny model has 3 blocks
        "diffusion_model.blocks.0.diff_m": torch.zeros(1, 6, 48),
    }
    with pytest.raises(LoraMismatchError) as caught:
        convert_lora(state, layout, source="i2v.safetensors")
    message = str(caught.value)
    assert "3 problem(s)" in message
    assert "blocks.0.cross_attn.norm_k_img.diff: no parameter blocks.0.cross_attn.norm_k_img in the model" in message
    assert "blocks.7.norm3.diff: no parameter blocks.7.norm3" in message
    assert "blocks.0.diff_m: shape 1x6x48, the model's blocks.0.scale_shift_table is 1x6x24" in message


def test_keys_that_cannot_be_placed_are_one_error_naming_the_file_and_the_keys(layout):
    good = lora_state_dict("diffsynth")
    bad = {
        **good,
        "vace_blocks.5.self_attn.q.lora_A.default.weight": torch.zeros(4, 24),  # the tiny model has 2 VACE blocks
        "vace_blocks.5.self_attn.q.lora_B.default.weight": torch.zeros(24, 4),
        "blocks.1.vace.ffn.0.lora_A.weight": torch.zeros(4, 24),  # main block 1 has no VACE block (vace_layers [0, 2])
        "blocks.1.vace.ffn.0.lora_B.weight": torch.zeros(32, 4),
        "text_encoder.lora_A.weight": torch.zeros(4, 24),
        "unet.conv_in.weight": torch.zeros(4),
    }
    del bad["vace_blocks.1.ffn.2.lora_B.default.weight"]
    with pytest.raises(LoraMismatchError) as caught:
        convert_lora(bad, layout, source="ditto_local.safetensors")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("ditto_local.safetensors does not fit tiny VACE (3 blocks, VACE blocks at [0, 2]): 7 problem(s)")
    named = [
        "unet.conv_in.weight: not a LoRA key",
        "vace_blocks.5.self_attn.q.lora_A.default.weight: no layer vace_blocks.5.attn1.to_q",
        "vace_blocks.5.self_attn.q.lora_B.default.weight: no layer",
        "blocks.1.vace.ffn.0.lora_A.weight: no layer blocks.1.vace.ffn.0",
        "blocks.1.vace.ffn.0.lora_B.weight: no layer",
        "text_encoder.lora_A.weight: no layer text_encoder",
        "vace_blocks.1.ffn.2.lora_A.default.weight: lora_B missing for the layer vace_blocks.1.ffn.net.2",
    ]
    assert sum(problem in message for problem in named) == 6  # six listed, the rest counted
    assert "and 1 more" in message  # six listed, the rest counted


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"vace_blocks.0.ffn.0.lora_A.default.weight": torch.zeros(4, 48)}, "vace_blocks.0.ffn.0.lora_A.default.weight: shape 4x48"),
        ({"vace_blocks.0.ffn.0.lora_B.default.weight": torch.zeros(32, 8)}, "vace_blocks.0.ffn.0.lora_B.default.weight: shape 32x8"),
        ({"vace_blocks.0.ffn.0.alpha": torch.ones(2)}, "an alpha must be one number"),
    ],
)
def test_shapes_that_do_not_fit_are_errors(change, expected, layout):
    with pytest.raises(LoraMismatchError, match=expected):
        convert_lora({**lora_state_dict("diffsynth"), **change}, layout, source="wrong.safetensors")


def test_the_default_layout_is_wan_vace_14b():
    layout = TransformerLayout.for_model()
    assert layout.vace_layers == (0, 5, 10, 15, 20, 25, 30, 35) and layout.num_layers == 40
    assert layout.linears["vace_blocks.7.attn1.to_q"] == (5120, 5120)
    assert layout.linears["blocks.39.ffn.net.0.proj"] == (13824, 5120)
    rank_one = {
        "blocks.35.vace.self_attn.q.lora_A.weight": torch.zeros(1, 5120),
        "blocks.35.vace.self_attn.q.lora_B.weight": torch.zeros(5120, 1),
    }
    assert set(convert_lora(rank_one, layout, source="x").ranks) == {"vace_blocks.7.attn1.to_q"}
    with pytest.raises(LoraMismatchError, match=r"blocks\.36\.vace\.self_attn\.q\.lora_A\.weight: no layer"):
        convert_lora({key.replace("35", "36"): value for key, value in rank_one.items()}, layout, source="x")
    with pytest.raises(LoraMismatchError, match="wants rank x 5120"):  # a LoRA of the tiny model
        convert_lora(lora_state_dict("diffsynth"), layout, source="tiny.safetensors")


def test_nothing_is_loaded_when_one_of_several_files_does_not_fit(tiny_vace, tmp_path):
    good = LoraSpec(str(write_lora(tmp_path / "good.safetensors", "diffsynth")), adapter_name="good")
    bad_path = tmp_path / "bad.safetensors"
    save_file({"vace_blocks.9.ffn.0.lora_A.weight": torch.zeros(4, 24), "vace_blocks.9.ffn.0.lora_B.weight": torch.zeros(32, 4)}, bad_path)
    pipe = load_pipeline(tiny_vace)
    with pytest.raises(LoraMismatchError, match="bad.safetensors"):
        load_adapters(pipe, [good, LoraSpec(str(bad_path), adapter_name="bad")])
    assert pipe.get_list_adapters() == {}


def test_only_safetensors_files_are_read(tmp_path):
    torch.save({"a": torch.zeros(1)}, tmp_path / "lora.pt")
    with pytest.raises(DittoError, match="safetensors files only"):
        read_weights(tmp_path / "lora.pt")
    with pytest.raises(DittoError, match="absent.safetensors: no such file"):
        read_weights(tmp_path / "absent.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DittoError, match="not a readable safetensors file"):
        read_weights(tmp_path / "broken.safetensors")


# --- the converted file in plain diffusers ---------------------------------------------------------------------

PLAIN_DIFFUSERS = """
import json, sys
import torch
from diffusers import WanVACEPipeline
from safetensors.torch import load_file, save_file

model, lora, inputs, output = sys.argv[1:5]
pipe = WanVACEPipeline.from_pretrained(model, dtype=torch.float32)
pipe.load_lora_weights(lora, adapter_name="ditto")
pipe.set_adapters(["ditto"], [0.5])
with torch.no_grad():
    result = pipe.transformer(**load_file(inputs), return_dict=False)[0]
save_file({"output": result.contiguous()}, output)
print(json.dumps({"ditto_hf_imported": any(name.split(".")[0] == "ditto_hf" for name in sys.modules)}))
"""


def test_a_converted_file_loads_in_plain_diffusers(tiny_vace, inputs, tmp_path, capsys):
    source = write_lora(tmp_path / "ditto_global.safetensors", "vace-attached")
    target = tmp_path / "out" / "ditto_global_diffusers.safetensors"
    main(["lora", "convert", str(source), str(target), "--model", str(tiny_vace)])
    assert "wrote" in capsys.readouterr().err and target.is_file()

    save_file(inputs, tmp_path / "inputs.safetensors")
    script = [sys.executable, "-c", textwrap.dedent(PLAIN_DIFFUSERS), str(tiny_vace), str(target)]
    result = subprocess.run(
        [*script, str(tmp_path / "inputs.safetensors"), str(tmp_path / "output.safetensors")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"ditto_hf_imported": False}
    plain = load_file(tmp_path / "output.safetensors")["output"]

    pipe = load_pipeline(tiny_vace)
    load_adapters(pipe, [LoraSpec(str(source), scale=0.5, adapter_name="ditto")])
    assert torch.equal(plain, run_transformer(pipe.transformer, inputs))  # same file, same arithmetic
    assert (plain - merged_output([(lora_state_dict("vace-attached"), 0.5)], inputs)).abs().max() < 1e-5


def convert_cli(*args: str, capsys) -> tuple[int, str]:
    try:
        main(["lora", "convert", *args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def test_convert_refuses_a_lora_that_does_not_fit_and_writes_nothing(tiny_vace, tmp_path, capsys):
    source = tmp_path / "wide.safetensors"
    save_file(
        {"vace_blocks.0.self_attn.q.lora_A.weight": torch.zeros(4, 48), "vace_blocks.0.self_attn.q.lora_B.weight": torch.zeros(24, 4)},
        source,
    )
    target = tmp_path / "out.safetensors"
    code, err = convert_cli(str(source), str(target), "--model", str(tiny_vace), capsys=capsys)
    assert code == 1 and not target.exists() and list(tmp_path.iterdir()) == [source]
    assert err.count("\n") == 1 and err.startswith(f"Error: {source} does not fit {tiny_vace}")
    assert "vace_blocks.0.self_attn.q.lora_A.weight: shape 4x48" in err


def test_convert_without_model_checks_against_wan_vace_14b(tmp_path, capsys):
    source = write_lora(tmp_path / "tiny.safetensors", "diffsynth")
    code, err = convert_cli(str(source), str(tmp_path / "out.safetensors"), capsys=capsys)
    assert code == 1 and "does not fit Wan2.1-VACE-14B (40 blocks, VACE blocks at [0, 5, 10, 15, 20, 25, 30, 35])" in err


def test_convert_refuses_whole_weights(tmp_path, capsys):
    branch = write_vace_branch(tmp_path / "ditto_global_comfy.safetensors", tiny_wan_vace_transformer())
    code, err = convert_cli(str(branch), str(tmp_path / "out.safetensors"), capsys=capsys)
    assert code == 1 and "holds whole weights, not a LoRA" in err


# --- whole VACE-branch files (ComfyUI) -----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "diffusion_model."])
def test_a_whole_vace_branch_file_replaces_the_vace_branch(prefix, layout, inputs, tmp_path):
    fine_tuned = tiny_wan_vace_transformer(seed=3)
    path = write_vace_branch(tmp_path / "branch.safetensors", fine_tuned, prefix=prefix)
    target = tiny_wan_vace_transformer(seed=0)
    main_before = {name: tensor.clone() for name, tensor in target.state_dict().items() if not name.startswith("vace")}
    load_weights(target, convert_weights(read_weights(path), layout, source=str(path)))
    after = target.state_dict()
    for name, tensor in fine_tuned.state_dict().items():
        expected = tensor if name.startswith(("vace_blocks.", "vace_patch_embedding.")) else main_before[name]
        assert torch.equal(after[name], expected), name
    reference = tiny_wan_vace_transformer(seed=0)
    reference.load_state_dict({**main_before, **{k: v for k, v in fine_tuned.state_dict().items() if k.startswith("vace")}})
    assert torch.equal(run_transformer(target, inputs), run_transformer(reference, inputs))


def test_a_vace_branch_file_missing_a_tensor_or_with_a_wrong_shape_is_an_error(layout, tmp_path):
    path = write_vace_branch(tmp_path / "branch.safetensors", tiny_wan_vace_transformer(seed=3))
    weights = load_file(path)
    del weights["vace_blocks.1.ffn.2.weight"]
    weights["vace_blocks.0.self_attn.q.weight"] = torch.zeros(24, 12)
    with pytest.raises(LoraMismatchError) as caught:
        convert_weights(weights, layout, source="branch.safetensors")
    assert "vace_blocks.1.ffn.net.2.weight: missing" in str(caught.value)
    assert "vace_blocks.0.self_attn.q.weight: shape (24, 12)" in str(caught.value)


def test_a_whole_weight_file_cannot_be_weighted(layout, tmp_path):
    path = write_vace_branch(tmp_path / "branch.safetensors", tiny_wan_vace_transformer(seed=3))
    with pytest.raises(DittoError, match="cannot be weighted"):
        prepare_adapters([LoraSpec(str(path), scale=0.5)], layout)


def test_weights_and_a_lora_load_together(tiny_vace, inputs, tmp_path):
    fine_tuned = tiny_wan_vace_transformer(seed=3)
    branch = write_vace_branch(tmp_path / "branch.safetensors", fine_tuned)
    causvid = write_lora(tmp_path / "causvid.safetensors", "comfy-main")
    pipe = load_pipeline(tiny_vace)
    layout = TransformerLayout.from_module(pipe.transformer)
    apply_adapters(pipe, prepare_adapters([LoraSpec(str(branch)), LoraSpec(str(causvid), adapter_name="causvid")], layout))
    reference = tiny_wan_vace_transformer(seed=0)
    reference.load_state_dict({k: v for k, v in fine_tuned.state_dict().items() if k.startswith("vace")}, strict=False)
    reference.load_state_dict(diffsynth_merge(reference, lora_state_dict("comfy-main")))
    pipe.fuse_lora(components=["transformer"])
    assert torch.equal(run_transformer(pipe.transformer, inputs), run_transformer(reference, inputs))
