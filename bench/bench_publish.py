"""Publish throughput to the loopback Hub, and streaming throughput of the mirror vs raw decode.

Writes a few noisy (hard to compress) mp4 clips, builds triplet rows from them, publishes them with
``ditto_hf.hub.publish`` to the loopback Hub server (``ditto_hf.testing.hub_server``) and reports

    publish throughput  = parquet MB (and rows) committed per second, encode + upload + commits
    streaming ratio     = frames/s decoded from ``load_dataset(repo, config, streaming=True)``
                          / frames/s decoded by torchcodec from the same mp4 bytes in memory

The baseline of the ratio is measured in the same run on the same bytes; the goal is >= 0.8.

    python bench/bench_publish.py [--rows 48] [--clips 6] [--size 320x192] [--frames 49] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from ditto_hf.testing.hub_server import client_environment  # noqa: E402

WORK = Path(tempfile.mkdtemp(prefix="ditto-bench-publish-"))
os.environ.update(client_environment(WORK))  # HF_ENDPOINT is set once the server is bound
REPO = "bench/ditto-mirror"


def make_clips(count: int, size: tuple[int, int], frames: int) -> list[Path]:
    """Noisy moving-gradient clips: hard to compress (high bit rate), distinct content."""
    import torch

    from ditto_hf.video import write_video

    width, height = size
    generator = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 255, width).view(1, 1, width, 1)
    clips = []
    for index in range(count):
        shift = torch.arange(frames).view(frames, 1, 1, 1) * 4 + index * 30
        base = (ramp + shift) % 256
        noise = torch.randint(-40, 40, (frames, height, width, 3), generator=generator)
        video = (base + noise).clamp(0, 255).to(torch.uint8)
        clips.append(write_video(WORK / "clips" / f"clip{index}.mp4", video, fps=20, preset="ultrafast", crf=23))
    return clips


def triplet_dataset(clips: list[Path], rows: int):
    import datasets

    from ditto_hf.schema import TRIPLET_FEATURES

    pairs = [(i % len(clips), (i + 1 + i // len(clips)) % len(clips)) for i in range(rows)]
    return datasets.Dataset.from_dict(
        {
            "source": [str(clips[s]) for s, _ in pairs],
            "edited": [str(clips[e]) for _, e in pairs],
            "instruction": [f"turn clip {s} into clip {e}" for s, e in pairs],
            "category": ["local"] * rows,
            "source_path": [f"source/0000/{i:032x}.mp4" for i in range(rows)],
            "edited_path": [f"local/0000/{i:032x}_1.mp4" for i in range(rows)],
            "caption": [""] * rows,
        },
        features=TRIPLET_FEATURES,
    )


def bench_publish(dataset, shard_size: str) -> tuple[float, int, int]:
    from ditto_hf.hub import publish

    start = time.perf_counter()
    result = publish(dataset, REPO, "bench", max_shard_size=shard_size, provenance="benchmark rows")
    seconds = time.perf_counter() - start
    return seconds, sum(shard["size"] for shard in result.shards), len(result.shards)


def decode_all(decoder) -> int:
    """Decode every frame; return the frame count."""
    return int(decoder[:].shape[0])


def bench_mirror_stream() -> tuple[float, int]:
    """Seconds and frames for streaming the published config and decoding every frame."""
    import datasets

    start = time.perf_counter()
    frames = 0
    for row in datasets.load_dataset(REPO, "bench", split="train", streaming=True):
        frames += decode_all(row["source"]) + decode_all(row["edited"])
    return time.perf_counter() - start, frames


def bench_raw_decode() -> tuple[float, int, int]:
    """The baseline: torchcodec decoding the same mp4 bytes, already in memory."""
    import datasets
    from torchcodec.decoders import VideoDecoder

    cells = [
        (row["source"]["bytes"], row["edited"]["bytes"])
        for row in datasets.load_dataset(REPO, "bench", split="train", streaming=True).decode(False)
    ]
    start = time.perf_counter()
    frames = sum(decode_all(VideoDecoder(data, seek_mode="exact")) for pair in cells for data in pair)
    return time.perf_counter() - start, frames, sum(len(data) for pair in cells for data in pair)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--size", default="320x192", help="WIDTHxHEIGHT of the clips")
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--shard-size", default="8MB", help="max_shard_size (small, to exercise batching)")
    parser.add_argument("--repeat", type=int, default=3, help="streaming passes; the best of each is reported")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    from ditto_hf.testing.hub_server import HubServer

    with HubServer(WORK / "hub", port=0) as server:  # bound first, so no other process can take the port
        os.environ["HF_ENDPOINT"] = server.endpoint  # before huggingface_hub / datasets are imported
        clips = make_clips(args.clips, size, args.frames)
        dataset = triplet_dataset(clips, args.rows)
        seconds, parquet_bytes, shards = bench_publish(dataset, args.shard_size)
        print(
            f"publish: {args.rows} rows, {shards} shards, {parquet_bytes / 1e6:.1f} MB parquet in {seconds:.2f} s "
            f"-> {parquet_bytes / 1e6 / seconds:.1f} MB/s, {args.rows / seconds:.1f} rows/s"
        )
        rerun, _, _ = bench_publish(dataset, args.shard_size)
        print(f"republish (nothing to upload): {rerun:.2f} s")

        server.reset_counters()
        mirror_runs, raw_runs = [], []
        for _ in range(args.repeat):  # interleaved, best of N: the machine is shared
            mirror_runs.append(bench_mirror_stream())
            raw_runs.append(bench_raw_decode())
        served = server.bytes_served / args.repeat / 2  # each raw pass also streams the bytes once
        mirror, raw = min(mirror_runs), min(raw_runs)
        (mirror_seconds, mirror_frames), (raw_seconds, raw_frames, raw_bytes) = mirror, raw
        assert mirror_frames == raw_frames, (mirror_frames, raw_frames)
        mirror_fps, raw_fps = mirror_frames / mirror_seconds, raw_frames / raw_seconds
        print(
            f"stream mirror: {mirror_frames} frames in {mirror_seconds:.2f} s -> {mirror_fps:.0f} frames/s "
            f"({served / 1e6:.1f} MB served per pass for {raw_bytes / 1e6:.1f} MB of video)"
        )
        print(f"raw decode:    {raw_frames} frames in {raw_seconds:.2f} s -> {raw_fps:.0f} frames/s")
        print(f"streaming ratio (mirror / raw decode): {mirror_fps / raw_fps:.2f}x (goal >= 0.8x)")


if __name__ == "__main__":
    main()
