"""Read amplification, throughput and memory of streaming packed Ditto-1M triplets over HTTP.

Builds a packed miniature release (noisy, incompressible mp4s; split ``.tar.gz.NN`` parts), serves it
from the loopback Hub server (``ditto_hf.testing.hub_server``), publishes the seek indexes with the same code
as ``ditto-hf index``, then streams configs through ``load_dataset("ditto_1m", ..., streaming=True)``
from ``hf://`` and counts the file bytes the server sent.

    read amplification = bytes fetched from the server / video bytes yielded

Fetched bytes include everything the reader downloads: metadata, captions, seek indexes and archive
ranges. Seek-point spacing is given in clips (``--spacing-clips``: spacing = that many times the
mean clip size, as the release's ~1.8 MB clips against ``ditto-hf index`` spacings), so the ratios
carry over to the release; each spacing is measured with the exact member reads, and the first one
also with the decoder's buffered reads (``--buffered``: ratarmountcore's read path, used before) and
with each row's videos read in plan order (``--plan-order``, used before: a folder's edits are
stored apart from the order rows use them, so that read jumps backwards). ``whole-archive`` is downloading
the needed archives whole. The naive path measured in the same run (``--naive``) downloads every part
of the needed categories, runs ``cat parts | tar -xz`` and reads the files; packed throughput is
taken after the first row (the index download and planning are time to first row); the two are
compared at the last spacing over ``--rounds`` alternating rounds (packed, naive, packed, ...) and
the median of the per-round ratios is reported, as one round on a shared machine swings. Memory is the
resident set size sampled while iterating: flat means it does not grow with the triplet count.

    python bench/bench_stream.py [--dirs 12] [--sources 6] [--size 256] [--frames 16]
                                 [--spacing-clips 9 0.5] [--buffered] [--plan-order] [--naive] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ditto_hf.testing.hub_server import client_environment, free_port  # noqa: E402

PORT = free_port()
WORK = Path(tempfile.mkdtemp(prefix="ditto-bench-"))
os.environ.update(client_environment(WORK, f"http://127.0.0.1:{PORT}"))  # before huggingface_hub / datasets are imported
REPO = "bench/ditto-mini"


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dirs", type=int, default=12, help="4-digit folders")
    parser.add_argument("--sources", type=int, default=6, help="sources per folder (3 edits each)")
    parser.add_argument("--size", type=int, default=256, help="clip width and height")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--part-size", type=int, default=8 << 20, help="bytes per .tar.gz.NN part")
    parser.add_argument("--spacing-clips", type=float, nargs="+", default=[9.0, 0.5], help="seek point spacings, in mean clip sizes")
    parser.add_argument("--buffered", action="store_true", help="at the first spacing, also measure the decoder's buffered reads")
    parser.add_argument(
        "--plan-order", action="store_true", help="at the first spacing, also measure reading each row's videos in plan order (used before)"
    )
    parser.add_argument("--naive", action="store_true", help="also measure download every part + cat | tar -xz")
    parser.add_argument("--rounds", type=int, default=3, help="alternating packed / naive rounds for the throughput ratio")
    parser.add_argument("--configs", nargs="+", default=["all", "local_replace"])
    args = parser.parse_args()

    from huggingface_hub import HfApi

    import ditto_1m
    import ditto_hf  # noqa: F401  (registers "ditto_1m")
    from ditto_hf.builders import packed as packed_module
    from ditto_hf.builders.packed import MIN_SEEK_POINT_SPACING, PackedCategory, find_parts
    from ditto_hf.builders.release import ReleaseRoot
    from ditto_hf.testing.hub_server import HubServer
    from ditto_hf.testing.release import make_release, pack_release

    started = time.perf_counter()
    extracted = make_release(WORK / "extracted", dirs=args.dirs, sources_per_dir=args.sources, size=args.size, frames=args.frames, noise=40)
    packed = pack_release(extracted, WORK / "packed", part_size=args.part_size)
    server = HubServer(WORK / "hub", port=PORT).start()
    api = HfApi(endpoint=server.endpoint, token=server.token)
    api.create_repo(REPO, repo_type="dataset")
    api.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=packed.root)
    root = f"hf://datasets/{REPO}"
    hub = ReleaseRoot(root, {"endpoint": server.endpoint, "token": server.token})
    categories = sorted({path.split("/", 1)[0] for path in extracted.files})
    clip = sum(p.stat().st_size for p in extracted.files.values()) / len(extracted.files)
    print(
        f"fixture: {len(extracted.files)} mp4s, {clip * len(extracted.files) / 1e6:.1f} MB (mean clip {clip / 1e3:.0f} kB), "
        f"built and served in {time.perf_counter() - started:.1f}s"
    )
    print(
        f"{'spacing':>14} {'reads':<9}{'config':<14}{'triplets':>9}{'yielded MB':>11}{'fetched MB':>11}{'amplif.':>8}"
        f"{'whole-archive':>14}{'index MB':>9}{'1st row s':>10}{'MB/s after':>11}{'RSS peak':>9}"
    )
    window = ditto_1m.READ_WINDOW_BYTES
    for clips in args.spacing_clips:
        spacing = max(MIN_SEEK_POINT_SPACING + 1, int(clips * clip))
        index_bytes = 0
        for category in categories:
            published = PackedCategory(
                hub, category, find_parts(hub, category), WORK / f"publisher-{clips}", spacing=spacing
            ).publish_index()
            index_bytes += hub.fs.info(published)["size"]
        type(hub.fs).clear_instance_cache()  # readers list the release afresh (the indexes changed)
        first = clips == args.spacing_clips[0]
        ways = [("buffered", False, window)] * (args.buffered and first) + [("exact", True, window)]
        ways += [("plan-ord", True, 0)] * (args.plan_order and first)
        for reads, direct, window_bytes in ways:
            packed_module.DIRECT_READS, ditto_1m.READ_WINDOW_BYTES = direct, window_bytes
            for config in args.configs:
                label = f"{clips:g} clips ({spacing >> 10} KiB)"
                cache = WORK / f"reader-{clips}-{reads}-{config}"
                measure(server, packed, root, config, cache, label, reads, index_bytes)
    if args.naive:
        ratios = {config: [] for config in args.configs}
        for round_number in range(1, args.rounds + 1):
            for config in args.configs:
                label = f"{args.spacing_clips[-1]:g} clips r{round_number}"
                packed_rate = measure(server, packed, root, config, WORK / f"round-{round_number}-{config}", label, "exact", index_bytes)
                ratios[config].append(packed_rate / naive(server, packed, config, WORK / f"naive-{round_number}-{config}"))
        for config, each in ratios.items():
            rounds = ", ".join(f"{ratio:.2f}" for ratio in each)
            print(f"{config}: packed / naive throughput after the first row = {statistics.median(each):.2f}x (median; rounds {rounds})")
    server.stop()
    shutil.rmtree(WORK, ignore_errors=True)


def used_categories(release, config: str) -> set[str]:
    return {path.split("/", 1)[0] for row in release.rows[config] for path in (row["source_path"], row["edited_path"])}


def measure(server, release, root: str, config: str, cache_dir: Path, label: str, reads: str, index_bytes: int) -> float:
    """Stream a config once, print its row; returns MB/s after the first row."""
    from datasets import load_dataset

    server.reset_counters()
    start = time.perf_counter()
    dataset = load_dataset("ditto_1m", name=config, data_dir=root, streaming=True, split="train", cache_dir=str(cache_dir)).decode(False)
    yielded, after_first, samples, count, first_row = 0, 0, [], 0, None
    for row in dataset:
        count += 1
        size = len(row["source"]["bytes"]) + len(row["edited"]["bytes"])
        yielded += size
        if first_row is None:
            first_row = time.perf_counter()
        else:
            after_first += size
        if count % 10 == 1:
            samples.append(rss_bytes())
    end = time.perf_counter()
    samples.append(rss_bytes())
    fetched = server.bytes_served
    whole = sum(
        part.stat().st_size
        for category in used_categories(release, config)
        for part in (release.root / "videos" / category).glob("*.tar.gz.[0-9]*")
    )
    print(
        f"{label:>14} {reads:<9}{config:<14}{count:>9}{yielded / 1e6:>11.2f}{fetched / 1e6:>11.2f}{fetched / yielded:>8.2f}"
        f"{whole / yielded:>14.2f}{index_bytes / 1e6:>9.2f}{first_row - start:>10.2f}{after_first / 1e6 / (end - first_row):>11.1f}"
        f"{max(samples) / 2**20:>8.0f}M"
    )
    shutil.rmtree(cache_dir, ignore_errors=True)
    return after_first / 1e6 / (end - first_row)


def naive(server, release, config: str, folder: Path) -> float:
    """Download every part of the needed categories into ``folder``, ``cat | tar -xz`` them, read the
    config's files; prints its row, returns MB/s."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=server.endpoint, token=server.token)
    start = time.perf_counter()
    yielded = 0
    for category in sorted(used_categories(release, config)):
        parts = sorted(p.name for p in (release.root / "videos" / category).glob("*.tar.gz.[0-9]*"))
        local = [
            api.hf_hub_download(REPO, f"videos/{category}/{name}", repo_type="dataset", local_dir=folder / "download") for name in parts
        ]
        (folder / "videos").mkdir(parents=True, exist_ok=True)
        subprocess.run(f"cat {' '.join(local)} | tar -xz -C {folder / 'videos'}", shell=True, check=True)
    for row in release.rows[config]:
        for key in ("source_path", "edited_path"):
            yielded += len((folder / "videos" / row[key]).read_bytes())
    seconds = time.perf_counter() - start
    blank = " " * (11 + 8 + 14 + 9 + 10)
    print(
        f"{'naive':>14} {'untar':<9}{config:<14}{len(release.rows[config]):>9}{yielded / 1e6:>11.2f}{blank}{yielded / 1e6 / seconds:>11.1f}"
    )
    shutil.rmtree(folder, ignore_errors=True)
    return yielded / 1e6 / seconds


if __name__ == "__main__":
    main()
