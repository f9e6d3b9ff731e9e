"""The one place that reads and writes video.

Decoding goes through torchcodec (the decoder ``datasets.Video`` hands out), encoding through PyAV
(H.264, yuv420p, video stream first, ``+faststart``). Every failure on bad input is a
:class:`VideoError` whose message names the file and the problem.
"""

from __future__ import annotations

import functools
import io
import math
import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Union

import torch
import torch.nn.functional as F

from ditto_hf.errors import VideoError  # noqa: F401  (re-exported: `from ditto_hf.video import VideoError`)

VideoSource = Union[str, os.PathLike, bytes, io.IOBase, dict, "torchcodec.decoders.VideoDecoder"]  # noqa: F821
Layout = Literal["THWC", "TCHW"]


@dataclass(frozen=True)
class VideoInfo:
    """Properties of a video stream, as :func:`probe` reads them."""

    path: str
    fps: float
    num_frames: int
    width: int
    height: int
    duration: float
    codec: str
    rotation: int

    @property
    def is_portrait(self) -> bool:
        """True when the displayed frame is taller than wide.

        ``width`` / ``height`` are the displayed size: torchcodec applies the rotation metadata
        when decoding and reports post-rotation dimensions; ``rotation`` is kept for information.
        """
        return self.height > self.width

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) of the frames as decoded and displayed."""
        return (self.width, self.height)

    def to_dict(self) -> dict:
        return asdict(self)


def describe(source: VideoSource) -> str:
    """A short human name for a video source, used in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, dict):
        return source.get("path") or f"<{len(source.get('bytes') or b'')} bytes>"
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    name = getattr(source, "name", None) or getattr(source, "path", None)
    return str(name) if name else f"<{type(source).__name__}>"


def open_decoder(source: VideoSource, *, layout: Layout = "THWC"):
    """Open a torchcodec ``VideoDecoder`` on a path, bytes, a file object, a ``{"bytes", "path"}``
    dict (the ``datasets.Video`` storage) or an already open decoder."""
    from torchcodec.decoders import VideoDecoder

    if isinstance(source, VideoDecoder):
        return source
    name = describe(source)
    if isinstance(source, dict):
        source = source.get("bytes") or source.get("path")
        if not source:
            raise VideoError(f"{name}: video entry has neither bytes nor path")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise VideoError(f"{name}: no such file")
        if path.stat().st_size == 0:
            raise VideoError(f"{name}: file is empty")
        source = str(path)
    order = "NHWC" if layout == "THWC" else "NCHW"
    try:
        return VideoDecoder(source, dimension_order=order, seek_mode="exact")
    except (RuntimeError, ValueError) as exc:
        raise VideoError(f"{name}: cannot be opened as a video ({_first_line(exc)})") from exc


def probe(source: VideoSource) -> VideoInfo:
    """Read fps, frame count, size, duration, codec and rotation without decoding the frames."""
    name = describe(source)
    meta = open_decoder(source).metadata
    num_frames = int(meta.num_frames or 0)
    if num_frames <= 0:
        raise VideoError(f"{name}: video stream has no frames")
    fps = float(meta.average_fps or 0.0)
    duration = float(meta.duration_seconds or (num_frames / fps if fps else 0.0))
    return VideoInfo(
        path=name,
        fps=fps,
        num_frames=num_frames,
        width=int(meta.width),
        height=int(meta.height),
        duration=duration,
        codec=str(meta.codec),
        rotation=int(round(meta.rotation or 0)) % 360,
    )


def resample_indices(num_frames: int, src_fps: float, dst_fps: float | None) -> list[int]:
    """Index of the source frame on screen at each output tick ``k / dst_fps``.

    Covers the whole clip: ``floor(duration * dst_fps)`` output frames (at least one); up-sampling
    repeats frames, down-sampling drops them evenly.
    ``dst_fps=None`` keeps every frame.
    """
    if dst_fps is None or src_fps <= 0 or math.isclose(src_fps, dst_fps, rel_tol=1e-3):
        return list(range(num_frames))
    count = max(1, math.floor(num_frames * dst_fps / src_fps + 1e-6))
    return [min(num_frames - 1, int(math.floor(k * src_fps / dst_fps + 1e-6))) for k in range(count)]


