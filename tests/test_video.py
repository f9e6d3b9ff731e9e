"""Video I/O: round trips, crop/resize, fps resampling, prefixes and every kind of bad input."""

from __future__ import annotations

import pytest
import torch

from ditto_hf.video import (
    VideoError,
    center_crop_resize,
    encode_bytes,
    open_decoder,
    prefix_length,
    probe,
    read_frames,
    resample_indices,
    write_video,
)


def gradient_clip(num_frames: int = 12, width: int = 64, height: int = 48) -> torch.Tensor:
    """Smooth frames (codec-friendly) whose brightness encodes the frame index: (T, H, W, C)."""
    ys = torch.linspace(0, 1, height).view(1, height, 1)
    xs = torch.linspace(0, 1, width).view(1, 1, width)
    t = torch.arange(num_frames, dtype=torch.float32).view(num_frames, 1, 1) / max(num_frames - 1, 1)
    red = 40 + 170 * t.expand(num_frames, height, width)
    green = 40 + 170 * ys.expand(num_frames, height, width)
    blue = 40 + 170 * xs.expand(num_frames, height, width)
    return torch.stack([red, green, blue], dim=-1).round().to(torch.uint8)


def frame_level(frames: torch.Tensor) -> torch.Tensor:
    """Mean red level per frame (THWC), which encodes the frame index in ``gradient_clip``."""
    return frames[..., 0].float().mean(dim=(1, 2))


@pytest.mark.parametrize("layout", ["THWC", "TCHW"])
def test_round_trip_preserves_size_count_fps_and_pixels(tmp_path, layout):
    frames = gradient_clip(num_frames=10, width=64, height=48)
    given = frames if layout == "THWC" else frames.permute(0, 3, 1, 2)
    path = write_video(tmp_path / "clip.mp4", given, fps=20, layout=layout, crf=12)

    info = probe(path)
    assert (info.width, info.height, info.num_frames, info.codec) == (64, 48, 10, "h264")
    assert info.fps == pytest.approx(20.0)
    assert info.duration == pytest.approx(0.5, abs=0.06)

    decoded = read_frames(path, layout=layout)
    assert decoded.dtype == torch.uint8
    assert decoded.shape == given.shape
    error = (decoded.float() - given.float()).abs().mean().item()
    assert error < 3.0, f"mean absolute pixel error {error:.2f} too large for crf=12"


def test_written_file_is_faststart_h264_with_video_stream_first(tmp_path):
    import av

    path = write_video(tmp_path / "clip.mp4", gradient_clip(), fps=24)
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "moov atom must precede mdat (+faststart)"
    with av.open(str(path)) as container:
        stream = container.streams[0]
        assert stream.type == "video" and stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
    assert not [p for p in tmp_path.iterdir() if p.name != "clip.mp4"], "temporary files left behind"


def test_encode_bytes_decodes_like_a_file(tmp_path):
    frames = gradient_clip(num_frames=6)
    data = encode_bytes(frames, fps=10)
    assert probe(data).num_frames == 6
    assert probe({"bytes": data, "path": "x.mp4"}).width == 64
    assert read_frames(data).shape == (6, 48, 64, 3)


def test_first_n_frames_and_four_k_plus_one(tmp_path):
    path = write_video(tmp_path / "clip.mp4", gradient_clip(num_frames=12), fps=20)
    assert read_frames(path, num_frames=7).shape[0] == 7
    assert read_frames(path, num_frames=7, four_k_plus_one=True).shape[0] == 5
    assert read_frames(path, four_k_plus_one=True).shape[0] == 9
    levels = frame_level(read_frames(path, num_frames=3))
    full = frame_level(read_frames(path))
    assert torch.allclose(levels, full[:3]), "the prefix must be the first frames, not a sample"
    assert [prefix_length(101, None, True), prefix_length(100, 81, True), prefix_length(4, None, True)] == [101, 81, 1]


@pytest.mark.parametrize(
    ("src_fps", "dst_fps", "count", "expected"),
    [
        (24, 12, 8, [0, 2, 4, 6]),
        (10, 20, 3, [0, 0, 1, 1, 2, 2]),
        (30, 20, 6, [0, 1, 3, 4]),
        (20, 20, 4, [0, 1, 2, 3]),
        (20, None, 4, [0, 1, 2, 3]),
    ],
)
def test_resample_indices(src_fps, dst_fps, count, expected):
    assert resample_indices(count, src_fps, dst_fps) == expected


