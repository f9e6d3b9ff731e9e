"""Cost of ``ditto-hf export diffsynth`` on Ditto-sized videos (1280x720, 101 frames, 20 fps) exported
at DiffSynth's 832x480x73: seconds per video against decoding the same frames alone (the baseline)
and decoding + DiffSynth's crop, measured in the same run; peak RSS of the exporting process.

    python bench/bench_export.py [--edits 2] [--num-frames 73] [--size 832x480]

The clips (one source and ``--edits`` edits of it, seeded noise so H.264 has real work) are made in
a child process, so the peak RSS printed is the export's own (plus the imports).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAKE_CLIPS = """
import sys, torch
from pathlib import Path
from ditto_hf.testing.release import clip_frames
from ditto_hf.video import write_video
for name in sys.argv[2:]:
    frames = clip_frames(name, frames=101, size=720, noise=8)
    write_video(Path(sys.argv[1]) / f"{name}.mp4", torch.cat([frames, frames[:, :, :560]], dim=2), fps=20, preset="ultrafast")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=2)
    parser.add_argument("--num-frames", type=int, default=73)
    parser.add_argument("--size", default="832x480")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    folder = Path(tempfile.mkdtemp(prefix="bench-export-"))
    names = ["source", *(f"edit{index}" for index in range(args.edits))]
    subprocess.run([sys.executable, "-c", MAKE_CLIPS, str(folder), *names], check=True)

    from ditto_hf.export import ExportSettings, TrainingSource, Triplet, export_diffsynth
    from ditto_hf.training.frames import diffsynth_frames
    from ditto_hf.video import read_frames

    clips = [folder / f"{name}.mp4" for name in names]
    start = time.perf_counter()
    for clip in clips:
        read_frames(clip, num_frames=args.num_frames, layout="TCHW")
    decode = (time.perf_counter() - start) / len(clips)
    start = time.perf_counter()
    for clip in clips:
        diffsynth_frames(clip, num_frames=args.num_frames, size=(width, height))
    crop = (time.perf_counter() - start) / len(clips)

    class Edits(TrainingSource):
        def triplets(self):
            for clip in clips[1:]:
                yield Triplet(clip.stem, clip.stem, str(clips[0]), "source.mp4", str(clip), f"{clip.stem}.mp4", "Make it snowy.")

    start = time.perf_counter()
    report = export_diffsynth(Edits("bench"), folder / "out", ExportSettings("bench", args.num_frames, width, height, keyframes=True))
    export = (time.perf_counter() - start) / report.videos_written
    result = {
        "videos": f"{len(clips)} x 1280x720x101 -> {width}x{height}x{args.num_frames} ({report.rows} triplets sharing one source)",
        "videos_written": report.videos_written,
        "decode_s_per_video (baseline)": round(decode, 2),
        "decode_and_diffsynth_crop_s_per_video": round(crop, 2),
        "export_s_per_video": round(export, 2),
        "export_vs_decode": round(export / decode, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
