"""Read amplification and memory of streaming packed Ditto-1M triplets over HTTP.

Builds a packed miniature release (noisy, incompressible mp4s; split ``.tar.gz.NN`` parts), serves it
from the loopback Hub server (``ditto_hf.testing.hub_server``), publishes the seek indexes with the same code
as ``ditto-hf index``, then streams configs through ``load_dataset("ditto_1m", ..., streaming=True)``
from ``hf://`` and counts the file bytes the server sent.

    read amplification = bytes fetched from the server / video bytes yielded

Fetched bytes include everything the reader downloads: metadata, captions, seek indexes and archive
ranges. The baseline measured in the same run is downloading the needed archives whole. Memory is
the resident set size sampled while iterating: flat means it does not grow with the triplet count.

    python bench/bench_stream.py [--dirs 12] [--sources 6] [--size 96] [--frames 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from ditto_hf.testing.hub_server import client_environment, free_port  # noqa: E402

PORT = free_port()
WORK = Path(tempfile.mkdtemp(prefix="ditto-bench-"))
os.environ.update(client_environment(WORK, f"http://127.0.0.1:{PORT}"))  # before huggingface_hub / datasets are imported


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dirs", type=int, default=12, help="4-digit folders")
    parser.add_argument("--sources", type=int, default=6, help="sources per folder (3 edits each)")
    parser.add_argument("--size", type=int, default=96, help="clip width and height")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--part-size", type=int, default=1 << 20, help="bytes per .tar.gz.NN part")
    parser.add_argument("--spacing", type=int, default=512 << 10, help="gzip seek point spacing of the published index")
    args = parser.parse_args()

    from huggingface_hub import HfApi

    import ditto_hf  # noqa: F401  (registers "ditto_1m")
    from ditto_hf.builders.packed import PackedCategory, find_parts
    from ditto_hf.builders.release import ReleaseRoot
    from ditto_hf.testing.hub_server import HubServer
    from ditto_hf.testing.release import make_release, pack_release

    started = time.perf_counter()
    extracted = make_release(WORK / "extracted", dirs=args.dirs, sources_per_dir=args.sources, size=args.size, frames=args.frames, noise=40)
    packed = pack_release(extracted, WORK / "packed", part_size=args.part_size)
    server = HubServer(WORK / "hub", port=PORT).start()
    api = HfApi(endpoint=server.endpoint, token=server.token)
    api.create_repo("bench/ditto-mini", repo_type="dataset")
    api.upload_folder(repo_id="bench/ditto-mini", repo_type="dataset", folder_path=packed.root)
    root = "hf://datasets/bench/ditto-mini"
    hub = ReleaseRoot(root, {"endpoint": server.endpoint, "token": server.token})
    categories = sorted({path.split("/", 1)[0] for path in extracted.files})
    for category in categories:
        PackedCategory(hub, category, find_parts(hub, category), WORK / "publisher", spacing=args.spacing).publish_index()
    print(
        f"fixture: {len(extracted.files)} mp4s, {sum(p.stat().st_size for p in extracted.files.values()) / 1e6:.1f} MB, "
        f"built and published in {time.perf_counter() - started:.1f}s"
    )

    print(
        f"{'config':<14}{'triplets':>9}{'yielded MB':>11}{'distinct MB':>12}{'fetched MB':>11}{'amplif.':>8}"
        f"{'vs distinct':>12}{'whole-archive':>14}{'RSS start':>10}{'RSS peak':>9}{'RSS end':>8}"
    )
    for config in ("all", "local_replace"):
        measure(server, packed, root, config, WORK / f"reader-{config}")
    server.stop()


def measure(server, release, root: str, config: str, cache_dir: Path) -> None:
    from datasets import load_dataset

    server.reset_counters()
    dataset = load_dataset("ditto_1m", name=config, data_dir=root, streaming=True, split="train", cache_dir=str(cache_dir)).decode(False)
    yielded, distinct, samples, count = 0, {}, [], 0
    for row in dataset:
        count += 1
        for column in ("source", "edited"):
            yielded += len(row[column]["bytes"])
            distinct[row[column]["path"]] = len(row[column]["bytes"])
        if count % 10 == 1:
            samples.append(rss_bytes())
    samples.append(rss_bytes())
    fetched = server.bytes_served
    used = {path.split("/", 1)[0] for rows in [release.rows[config]] for row in rows for path in (row["source_path"], row["edited_path"])}
    whole = sum(part.stat().st_size for category in used for part in (release.root / "videos" / category).glob("*.tar.gz.[0-9]*"))
    distinct_bytes = sum(distinct.values())
    print(
        f"{config:<14}{count:>9}{yielded / 1e6:>11.2f}{distinct_bytes / 1e6:>12.2f}{fetched / 1e6:>11.2f}"
        f"{fetched / yielded:>8.2f}{fetched / distinct_bytes:>12.2f}{whole / yielded:>14.2f}"
        f"{samples[0] / 2**20:>9.0f}M{max(samples) / 2**20:>8.0f}M{samples[-1] / 2**20:>7.0f}M"
    )


if __name__ == "__main__":
    main()
