"""Cost of deterministic H.264 encoding: speed and size of ``write_video``'s settings against
libx264's defaults (threads from the host's cores, every instruction set including AVX-512), on the
bundled clips resized to each size. Also reports whether each setting gives the same bytes under
two heap states (``MALLOC_PERTURB_``), measured in child processes.

    python bench/bench_encode.py [--sizes 832x480,1280x720] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from fractions import Fraction

import av
import numpy as np

from ditto_hf.samples import sample_clips
from ditto_hf.video import deterministic_x264_options, read_frames

SETTINGS = {"x264 defaults": {}, "write_video (deterministic)": deterministic_x264_options()}


def encode(frames: np.ndarray, options: dict[str, str]) -> bytes:
    """The same container and quality settings as ``write_video``, with ``options`` on top."""
    buffer = io.BytesIO()
    height, width = frames.shape[1:3]
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(20))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "medium", **options}
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def clips_at(size: tuple[int, int]) -> list[np.ndarray]:
    return [read_frames(path, size=size).numpy() for path in sample_clips()]


def measure(clips: list[np.ndarray], options: dict[str, str], repeats: int) -> tuple[float, int]:
    """(best seconds, total bytes) to encode every clip."""
    best, size = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        size = sum(len(encode(clip, options)) for clip in clips)
        best = min(best, time.perf_counter() - start)
    return best, size


def digest_in_child(size: str, options: dict[str, str], perturb: int) -> str:
    """SHA-256 of the encoded clips in a fresh process whose heap is filled with ``perturb``."""
    code = (
        "import hashlib, json, sys; sys.path.insert(0, 'bench'); import bench_encode as b; "
        f"w, h = map(int, {size!r}.split('x')); clips = b.clips_at((w, h)); "
        f"print(hashlib.sha256(b''.join(b.encode(c, json.loads({json.dumps(json.dumps(options))})) for c in clips)).hexdigest())"
    )
    env = {**os.environ, "MALLOC_PERTURB_": str(perturb)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="832x480,1280x720")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    flags = (
        sorted({flag for flag in open("/proc/cpuinfo").read().split() if flag.startswith("avx512")})
        if os.path.exists("/proc/cpuinfo")
        else []
    )
    print(f"host: {os.cpu_count()} cores, AVX-512: {' '.join(flags) or 'none'}; deterministic options: {deterministic_x264_options()}")
    for size in args.sizes.split(","):
        width, height = map(int, size.split("x"))
        clips = clips_at((width, height))
        frames = sum(len(clip) for clip in clips)
        results = {name: measure(clips, options, args.repeats) for name, options in SETTINGS.items()}
        base_seconds, base_bytes = results["x264 defaults"]
        print(f"\n{size}, {len(clips)} clips, {frames} frames")
        for name, (seconds, total) in results.items():
            same = len({digest_in_child(size, SETTINGS[name], perturb) for perturb in (85, 170)}) == 1
            print(
                f"  {name:28s} {frames / seconds:7.1f} frames/s ({base_seconds / seconds:4.2f}x speed)  "
                f"{total:9d} B ({total / base_bytes:5.3f}x size)  same bytes under two heap states: {same}"
            )


if __name__ == "__main__":
    main()
