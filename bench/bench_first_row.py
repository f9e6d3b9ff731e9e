"""Time to the first triplet, split into what plain ``datasets`` pays and what ditto-hf adds.

Writes a packed miniature release, streams it once (the plan and seek indexes get cached, as after
any first use), then in fresh interpreters measures:

- ``import datasets, torchcodec`` (paid by any ``datasets.Video`` user);
- ``import ditto_hf`` (registration of the name);
- ``load_dataset("ditto_1m", ..., streaming=True)`` and ``next(iter(...))`` with a warm cache:
  ditto-hf's own share (config discovery, cached plan, opening the archive, one read).

    python bench/bench_first_row.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """
import time, json, sys
t0 = time.perf_counter()
import datasets, torchcodec
t1 = time.perf_counter()
import ditto_hf
t2 = time.perf_counter()
from datasets import load_dataset
dataset = load_dataset("ditto_1m", name="local", data_dir=sys.argv[1], streaming=True, split="train", cache_dir=sys.argv[2])
t3 = time.perf_counter()
row = next(iter(dataset.decode(False)))
t4 = time.perf_counter()
print(json.dumps({"libraries": t1 - t0, "import ditto_hf": t2 - t1, "load_dataset": t3 - t2, "first row": t4 - t3}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from ditto_hf.testing.release import make_release, pack_release

    work = Path(tempfile.mkdtemp(prefix="ditto-bench-first-"))
    packed = pack_release(make_release(work / "extracted", dirs=3, sources_per_dir=2), work / "packed", part_size=1 << 20)
    command = [sys.executable, "-c", PROBE, str(packed.root), str(work / "cache")]
    subprocess.run(command, check=True, capture_output=True)  # first use: plans and builds the seek indexes
    runs = [
        json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1]) for _ in range(args.repeat)
    ]
    for name in runs[0]:
        print(f"{name:<16}{statistics.median(run[name] for run in runs):>8.3f} s (median of {args.repeat})")
    own = [run["import ditto_hf"] + run["load_dataset"] + run["first row"] for run in runs]
    print(f"{'ditto-hf share':<16}{statistics.median(own):>8.3f} s")


if __name__ == "__main__":
    main()
