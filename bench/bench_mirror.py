"""Mirror throughput and stored bytes: the composed layout against one config per metadata file.

Builds a packed miniature release (noisy, incompressible mp4s), then mirrors every config of it to
the loopback Hub server (``ditto_hf.testing.hub_server``) twice, in the same run:

    baseline  = one parquet config per metadata file, each published on its own from the
                ``ditto_1m`` builder (what ``ditto-hf mirror --config all`` did before composition)
    composed  = ``ditto_hf.mirror.mirror_release``: disjoint parts, configs as unions of parts,
                at 1 and at 2 worker processes

and reports rows stored, parquet bytes (against the distinct video bytes of the triplets), rows/s
of a first mirror and of reading + encoding alone (at 1 and 2 workers, worker start included), and
the seconds of a complete rerun (which reads no video).

    python bench/bench_mirror.py [--dirs 8] [--sources 3] [--size 160] [--frames 33] [--shard-rows 16] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from ditto_hf.testing.hub_server import client_environment, free_port  # noqa: E402

if "DITTO_BENCH_WORK" not in os.environ:  # once: the mirror's spawned workers import this module again
    os.environ["DITTO_BENCH_WORK"] = tempfile.mkdtemp(prefix="ditto-bench-mirror-")
    os.environ.update(
        client_environment(os.environ["DITTO_BENCH_WORK"], f"http://127.0.0.1:{free_port()}")
    )  # before importing the Hub clients
WORK = Path(os.environ["DITTO_BENCH_WORK"])
PORT = int(os.environ["HF_ENDPOINT"].rsplit(":", 1)[1])


def publish_each_config(root: str, repo: str, shard_size: str) -> tuple[float, int, int]:
    """The baseline: every metadata file as its own config. Returns (seconds, rows, parquet bytes)."""
    from ditto_1m import Ditto1M
    from ditto_hf.builders.release import ReleaseRoot
    from ditto_hf.hub import publish

    started = time.perf_counter()
    rows = size = 0
    for name in ReleaseRoot(root).metadata_files():
        result = publish(Ditto1M(config_name=name, data_dir=root).as_streaming_dataset("train"), repo, name, max_shard_size=shard_size)
        rows += result.num_rows
        size += sum(shard["size"] for shard in result.shards)
    return time.perf_counter() - started, rows, size


def mirror(root: str, repo: str, workers: int, shard_rows: int):
    from ditto_hf.mirror import mirror_release

    started = time.perf_counter()
    result = mirror_release(root, repo, shard_rows=shard_rows, num_workers=workers)
    return time.perf_counter() - started, result


def encode_only(root: str, workers: int, shard_rows: int) -> tuple[float, int, float]:
    """Reading and encoding every planned shard, nothing uploaded: (seconds, rows, rows/s once every
    worker has delivered its first shard, i.e. without the workers' start)."""
    from ditto_hf.hub.compose import make_shards
    from ditto_hf.mirror import encode_shard, open_release_readers, plan_mirror

    plan = plan_mirror(root, shard_rows=shard_rows)
    open_release_readers([shard.task for shard in plan.shards])
    with tempfile.TemporaryDirectory(dir=WORK) as scratch:
        started = time.perf_counter()
        done = [(time.perf_counter(), made.num_rows) for _, made in make_shards(plan.shards, encode_shard, Path(scratch), workers)]
    (warm, _), rest = done[workers - 1], done[workers:]
    steady = sum(rows for _, rows in rest) / (done[-1][0] - warm) if rest else float("nan")
    return done[-1][0] - started, sum(rows for _, rows in done), steady


def composed_bytes(result) -> tuple[int, int, int]:
    """(rows in the parts, parquet bytes of the parts, parquet bytes of the preview)."""
    parts = [shard for folder, shards in result.folders.items() if folder.startswith("parts/") for shard in shards]
    preview = [shard for folder, shards in result.folders.items() if not folder.startswith("parts/") for shard in shards]
    return sum(s["num_rows"] for s in parts), sum(s["size"] for s in parts), sum(s["size"] for s in preview)


def distinct_video_bytes(release) -> tuple[int, int, int]:
    """(distinct triplets, bytes of their edited videos once each, bytes of their source videos once each)."""
    rows = {(r["source_path"], r["edited_path"], r["instruction"]) for rows in release.rows.values() for r in rows}
    size = {path: file.stat().st_size for path, file in release.files.items()}
    return len(rows), sum(size[edited] for _, edited, _ in rows), sum(size[source] for source in {s for s, _, _ in rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dirs", type=int, default=8, help="4-digit folders")
    parser.add_argument("--sources", type=int, default=3, help="sources per folder (3 edits each)")
    parser.add_argument("--size", type=int, default=160, help="clip width and height")
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--shard-rows", type=int, default=16, help="rows per shard of the composed mirror")
    parser.add_argument("--shard-size", default="4MB", help="max_shard_size of the baseline")
    parser.add_argument("--repeat", type=int, default=2, help="read + encode passes per worker count; the best is reported")
    args = parser.parse_args()

    from ditto_hf.testing.hub_server import HubServer
    from ditto_hf.testing.release import make_release, pack_release

    extracted = make_release(WORK / "extracted", dirs=args.dirs, sources_per_dir=args.sources, size=args.size, frames=args.frames, noise=40)
    packed = pack_release(extracted, WORK / "packed", part_size=1 << 20)
    root = str(packed.root)
    triplets, edited_bytes, source_bytes = distinct_video_bytes(extracted)
    metadata_rows = sum(len(rows) for rows in extracted.rows.values())
    print(
        f"replica: {len(extracted.files)} mp4s, {metadata_rows} metadata rows over {len(extracted.rows)} files, "
        f"{triplets} distinct triplets; their videos: {edited_bytes / 1e6:.2f} MB edited + {source_bytes / 1e6:.2f} MB sources"
    )
    with HubServer(WORK / "hub", port=PORT) as server:
        os.environ["HF_TOKEN"] = server.token
        seconds, rows, size = publish_each_config(root, "bench/per-config", args.shard_size)
        rerun, _, _ = publish_each_config(root, "bench/per-config", args.shard_size)
        print(
            f"baseline (a config per file): {rows} rows, {size / 1e6:.2f} MB parquet, {seconds:.1f} s "
            f"({rows / seconds:.1f} rows/s), rerun {rerun:.1f} s"
        )

        runs = {}
        for workers in (1, 2):
            seconds, result = mirror(root, f"bench/composed-{workers}", workers, args.shard_rows)
            rerun, again = mirror(root, f"bench/composed-{workers}", workers, args.shard_rows)
            assert again.made == 0 and not again.commits, "a complete rerun made or committed something"
            runs[workers] = seconds
            part_rows, part_bytes, preview_bytes = composed_bytes(result)
            print(
                f"composed, {workers} worker(s): {part_rows} rows in parts, {part_bytes / 1e6:.2f} MB parquet "
                f"(+{preview_bytes / 1e6:.2f} MB preview), {seconds:.1f} s ({part_rows / seconds:.1f} rows/s), rerun {rerun:.1f} s"
            )
        encoded: dict[int, tuple[float, float]] = {}
        for _ in range(args.repeat):  # interleaved, best of N: the machine is shared
            for workers in (1, 2):
                seconds, encoded_rows, steady = encode_only(root, workers, args.shard_rows)
                best = encoded.get(workers, (seconds, steady))
                encoded[workers] = (min(seconds, best[0]), max(steady, best[1]))
        for workers, (seconds, steady) in encoded.items():
            print(
                f"read + encode only, {workers} worker(s): {encoded_rows} rows in {seconds:.1f} s ({encoded_rows / seconds:.1f} rows/s; "
                f"{steady:.1f} rows/s once the workers have started)"
            )
        distinct = edited_bytes + source_bytes
        print(f"stored bytes: composed / baseline = {part_bytes / size:.2f}x; composed / distinct videos = {part_bytes / distinct:.2f}x")
        print(
            f"of which sources: {(part_bytes - edited_bytes) / 1e6:.2f} MB above the edited videos for {source_bytes / 1e6:.2f} MB of "
            f"distinct sources ({(part_bytes - edited_bytes) / source_bytes:.2f}x: one copy per part that uses a source, "
            "plus parquet overhead)"
        )
        print(
            f"workers: 2 / 1 = {runs[1] / runs[2]:.2f}x mirror throughput, {encoded[1][0] / encoded[2][0]:.2f}x read + encode "
            f"throughput, {encoded[2][1] / encoded[1][1]:.2f}x once started"
        )


if __name__ == "__main__":
    main()
