"""motion: the score on tracks with known answers (visibility masking included), the CoTracker3
backend (tiny weights, the official file converted once from the Hub), the RAFT backend (tiny
weights, and weights whose output is known), the stage's keep/reject logic, weight loading and
conversion."""

from __future__ import annotations

import math

import pytest
import torch

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelRegistry, ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import StageContext
from ditto_hf.generate.helpers.tracking import (
    TRACKERS,
    CoTracker3Tracker,
    RaftFlowTracker,
    Tracks,
    advect_points,
    build_raft,
    grid_points,
    main,
    motion_score,
    sample_flow,
)
from ditto_hf.generate.stages.motion import MotionStage
from ditto_hf.models.cotracker import CoTracker3
from ditto_hf.tiny.paper_filters import save_tiny_cotracker3, tiny_cotracker3
from ditto_hf.tiny.vision import save_tiny_raft
from ditto_hf.video import read_frames

UPDATES = 2  # RAFT iterations used throughout (the constant-flow weights are built for it)


@pytest.fixture(scope="module")
def raft_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        "random": save_tiny_raft(root / "raft-random"),
        "still": save_tiny_raft(root / "raft-still", constant_flow=(0.0, 0.0), num_flow_updates=UPDATES),
        "moving": save_tiny_raft(root / "raft-moving", constant_flow=(1.0, 0.0), num_flow_updates=UPDATES),
    }


def make_stage(work_dir, weights, **overrides) -> MotionStage:
    config = {
        "model": ModelSpec(str(weights), device="cpu", dtype="float32"),
        "tracker": "raft-flow",
        "num_flow_updates": UPDATES,
        "short_side": 128,
        "grid_size": 4,
        "frame_stride": 8,  # 48 frames → 6 tracked frames, 5 steps
        **overrides,
    }
    stage = MotionStage(config, StageContext(work_dir))
    stage.setup()
    return stage


def clip_samples(sample_clips) -> list[Sample]:
    return [Sample(clip.stem, str(clip), video=str(clip)) for clip in sample_clips]


# -- advection and score on flows we know ---------------------------------------------------------
def test_constant_flow_moves_points_and_scores_path_length():
    flows = torch.zeros(5, 2, 30, 40)
    flows[:, 0], flows[:, 1] = 2.0, 1.0
    points = torch.tensor([[5.0, 5.0], [10.5, 20.25]])
    tracks = advect_points(points, flows)
    steps = torch.arange(6, dtype=torch.float32).view(6, 1, 1) * torch.tensor([2.0, 1.0])
    assert torch.allclose(tracks.positions, points + steps)
    assert tracks.visible.all()
    assert motion_score(tracks, 40, 30) == pytest.approx(5 * math.sqrt(5) / 50)


def test_flow_is_sampled_bilinearly_between_pixels():
    ys, xs = torch.meshgrid(torch.arange(20.0), torch.arange(30.0), indexing="ij")
    flow = torch.stack([0.1 * xs, -0.05 * ys])  # linear fields: bilinear sampling is exact
    points = torch.tensor([[3.3, 7.7], [12.25, 0.5], [28.9, 18.1]])
    expected = torch.stack([0.1 * points[:, 0], -0.05 * points[:, 1]], dim=-1)
    assert torch.allclose(sample_flow(flow, points), expected, atol=1e-5)
    tracks = advect_points(points[:1], flow[None].expand(3, -1, -1, -1))
    x, y = 3.3 * 1.1**3, 7.7 * 0.95**3  # x ← 1.1·x, y ← 0.95·y each step
    assert torch.allclose(tracks.positions[-1, 0], torch.tensor([x, y]), atol=1e-4)