def test_fps_resampling_keeps_duration_and_order(tmp_path):
    path = write_video(tmp_path / "clip.mp4", gradient_clip(num_frames=24), fps=24)
    down = read_frames(path, fps=12)
    assert down.shape[0] == 12
    levels = frame_level(down)
    assert bool((levels[1:] > levels[:-1]).all()), "resampled frames must stay in time order"
    full = frame_level(read_frames(path))
    assert torch.allclose(levels, full[::2], atol=1.0)
    up = read_frames(path, fps=48, num_frames=10)
    assert up.shape[0] == 10
    assert torch.allclose(frame_level(up)[0::2], frame_level(up)[1::2]), "up-sampling repeats frames"


@pytest.mark.parametrize(
    ("source_size", "target"),
    [((64, 48), (32, 32)), ((64, 48), (48, 16)), ((48, 64), (24, 40)), ((1280, 720), (832, 480)), ((720, 1280), (480, 832))],
)
def test_center_crop_resize_shapes(source_size, target):
    width, height = source_size
    frames = torch.randint(0, 255, (2, 3, height, width), dtype=torch.uint8)
    out = center_crop_resize(frames, target)
    assert out.shape == (2, 3, target[1], target[0]) and out.dtype == torch.uint8


def test_center_crop_keeps_the_centre():
    """A landscape frame with coloured side bands: a square crop keeps only the centre colour."""
    frames = torch.zeros(1, 3, 40, 80, dtype=torch.uint8)
    frames[:, 0, :, :20] = 255  # red left band
    frames[:, 2, :, 60:] = 255  # blue right band
    frames[:, 1, :, 20:60] = 255  # green centre
    out = center_crop_resize(frames, (20, 20))
    assert out[0, 1].float().mean() > 250 and out[0, 0].max() < 5 and out[0, 2].max() < 5


def test_portrait_read_with_resize(tmp_path):
    frames = gradient_clip(num_frames=5, width=48, height=80)
    path = write_video(tmp_path / "portrait.mp4", frames, fps=20)
    info = probe(path)
    assert info.is_portrait and (info.width, info.height) == (48, 80)
    out = read_frames(path, size=(24, 40), layout="TCHW")
    assert out.shape == (5, 3, 40, 24)


def test_sample_clips_probe(sample_clips):
    infos = {path.stem: probe(path) for path in sample_clips}
    assert {"orbit", "zoom", "static", "portrait"} <= set(infos)
    assert infos["portrait"].is_portrait and not infos["orbit"].is_portrait
    assert all(info.num_frames == 48 and info.fps == pytest.approx(24) for info in infos.values())


# -- bad input -----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match=r"missing\.mp4: no such file"):
        probe(tmp_path / "missing.mp4")


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty\.mp4: file is empty"):
        read_frames(tmp_path / "empty.mp4")


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is plain text, not a video\n" * 20)
    with pytest.raises(VideoError, match=r"notes\.mp4: cannot be opened as a video"):
        read_frames(path)


def test_truncated_file(tmp_path):
    whole = write_video(tmp_path / "whole.mp4", gradient_clip(num_frames=30, width=128, height=96), fps=20).read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(VideoError, match=r"truncated\.mp4"):
        read_frames(path)


def test_zero_frames_after_selection(tmp_path):
    path = write_video(tmp_path / "short.mp4", gradient_clip(num_frames=3), fps=20)
    with pytest.raises(VideoError, match=r"short\.mp4: 3 frame\(s\) after selection, need at least 5"):
        read_frames(path, min_frames=5)


def test_audio_only_file_has_no_video_stream(tmp_path):
    import av
    import numpy as np

    path = tmp_path / "audio.m4a"
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoError, match=r"audio\.m4a"):
        probe(path)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (torch.zeros(0, 16, 16, 3, dtype=torch.uint8), "no frames to write"),
        (torch.zeros(2, 15, 16, 3, dtype=torch.uint8), "even width and height"),
        (torch.zeros(2, 16, 16, 3, dtype=torch.float32), "must be a uint8 tensor"),
        (torch.zeros(2, 16, 16, 4, dtype=torch.uint8), "3 \\(RGB\\) channels"),
    ],
)
def test_write_rejects_bad_frames(tmp_path, frames, message):
    with pytest.raises(VideoError, match=message):
        write_video(tmp_path / "bad.mp4", frames, fps=20)
    assert not list(tmp_path.iterdir()), "nothing may be left behind by a failed write"


def test_open_decoder_rejects_empty_entry():
    with pytest.raises(VideoError, match="neither bytes nor path"):
        open_decoder({"bytes": None, "path": None})
