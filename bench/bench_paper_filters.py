"""Cost of the paper's filters against the per-frame / flow stand-ins, at the real model sizes.

Random weights of the released architectures (nothing is downloaded: speed and memory do not
depend on the values): Video Depth Anything Small vs Depth Anything V2 Small per frame (+ scale /
shift chaining), and CoTracker3 offline / online vs RAFT-large flow integration, on one clip of
the bundled samples. Prints seconds per clip, peak CUDA memory and each backend's ratio to its
stand-in measured in the same run. The defaults fit a small CPU; on a GPU use the recipes' sizes
(``--frames 101 --size 1280x720 --depth-input 518``).

    python bench/bench_paper_filters.py [--frames 17] [--size 320x192] [--depth-input 196] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from ditto_hf.generate.helpers.tracking import CoTracker3Tracker, RaftFlowTracker, build_raft, grid_points
from ditto_hf.generate.stages.depth import align_depths
from ditto_hf.models.cotracker import CoTracker3, CoTracker3Config
from ditto_hf.models.video_depth_anything import VARIANTS, VideoDepthAnything, working_size
from ditto_hf.samples import sample_clips
from ditto_hf.video import read_frames


def measure(name: str, run, device: str, repeats: int) -> dict:
    """Best of ``repeats`` timed runs after a warm-up; peak CUDA memory (CPU: not measured)."""
    cuda = device.startswith("cuda")
    run()  # warm-up (allocator, kernels)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return {"name": name, "seconds": best, "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")}


def depth_anything_v2_small(device: str):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, out_indices=[3, 6, 9, 12], reshape_hidden_states=False
    )
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=384, neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64
    )
    return DepthAnythingForDepthEstimation(config).eval().to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", default="320x192", help="clip size WxH")
    parser.add_argument("--depth-input", type=int, default=196, help="depth working short side (518 in the recipes)")
    parser.add_argument("--grid", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    frames = read_frames(sample_clips()[0], num_frames=args.frames, size=(width, height), layout="TCHW")
    torch.manual_seed(0)
    device = args.device

    vda = VideoDepthAnything(VARIANTS["vits"][0]).eval().to(device)
    v2 = depth_anything_v2_small(device)
    work_width, work_height = working_size(width, height, args.depth_input)

    @torch.inference_mode()
    def per_frame_v2():
        clip = torch.nn.functional.interpolate(frames.to(device, torch.float32) / 255, size=(work_height, work_width), mode="bicubic")
        depth = torch.cat([v2(pixel_values=part).predicted_depth for part in clip.split(16)])
        return align_depths(torch.nn.functional.interpolate(depth[:, None], size=(height, width), mode="bilinear")[:, 0].cpu())

    raft = RaftFlowTracker(build_raft("raft_large").eval().to(device), num_flow_updates=12, short_side=min(height, width))
    offline = CoTracker3Tracker(CoTracker3(CoTracker3Config()).eval().to(device))
    online = CoTracker3Tracker(CoTracker3(CoTracker3Config(mode="online", window_len=16)).eval().to(device))
    points = grid_points(width, height, args.grid)

    print(f"{args.frames} frames {width}x{height}, depth working size {work_width}x{work_height}, {args.grid}² points, {device}")
    print(f"{'backend':38} {'s/clip':>8} {'peak MB':>9} {'× stand-in':>11}", flush=True)
    per_frame, flow = "depth-anything-v2 Small (per frame)", "raft-flow RAFT-large"
    runs = [
        (per_frame, per_frame_v2, None),
        ("video-depth-anything Small", lambda: vda.predict_video(frames, input_size=args.depth_input), per_frame),
        (flow, lambda: raft.track(frames, points), None),
        ("cotracker3 offline", lambda: offline.track(frames, points), flow),
        ("cotracker3 online", lambda: online.track(frames, points), flow),
    ]
    seconds = {}
    for name, run, stand_in in runs:
        row = measure(name, run, device, args.repeats)
        seconds[name] = row["seconds"]
        ratio = row["seconds"] / seconds[stand_in] if stand_in else 1.0
        print(f"{name:38} {row['seconds']:8.2f} {row['peak_mb']:9.0f} {ratio:11.2f}", flush=True)


if __name__ == "__main__":
    main()