def test_points_leaving_the_frame_stop_counting():
    flows = torch.zeros(3, 2, 10, 10)
    flows[:, 0] = 3.0
    tracks = advect_points(torch.tensor([[0.0, 5.0], [6.0, 5.0]]), flows)
    assert tracks.visible[:, 0].all() and tracks.positions[-1, 0].tolist() == [9.0, 5.0]
    assert tracks.visible[:, 1].tolist() == [True, True, False, False]  # 6 → 9 → 12 leaves
    assert tracks.positions[-1, 1].tolist() == [9.0, 5.0]  # frozen where it left
    assert motion_score(tracks, 10, 10) == pytest.approx((9 + 3) / 2 / math.hypot(10, 10))


def test_score_counts_only_steps_seen_at_both_ends_and_only_points_seen():
    positions = torch.zeros(5, 3, 2)
    positions[:, 0, 0] = torch.tensor([0.0, 3.0, 6.0, 9.0, 12.0])  # 3 px per step
    positions[:, 1, 1] = torch.tensor([0.0, 4.0, 50.0, 50.0, 54.0])  # occluded at frame 2 (a jump), seen again at 3
    positions[:, 2, 0] = torch.tensor([0.0, 9.0, 9.0, 9.0, 9.0])  # never seen after the query frame
    visible = torch.ones(5, 3, dtype=torch.bool)
    visible[2, 1] = False
    visible[1:, 2] = False
    score = motion_score(Tracks(positions, visible), 30, 40)
    # point 0: 12 px; point 1: 4 + 4 (steps 0→1 and 3→4); point 2 is not counted
    assert score == pytest.approx((12 + 8) / 2 / 50)
    assert motion_score(Tracks(positions, torch.eye(5, 3, dtype=torch.bool)), 30, 40) == 0.0  # no visible step at all


def test_static_tracks_score_zero_and_grid_is_inside_the_frame():
    points = grid_points(64, 32, 4)
    assert points.shape == (16, 2)
    assert points[:, 0].min() > 0 and points[:, 0].max() < 63 and points[:, 1].max() < 31
    still = Tracks(points.expand(7, -1, -1), torch.ones(7, 16, dtype=torch.bool))
    assert motion_score(still, 64, 32) == 0.0


# -- the RAFT backend ----------------------------------------------------------------------------
def test_raft_backend_runs_end_to_end_with_tiny_random_weights(raft_dirs):
    tracker = ModelRegistry().load(
        RaftFlowTracker,
        ModelSpec(str(raft_dirs["random"]), device="cpu", dtype="float32"),
        num_flow_updates=UPDATES,
        short_side=128,
        pairs_per_batch=3,
    )
    assert tracker.name == "raft-flow" and not tracker.training
    assert tracker.working_size(320, 192) == (216, 128) and tracker.working_size(40, 80) == (128, 256)
    frames = torch.randint(0, 256, (4, 3, 48, 80), dtype=torch.uint8)
    flows = tracker.flows(frames)  # 3 pairs in one batch
    assert flows.shape == (3, 2, 128, 216) and torch.isfinite(flows).all()
    points = grid_points(80, 48, 3)
    tracks = tracker.track(frames[:3], points)
    assert tracks.positions.shape == (3, 9, 2) and tracks.visible.shape == (3, 9)
    assert torch.allclose(tracks.positions[0], points, atol=1e-4)


def test_raft_with_known_output_gives_the_analytic_score(tmp_path, raft_dirs, sample_clips):
    stage = make_stage(tmp_path, raft_dirs["moving"], threshold=0.0)
    sample = Sample("orbit", str(sample_clips[0]), video=str(sample_clips[0]))
    stage.process([sample])
    # 5 steps of 1 px at the 216×128 working size = 320/216 px in the 320×192 frame;
    # no grid point reaches the border
    expected = 5 * (320 / 216) / math.hypot(320, 192)
    assert sample.ok and sample.scores["motion"] == pytest.approx(expected, rel=1e-4)
    assert sample.extra["motion_tracker"] == "raft-flow"