def prefix_length(available: int, num_frames: int | None, four_k_plus_one: bool) -> int:
    """How many leading frames to keep: the first ``num_frames`` (DiffSynth convention), optionally
    cut down to the largest ``4k+1`` that fits (what Wan / VACE accept)."""
    count = available if num_frames is None else min(num_frames, available)
    if four_k_plus_one:
        count = (count - 1) // 4 * 4 + 1
    return count


def read_frames(
    source: VideoSource,
    *,
    num_frames: int | None = None,
    four_k_plus_one: bool = False,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    layout: Layout = "THWC",
    min_frames: int = 1,
) -> torch.Tensor:
    """Decode a video into a ``uint8`` tensor ``(T, H, W, C)`` or ``(T, C, H, W)``.

    Args:
        num_frames: keep the first N frames (after fps resampling); ``None`` keeps all.
        four_k_plus_one: cut the kept prefix down to ``4k+1`` frames.
        fps: resample to this frame rate (nearest frame); ``None`` keeps the source rate.
        size: ``(width, height)`` target; the frame is centre-cropped to that aspect and resized.
        min_frames: raise :class:`VideoError` if fewer frames than this remain.
    """
    name = describe(source)
    decoder = open_decoder(source, layout="TCHW")
    info = probe(decoder)
    indices = resample_indices(info.num_frames, info.fps, fps)
    indices = indices[: prefix_length(len(indices), num_frames, four_k_plus_one)]
    if len(indices) < max(min_frames, 1):
        raise VideoError(f"{name}: {len(indices)} frame(s) after selection, need at least {max(min_frames, 1)}")
    try:
        frames = _decode_indices(decoder, indices)
    except (RuntimeError, IndexError, ValueError) as exc:
        raise VideoError(f"{name}: decoding failed, the file is probably truncated or corrupt ({_first_line(exc)})") from exc
    if size is not None:
        frames = center_crop_resize(frames, size)
    return frames.permute(0, 2, 3, 1).contiguous() if layout == "THWC" else frames


def read_evenly_spaced(source: VideoSource, count: int, *, layout: Layout = "THWC") -> torch.Tensor:
    """Decode ``count`` frames spread evenly from the first frame to the last (rounded to the
    nearest frame; every frame when the video has at most ``count``), as ``uint8`` frames."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    name = describe(source)
    decoder = open_decoder(source, layout="TCHW")
    total = probe(decoder).num_frames
    indices = torch.linspace(0, total - 1, count).round().long().unique().tolist()
    try:
        frames = _decode_indices(decoder, indices)
    except (RuntimeError, IndexError, ValueError) as exc:
        raise VideoError(f"{name}: decoding failed, the file is probably truncated or corrupt ({_first_line(exc)})") from exc
    return frames.permute(0, 2, 3, 1).contiguous() if layout == "THWC" else frames


def _decode_indices(decoder, indices: list[int]) -> torch.Tensor:
    """Decode the unique indices once, in order, and expand duplicates (fps up-sampling)."""
    unique = sorted(set(indices))
    if unique == list(range(len(unique))):
        batch = decoder[: len(unique)]
    else:
        batch = decoder.get_frames_at(unique).data
    position = {index: row for row, index in enumerate(unique)}
    if len(unique) == len(indices):
        return batch
    return batch[[position[index] for index in indices]]


def center_crop_size(source: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` of the largest centre crop of a ``source`` frame with the aspect of ``size``."""
    (src_w, src_h), (width, height) = source, size
    if width <= 0 or height <= 0:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    if src_w * height > width * src_h:  # source wider than target: crop width
        return max(1, round(src_h * width / height)), src_h
    return src_w, max(1, round(src_w * height / width))


