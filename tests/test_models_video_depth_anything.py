"""Video Depth Anything: key compatibility with the official checkpoints (names, shapes, dtypes),
the one-time conversion round trip, and the long-video scheme (sizes, windows, keyframes,
alignment) on inputs with known answers."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from ditto_hf.errors import DittoError
from ditto_hf.models import convert
from ditto_hf.models.video_depth_anything import (
    VARIANTS,
    WINDOW,
    VideoDepthAnything,
    align_windows,
    fit_scale_shift,
    window_frame_indices,
    working_size,
)
from ditto_hf.tiny.paper_filters import tiny_video_depth_anything

TABLES = Path(__file__).parent / "data" / "official_checkpoints"


def official_table(filename: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """``name -> (shape, dtype)`` of an official checkpoint.

    The tables list every tensor of the released files; they were enumerated from the reference
    implementations (DepthAnything/Video-Depth-Anything ``VideoDepthAnything``, facebookresearch/
    co-tracker ``build_cotracker``) instantiated at the released sizes, whose ``state_dict`` is
    what the published ``.pth`` files hold.
    """
    rows = (TABLES / f"{filename}.tsv").read_text().splitlines()[1:]
    table = {}
    for row in rows:
        name, shape, dtype = row.split("\t")
        table[name] = (tuple(int(side) for side in shape.split("x")), dtype)
    return table


def meta_state(table: dict) -> dict[str, torch.Tensor]:
    return {name: torch.empty(shape, dtype=getattr(torch, dtype), device="meta") for name, (shape, dtype) in table.items()}


# -- key compatibility at the real sizes ------------------------------------------------------------
@pytest.mark.parametrize(
    ("encoder", "tensors", "parameters"), [("vits", 351, 29_035_137), ("vitb", 351, 114_441_409), ("vitl", 519, 384_390_337)]
)
def test_every_official_tensor_maps_onto_the_architecture(encoder, tensors, parameters):
    table = official_table(f"video_depth_anything_{encoder}.pth")
    config, _ = VARIANTS[encoder]
    with torch.device("meta"):
        model = VideoDepthAnything(config)
    ours = {name: (tuple(value.shape), str(value.dtype).removeprefix("torch.")) for name, value in model.official_state_dict().items()}
    assert len(table) == tensors and ours == table
    assert sum(parameter.numel() for parameter in model.parameters()) == parameters
    state = meta_state(table)
    assert VideoDepthAnything.config_from_official(state, f"video_depth_anything_{encoder}.pth") == config
    assert {name: tuple(value.shape) for name, value in VideoDepthAnything.from_official(state).items()} == {
        name: tuple(value.shape) for name, value in model.state_dict().items()
    }


def test_licences_follow_the_release():
    assert {encoder: config.license for encoder, (config, _) in VARIANTS.items()} == {
        "vits": "Apache-2.0",
        "vitb": "CC-BY-NC-4.0",
        "vitl": "CC-BY-NC-4.0",
    }


# -- the one-time conversion ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_official(tmp_path_factory) -> tuple[VideoDepthAnything, Path]:
    """A tiny random model and its weights as an official-style ``.pth`` (official tensor names)."""
    model = tiny_video_depth_anything(seed=1)
    path = tmp_path_factory.mktemp("vda") / "video_depth_anything_tiny.pth"
    torch.save(model.official_state_dict(), path)
    return model, path


def test_official_checkpoint_round_trips_through_the_converter(tiny_official, tmp_path):
    model, checkpoint = tiny_official
    state = torch.load(checkpoint, weights_only=True)
    assert "pretrained.blocks.0.attn.qkv.weight" in state and "head.motion_modules.3.temporal_transformer.proj_out.bias" in state
    # the file's name does not say its size, so the converter is given the config; everything else is checked
    converted = VideoDepthAnything.convert_checkpoint(checkpoint, tmp_path / "converted", config=model.config)
    from safetensors.torch import load_file

    on_disk = load_file(converted)
    assert set(on_disk) == set(state) and all(torch.equal(on_disk[name], value) for name, value in state.items())  # names and values kept
    loaded = VideoDepthAnything.from_pretrained(str(tmp_path / "converted"))
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    clip = torch.randn(1, WINDOW, 3, 28, 42)
    with torch.no_grad():
        assert torch.equal(loaded(clip), model(clip))


def test_the_convert_command_checks_the_released_sizes(tiny_official, tmp_path):
    _, checkpoint = tiny_official
    with pytest.raises(SystemExit) as done:
        convert.main(["video-depth-anything", str(checkpoint), str(tmp_path / "out")], standalone_mode=True)
    assert done.value.code == 1  # a tiny encoder is no released size: the command says so in one line
    with pytest.raises(DittoError, match="encoder width 32 is not a released Video Depth Anything size"):
        VideoDepthAnything.convert_checkpoint(checkpoint, tmp_path / "out")


def test_converter_names_what_does_not_fit(tiny_official, tmp_path):
    model, checkpoint = tiny_official
    state = torch.load(checkpoint, weights_only=True)
    del state["head.scratch.output_conv1.bias"]
    state["head.extra.weight"] = torch.zeros(1)
    state["pretrained.norm.weight"] = torch.zeros(7)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(DittoError) as error:
        VideoDepthAnything.convert_checkpoint(broken, tmp_path / "out", config=model.config)
    message = str(error.value)
    assert message.startswith(f"{broken}: not a video-depth-anything checkpoint")
    assert "missing head.scratch.output_conv1.bias" in message and "unexpected head.extra.weight" in message
    assert "pretrained.norm.weight has shape (7,), expected (32,)" in message
    assert not (tmp_path / "out").exists()


class Payload:
    """An object a weights-only unpickler must refuse to build."""


def test_only_plain_tensors_are_unpickled(tmp_path):
    unsafe = tmp_path / "unsafe.pth"
    unsafe.write_bytes(pickle.dumps({"weight": Payload()}, protocol=2))
    with pytest.raises(DittoError, match=r"unsafe.pth: not a PyTorch state dict torch.load\(weights_only=True\) can read"):
        VideoDepthAnything.convert_checkpoint(unsafe, tmp_path / "out")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DittoError, match="garbage.pth: not a PyTorch state dict"):
        VideoDepthAnything.convert_checkpoint(garbage, tmp_path / "out")


def test_an_official_file_is_converted_once_into_the_cache(tiny_official, tmp_path, monkeypatch):
    model, checkpoint = tiny_official
    monkeypatch.setenv("DITTO_HF_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "release"
    folder.mkdir()
    # a folder holding the official file under its released name (here: the tiny weights under the Small name)
    monkeypatch.setattr(VideoDepthAnything, "config_from_official", classmethod(lambda cls, state, filename: model.config))
    (folder / "video_depth_anything_vits.pth").write_bytes(checkpoint.read_bytes())
    first = VideoDepthAnything.from_pretrained(str(folder))
    converted = list((tmp_path / "cache" / "converted").iterdir())
    assert [path.name.split("-")[0] for path in converted] == ["video_depth_anything_vits"]
    stamp = (converted[0] / "model.safetensors").stat().st_mtime_ns
    second = VideoDepthAnything.from_pretrained(str(folder / "video_depth_anything_vits.pth"))
    assert (converted[0] / "model.safetensors").stat().st_mtime_ns == stamp and len(list((tmp_path / "cache" / "converted").iterdir())) == 1
    assert all(torch.equal(second.state_dict()[name], value) for name, value in first.state_dict().items())


def test_missing_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(DittoError, match=r"holds neither model.safetensors nor an official video-depth-anything checkpoint"):
        VideoDepthAnything.from_pretrained(str(tmp_path))
    with pytest.raises(DittoError, match=r"no such video-depth-anything weights folder or file; convert .*video_depth_anything_vits.pth"):
        VideoDepthAnything.from_pretrained("./models/vda")
    with pytest.raises(DittoError, match=r"cannot get weights from 'depth-anything/Video-Depth-Anything-Small'"):
        VideoDepthAnything.from_pretrained("depth-anything/Video-Depth-Anything-Small")  # offline Hub, nothing cached


# -- the long-video scheme --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("width", "height", "input_size", "expected"),
    [
        (1280, 720, 518, (924, 518)),
        (720, 1280, 518, (518, 924)),
        (64, 32, 28, (56, 28)),
        (1000, 500, 518, (924, 462)),
        (518, 518, 518, (518, 518)),
    ],
)
def test_working_size_keeps_aspect_with_both_sides_at_least_the_input_size(width, height, input_size, expected):
    assert working_size(width, height, input_size) == expected


def test_windows_advance_by_22_and_start_with_the_previous_keyframes():
    assert window_frame_indices(9) == [list(range(9)) + [8] * 23]
    windows = window_frame_indices(60)
    assert len(windows) == 3 and all(len(window) == WINDOW for window in windows)
    assert windows[0] == list(range(32))
    # clip frame 0, the previous window's frame 12, its last 8 frames, then 22 new frames
    assert windows[1] == [0, 12, *range(24, 32), *range(32, 54)]
    assert windows[2] == [0, 34, *range(46, 54), *range(54, 60), *[59] * 16]
    assert len(window_frame_indices(22)) == 1 and len(window_frame_indices(23)) == 2


def test_alignment_undoes_each_windows_scale_and_shift():
    """Windows that see the true depth under their own scale and shift are chained back exactly."""
    torch.manual_seed(0)
    truth = torch.rand(60, 6, 8) + 0.5
    affine = [(1.0, 0.0), (2.5, -0.3), (0.4, 0.7)]
    windows = [truth[indices] * scale + shift for indices, (scale, shift) in zip(window_frame_indices(60), affine, strict=True)]
    assert torch.allclose(align_windows(iter(windows), 60), truth, atol=1e-5)


def test_overlap_is_crossfaded_linearly_into_the_next_window():
    truth = torch.ones(40, 2, 2)
    first, second = window_frame_indices(40)
    later = truth[second].clone()
    later[2:10] += 7.0  # frames 24-31 seen differently by the second window; its keyframes (positions 0, 1) agree
    aligned = align_windows([truth[first], later], 40)
    weights = torch.arange(8) / 7
    assert torch.allclose(aligned[24:32, 0, 0], 1 + 7 * weights, atol=1e-6)
    assert torch.equal(aligned[:24], truth[:24]) and torch.equal(aligned[32:], truth[32:])


def test_aligned_depth_is_clamped_at_zero_and_flat_frames_only_shift():
    assert fit_scale_shift(torch.full((3, 3), 2.0), torch.full((3, 3), 5.0)) == (1.0, 3.0)
    first, second = window_frame_indices(24)
    reference = torch.ones(24, 1, 3)
    later = torch.ones(32, 1, 3)
    later[:, 0, 2] = -5.0  # after the fit some values fall below zero
    aligned = align_windows([reference[first], later], 24)
    assert aligned.min() >= 0 and aligned.shape == (24, 1, 3)


def test_predict_video_runs_the_scheme_on_the_model(tiny_official):
    model, _ = tiny_official
    torch.manual_seed(3)
    frames = torch.randint(0, 256, (50, 3, 32, 64), dtype=torch.uint8)
    depth = model.predict_video(frames, input_size=28)
    assert depth.shape == (50, 32, 64) and depth.dtype == torch.float32 and depth.min() >= 0
    assert torch.equal(depth, model.predict_video(frames, input_size=28))  # same bytes on a rerun
    # the first 22 frames are the first window's prediction, resized to the frame
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    clip = torch.nn.functional.interpolate(frames[:32].float() / 255, size=(28, 56), mode="bicubic", align_corners=False)
    with torch.no_grad():
        window = model(((clip - mean) / std)[None])[0]
    resized = torch.nn.functional.interpolate(window[:, None], size=(32, 64), mode="bilinear", align_corners=True)[:, 0]
    assert torch.allclose(depth[:22], resized[:22], atol=1e-5)
    assert not torch.allclose(depth[0], depth[21])