def test_low_motion_is_rejected_with_score_and_reason(tmp_path, raft_dirs, sample_clips):
    samples = clip_samples(sample_clips[2:])  # static, zoom
    make_stage(tmp_path, raft_dirs["still"]).process(samples)
    for sample in samples:
        assert sample.status == "rejected" and sample.rejected_by == "motion"
        assert sample.scores["motion"] == 0.0
        assert sample.reasons["motion"].startswith("low motion: tracked points moved 0.0000 of the frame diagonal")
        assert "(raft-flow), below the threshold 0.05" in sample.reasons["motion"]


def test_threshold_separates_keep_from_reject(tmp_path, raft_dirs, sample_clips):
    samples = clip_samples(sample_clips[:2])  # orbit 320×192 and portrait 192×320, both 48 frames
    make_stage(tmp_path, raft_dirs["moving"], threshold=0.02).process(samples)
    # 1 working px to the right per step: 320/216 frame px (landscape, 216×128) vs 192/128 (portrait, 128×216)
    landscape, portrait = (5 * step / math.hypot(320, 192) for step in (320 / 216, 192 / 128))
    assert samples[0].scores["motion"] == pytest.approx(landscape, rel=1e-4) and landscape < 0.02
    assert samples[1].scores["motion"] == pytest.approx(portrait, rel=1e-4) and portrait > 0.02
    assert samples[0].status == "rejected" and samples[1].ok


def test_failing_sample_does_not_sink_the_batch(tmp_path, raft_dirs, sample_clips):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    samples = [Sample("broken", str(broken), video=str(broken))] + clip_samples(sample_clips[:1]) + [Sample("raw", "x.mp4")]
    make_stage(tmp_path, raft_dirs["moving"], threshold=0.0).process(samples)
    assert [s.status for s in samples] == ["failed", "ok", "failed"]
    assert samples[0].error.startswith("VideoError: ") and "run the standardise stage first" in samples[2].error


# -- weights: missing, conversion ------------------------------------------------------------------
def test_missing_weights_fail_setup_with_instructions(tmp_path):
    stage = MotionStage({"tracker": "raft-flow"}, StageContext(tmp_path))
    with pytest.raises(DittoError, match="python -m ditto_hf.generate.helpers.tracking convert"):
        stage.setup()
    with pytest.raises(DittoError, match="no model.safetensors"):
        make_stage(tmp_path, tmp_path)
    with pytest.raises(DittoError, match="cannot get model.safetensors from 'someone/raft-weights'"):
        make_stage(tmp_path, "someone/raft-weights")  # not a local path: tried on the (offline) Hub
    with pytest.raises(DittoError, match="no such RAFT weights folder or file"):
        make_stage(tmp_path, "./models/raft_large")


def test_weights_load_from_a_hub_repo(hub_server, raft_dirs, tmp_path, sample_clips):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    api.create_repo("tester/raft-moving")
    api.upload_folder(repo_id="tester/raft-moving", folder_path=raft_dirs["moving"])
    stage = make_stage(tmp_path, "tester/raft-moving", threshold=0.0)
    sample = Sample("orbit", str(sample_clips[0]), video=str(sample_clips[0]))
    stage.process([sample])
    assert hub_server.requests["GET resolve"] > 0
    assert sample.ok and sample.scores["motion"] == pytest.approx(5 * (320 / 216) / math.hypot(320, 192), rel=1e-4)


def test_convert_writes_loadable_safetensors_from_a_torchvision_checkpoint(tmp_path):
    torch.manual_seed(3)
    original = build_raft("raft_small")
    torch.save(original.state_dict(), tmp_path / "raft_small.pth")
    with pytest.raises(SystemExit) as done:
        main(["convert", str(tmp_path / "converted"), "--variant", "raft_small", "--checkpoint", str(tmp_path / "raft_small.pth")])
    assert done.value.code == 0
    loaded = RaftFlowTracker.from_pretrained(str(tmp_path / "converted"))
    for key, value in original.state_dict().items():
        assert torch.equal(loaded.raft.state_dict()[key], value), key


