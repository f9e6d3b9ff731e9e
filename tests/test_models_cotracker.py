"""CoTracker3: key compatibility with ``scaled_offline.pth`` / ``scaled_online.pth``, the conversion
round trip, and the predictor logic (resizing, query frame, visibility rules, windows) on inputs
with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from test_models_video_depth_anything import meta_state, official_table

from ditto_hf.errors import DittoError
from ditto_hf.models import convert
from ditto_hf.models.cotracker import (
    CoTracker3,
    CoTracker3Config,
    fourier_encoding,
    neighbourhood,
    sample_features,
    sincos_time_embedding,
)
from ditto_hf.tiny.paper_filters import tiny_cotracker3


# -- key compatibility at the real sizes ------------------------------------------------------------
@pytest.mark.parametrize(("filename", "mode", "window"), [("scaled_offline.pth", "offline", 60), ("scaled_online.pth", "online", 16)])
def test_every_official_tensor_maps_onto_the_architecture(filename, mode, window):
    table = official_table(filename)
    config = CoTracker3.config_from_official(meta_state(table), filename)
    assert config == CoTracker3Config(mode=mode, window_len=window, license="CC-BY-NC-4.0")
    with torch.device("meta"):
        model = CoTracker3(config)
    ours = {name: (tuple(value.shape), str(value.dtype).removeprefix("torch.")) for name, value in model.official_state_dict().items()}
    assert len(table) == 188 and ours == table
    assert sum(parameter.numel() for parameter in model.parameters()) == 25_385_700
    assert set(CoTracker3.from_official(meta_state(table))) == set(model.state_dict())


def test_mode_comes_from_the_file_name_or_is_asked_for():
    state = meta_state(official_table("scaled_online.pth"))
    assert CoTracker3.config_from_official(state, "baseline_online.pth").mode == "online"
    assert CoTracker3.config_from_official(state, "weights.pth", mode="online").window_len == 16
    with pytest.raises(DittoError, match="cannot tell offline from online"):
        CoTracker3.config_from_official(state, "weights.pth")
    with pytest.raises(DittoError, match="not a CoTracker3 checkpoint"):
        CoTracker3.config_from_official({"x": torch.zeros(1)}, "scaled_offline.pth")


# -- conversion ---------------------------------------------------------------------------------------
def test_official_checkpoint_round_trips_through_the_convert_command(tmp_path):
    model = tiny_cotracker3("online", seed=2)
    checkpoint = tmp_path / "weights.pth"
    state = model.official_state_dict()
    assert "updateformer.virual_tracks" in state and "updateformer.virtual_tracks" not in state  # the official spelling on disk
    torch.save(state, checkpoint)
    with pytest.raises(SystemExit) as done:  # the tiny widths are given by the config; the mode by --mode
        convert.main(["cotracker3", str(checkpoint), str(tmp_path / "out"), "--mode", "online"])
    assert done.value.code == 1  # ... but the command only knows the released widths
    CoTracker3.convert_checkpoint(checkpoint, tmp_path / "out", config=model.config)
    loaded = CoTracker3.from_pretrained(str(tmp_path / "out"))
    assert loaded.config == model.config
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    video = torch.rand(1, 20, 3, 32, 48) * 255
    queries = torch.tensor([[[0.0, 5.0, 7.0], [0.0, 30.0, 20.0]]])
    outputs, again = model(video, queries, iterations=2), loaded(video, queries, iterations=2)
    assert all(torch.equal(a, b) for a, b in zip(outputs, again, strict=True))


# -- sampling helpers ---------------------------------------------------------------------------------
def test_bilinear_sampling_uses_pixel_centre_coordinates():
    ys, xs = torch.meshgrid(torch.arange(6.0), torch.arange(9.0), indexing="ij")
    features = torch.stack([xs, 10 * ys])[None]  # channel 0 = x, channel 1 = 10·y
    coords = torch.tensor([[[0.0, 0.0], [8.0, 5.0], [2.25, 3.5]]])
    assert torch.allclose(sample_features(features, coords), torch.tensor([[[0.0, 0.0], [8.0, 50.0], [2.25, 35.0]]]))
    assert torch.allclose(sample_features(features, torch.tensor([[[-3.0, 9.0]]])), torch.tensor([[[0.0, 50.0]]]))  # border


def test_neighbourhood_orders_x_along_the_first_axis():
    offsets = neighbourhood(1)
    assert offsets.shape == (3, 3, 2)
    assert offsets[0, 2].tolist() == [-1.0, 1.0] and offsets[2, 0].tolist() == [1.0, -1.0] and offsets[1, 1].tolist() == [0.0, 0.0]


def test_fourier_and_time_encodings():
    x = torch.tensor([[0.5, -0.25]])
    encoded = fourier_encoding(x, octaves=2)
    scaled = torch.tensor([0.5, -0.25, 1.0, -0.5])
    assert torch.allclose(encoded, torch.cat([x[0], torch.sin(scaled), torch.cos(scaled)])[None], atol=1e-6)
    assert fourier_encoding(torch.zeros(3, 4)).shape == (3, 84)
    time = sincos_time_embedding(6, 4)
    assert time.shape == (1, 4, 6) and time[0, 0].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert time[0, 2, 0].item() == pytest.approx(math.sin(2.0)) and time[0, 2, 4].item() == pytest.approx(math.cos(2 / 10000 ** (1 / 3)))


# -- the predictor ------------------------------------------------------------------------------------
class KnownOutput(CoTracker3):
    """A CoTracker3 whose network answer is fixed: tracks move +2 model px in x per frame."""

    def __init__(self, config, visibility: float, confidence: float):
        super().__init__(config)
        self.fixed = (visibility, confidence)
        self.seen = None

    def forward(self, video, queries, iterations=6):
        self.seen = (video.clone(), queries.clone())
        batch, frames, num_points = video.shape[0], video.shape[1], queries.shape[1]
        steps = torch.arange(frames, dtype=torch.float32).view(1, frames, 1, 1) * torch.tensor([2.0, 0.0])
        coords = queries[:, None, :, 1:] + 0.5 + steps  # off by half a pixel at the query frame on purpose
        visibility = torch.full((batch, frames, num_points), self.fixed[0])
        confidence = torch.full((batch, frames, num_points), self.fixed[1])
        return coords, visibility, confidence


@pytest.mark.parametrize(
    ("mode", "visibility", "confidence", "visible"),
    [("offline", 0.95, 0.1, True), ("offline", 0.85, 1.0, False), ("online", 0.95, 0.7, True), ("online", 0.95, 0.6, False)],
)
def test_visibility_rules_and_coordinates_of_the_predictor(mode, visibility, confidence, visible):
    model = KnownOutput(
        CoTracker3Config(mode=mode, model_resolution=(33, 49), latent_dim=16, hidden_size=32, num_heads=2), visibility, confidence
    )
    frames = torch.zeros(4, 3, 17, 25, dtype=torch.uint8)
    frames[:, 0] = 200
    points = torch.tensor([[4.0, 2.0], [24.0, 16.0]])
    positions, seen = model.track(frames, points)
    video, queries = model.seen
    assert video.shape == (1, 4, 3, 33, 49) and torch.allclose(video[0, :, 0], torch.full((4, 33, 49), 200.0))
    assert torch.allclose(queries[0], torch.tensor([[0.0, 8.0, 4.0], [0.0, 48.0, 32.0]]))  # (frame, x, y) at the model resolution
    assert torch.equal(positions[0], points) and seen[0].all()  # the query frame is known exactly
    # later frames: (model coords) · (25 - 1) / (49 - 1) back in frame pixels
    assert torch.allclose(positions[3], (queries[0, :, 1:] + 0.5 + torch.tensor([6.0, 0.0])) / 2)
    assert seen[1:].all() if visible else not seen[1:].any()
    _, explicit = model.track(frames, points, visibility_threshold=0.99)
    assert not explicit[1:].any()


def test_online_windows_cover_long_and_short_clips():
    model = tiny_cotracker3("online", seed=0)
    queries = torch.tensor([[[0.0, 10.0, 10.0], [0.0, 40.0, 20.0]]])
    for frames in (5, 16, 27):  # shorter than a window, one window, three windows (0, 8, 16)
        coords, visibility, confidence = model(torch.rand(1, frames, 3, 32, 48) * 255, queries, iterations=1)
        assert coords.shape == (1, frames, 2, 2) and visibility.shape == confidence.shape == (1, frames, 2)
        assert torch.isfinite(coords).all() and (coords != 0).all()  # every frame got an estimate
        assert ((visibility > 0) & (visibility < 1)).all()


def test_offline_tracks_the_whole_clip_at_once_and_reruns_identically():
    model = tiny_cotracker3("offline", seed=0)
    frames = (torch.rand(7, 3, 30, 50) * 255).to(torch.uint8)
    points = torch.tensor([[3.0, 4.0], [25.0, 15.0], [49.0, 29.0]])
    positions, visible = model.track(frames, points, iterations=2)
    assert positions.shape == (7, 3, 2) and visible.shape == (7, 3) and visible.dtype == torch.bool
    again, visible_again = model.track(frames, points, iterations=2)
    assert torch.equal(positions, again) and torch.equal(visible, visible_again)
    with pytest.raises(DittoError, match="at least 2 frames"):
        model.track(frames[:1], points)


def test_a_released_size_checkpoint_converts_with_the_command_and_loads(tmp_path, caplog):
    """The real ``scaled_offline.pth`` layout (random values): sizes and mode read from the file."""
    torch.manual_seed(5)
    model = CoTracker3(CoTracker3Config())
    checkpoint = tmp_path / "scaled_offline.pth"
    torch.save(model.official_state_dict(), checkpoint)
    with pytest.raises(SystemExit) as done:
        convert.main(["cotracker3", str(checkpoint), str(tmp_path / "cotracker3-offline")])
    assert done.value.code == 0
    with caplog.at_level("WARNING"):
        loaded = CoTracker3.from_pretrained(str(tmp_path / "cotracker3-offline"))
    assert loaded.config == CoTracker3Config(license="CC-BY-NC-4.0")
    assert "licensed CC-BY-NC-4.0: non-commercial use only" in caplog.text
    for name in ("updateformer.virtual_tracks", "time_emb", "fnet.conv1.weight", "corr_mlp.fc1.weight"):
        assert torch.equal(loaded.state_dict()[name], model.state_dict()[name]), name