def center_crop_resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre-crop ``(T, C, H, W)`` uint8 frames to the aspect of ``size=(width, height)``, then resize
    (antialiased bilinear)."""
    width, height = size
    _, _, src_h, src_w = frames.shape
    crop_w, crop_h = center_crop_size((src_w, src_h), size)
    top, left = (src_h - crop_h) // 2, (src_w - crop_w) // 2
    frames = frames[:, :, top : top + crop_h, left : left + crop_w]
    if (crop_w, crop_h) == (width, height):
        return frames.contiguous()
    resized = F.interpolate(frames.float(), size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp_(0, 255).to(torch.uint8)


def write_video(
    path: str | os.PathLike,
    frames: torch.Tensor,
    fps: float,
    *,
    layout: Layout = "THWC",
    crf: int = 18,
    preset: str = "medium",
) -> Path:
    """Encode ``uint8`` frames as H.264 mp4 (yuv420p, video stream 0, ``+faststart``).

    The file appears atomically: it is written beside the target and renamed into place.
    """
    import av
    import numpy as np

    path = Path(path)
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.ndim != 4:
        raise VideoError(f"{path}: frames must be a uint8 tensor (T, H, W, C) or (T, C, H, W), got {frames.dtype} {tuple(frames.shape)}")
    if layout == "TCHW":
        frames = frames.permute(0, 2, 3, 1)
    count, height, width, channels = frames.shape
    if count == 0:
        raise VideoError(f"{path}: no frames to write")
    if channels != 3:
        raise VideoError(f"{path}: frames must have 3 (RGB) channels, got {channels}")
    if width % 2 or height % 2:
        raise VideoError(f"{path}: H.264 yuv420p needs even width and height, got {width}x{height}; crop or resize first")
    if fps <= 0:
        raise VideoError(f"{path}: fps must be positive, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=path.parent)
    os.fchmod(handle, NEW_FILE_MODE)
    os.close(handle)
    try:
        from fractions import Fraction

        with av.open(tmp_name, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(crf), "preset": preset, **deterministic_x264_options()}
            for array in frames.cpu().numpy():
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")))
            container.mux(stream.encode())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file under the process umask (``mkstemp`` alone gives 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


#: Mode of the files written through a temporary file and a rename, so shared storage (the ray
#: engine's workers, other users of a run directory) reads them as it reads any other file.
NEW_FILE_MODE = _new_file_mode()

#: x264 encoder threads. Fixed, because x264's output depends on its thread count (the default
#: derives it from the host's cores); 2 costs ~0.2% in size against 1 thread and keeps the speed of
#: the default on small hosts (bench/bench_encode.py).
X264_THREADS = 2
#: x264 instruction sets, most capable first, with the /proc/cpuinfo flags each needs. AVX-512 is
#: left out on purpose: x264's AVX-512 code makes the bytes depend on uninitialised heap memory.
#: SSSE3 up to AVX2 give identical bytes; SSE2 and plain C give other (equally valid) bytes.
_X264_LEVELS = (
    ("AVX2", {"avx2", "fma", "bmi1", "bmi2", "avx", "sse4_2", "ssse3"}),
    ("AVX", {"avx", "sse4_2", "ssse3"}),
    ("SSE4.2", {"sse4_2", "ssse3"}),
    ("SSSE3", {"ssse3"}),
)


@functools.cache
def deterministic_x264_options() -> dict[str, str]:
    """libx264 options that make the same frames give the same bytes in any process and heap
    state and on any x86-64 host from SSSE3 to AVX-512: a fixed thread count and the instruction
    set capped below AVX-512. Other architectures keep x264's own choice (deterministic there)."""
    options = {"threads": str(X264_THREADS)}
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return options
    flags = _cpu_flags()
    if not flags:  # not Linux: every x86-64 machine such a system runs on has SSSE3
        return {**options, "x264-params": "asm=SSSE3"}
    for level, needed in _X264_LEVELS:
        if needed <= flags:
            return {**options, "x264-params": f"asm={level}"}
    return options


def _cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo is unavailable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def encode_bytes(frames: torch.Tensor, fps: float, *, layout: Layout = "THWC", crf: int = 18) -> bytes:
    """Encode frames to mp4 and return the bytes (for ``datasets.Video`` columns)."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_video(Path(tmp) / "clip.mp4", frames, fps, layout=layout, crf=crf).read_bytes()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