# -- the CoTracker3 backend (the default) -----------------------------------------------------------
@pytest.fixture(scope="module")
def cotracker_dir(tmp_path_factory):
    return save_tiny_cotracker3(tmp_path_factory.mktemp("cotracker") / "cotracker3")


def test_cotracker3_is_the_default_tracker_with_the_official_weights(tmp_path):
    config = MotionStage.Config()
    assert config.tracker == "cotracker3" and config.model.id == "facebook/cotracker3" and config.model.dtype == "float32"
    assert set(TRACKERS) == {"cotracker3", "raft-flow"}
    assert MotionStage.Config(tracker="raft-flow").model.id == ""  # RAFT has no public weights
    with pytest.raises(DittoError, match="cannot get weights from 'facebook/cotracker3'.*offline"):
        MotionStage({}, StageContext(tmp_path)).setup()  # offline Hub, nothing cached


def test_cotracker3_stage_scores_the_visible_grid(tmp_path, cotracker_dir, sample_clips):
    options = {"model": ModelSpec(str(cotracker_dir), device="cpu", dtype="float32"), "grid_size": 3, "frame_stride": 8, "iterations": 2}
    stage = MotionStage({**options, "threshold": 0.0}, StageContext(tmp_path))
    stage.setup()
    assert isinstance(stage.tracker, CoTracker3Tracker) and stage.tracker.iterations == 2
    samples = clip_samples(sample_clips[:2])
    stage.process(samples)
    frames = read_frames(sample_clips[0], layout="TCHW")[::8]
    height, width = frames.shape[-2:]
    tracks = stage.tracker.track(frames, grid_points(width, height, 3))
    assert tracks.positions.shape == (6, 9, 2) and tracks.visible[0].all()
    assert samples[0].ok and samples[0].scores["motion"] == motion_score(tracks, width, height) > 0
    assert samples[0].extra["motion_tracker"] == "cotracker3" and samples[1].ok
    strict = MotionStage({**options, "threshold": 10.0}, StageContext(tmp_path))
    strict.setup()
    rejected = clip_samples(sample_clips[:1])
    strict.process(rejected)
    assert rejected[0].status == "rejected" and "(cotracker3), below the threshold 10" in rejected[0].reasons["motion"]


def test_official_cotracker3_file_on_the_hub_is_converted_once(hub_server, tmp_path, monkeypatch, sample_clips):
    """``model: facebook/cotracker3`` as in the paper recipe: the repo holds only ``scaled_online.pth``."""
    from huggingface_hub import HfApi

    monkeypatch.setenv("DITTO_HF_CACHE", str(tmp_path / "cache"))
    model = tiny_cotracker3("online", seed=4)
    checkpoint = tmp_path / "scaled_online.pth"
    torch.save(model.official_state_dict(), checkpoint)
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    api.create_repo("facebook/cotracker3")
    api.upload_file(path_or_fileobj=checkpoint, path_in_repo="scaled_online.pth", repo_id="facebook/cotracker3")
    # the config is read from the released file's shapes; here the tiny widths stand in for the released ones
    monkeypatch.setattr(CoTracker3, "config_from_official", classmethod(lambda cls, state, filename, mode=None: model.config))
    options = {
        "model": ModelSpec("facebook/cotracker3", device="cpu", dtype="float32"),
        "cotracker_checkpoint": "scaled_online.pth",
        "visibility_threshold": 0.0,
    }
    scores = []
    for _ in range(2):
        stage = MotionStage({**options, "grid_size": 3, "frame_stride": 8, "iterations": 2, "threshold": 0.0}, StageContext(tmp_path))
        stage.setup()
        sample = clip_samples(sample_clips[:1])[0]
        stage.process([sample])
        scores.append(sample.scores["motion"])
    converted = list((tmp_path / "cache" / "converted").iterdir())
    assert len(converted) == 1 and converted[0].name.startswith("scaled_online-")
    assert hub_server.requests["GET resolve"] > 0 and scores[0] == scores[1] > 0
    assert stage.tracker.model.config.mode == "online"
