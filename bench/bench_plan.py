"""Planning a config at scale: the row-by-row plan against the cached, memory-mapped plan.

A synthetic release of N metadata rows (half as many sources, each with two edits, 100 sources per
4-digit folder, ~1.8 MB members) is written with its metadata and caption files; each category's
members go into a real ratarmountcore SQLite member table (building million-member archives is too
slow), read through the same lookups as a packed category. Measured in one run, each step in a
fresh forked process:

- before: parse every row, ``plan_triplets`` (two index lookups per row), ``shard_triplets``: the
  planning of ``load_dataset`` before the plan cache; the plan (Python objects) is what DataLoader
  workers inherit, so each forked worker walks its shards and its private memory growth is measured;
- cold: ``Ditto1M._split_generators`` with an empty plan cache (plans column-wise, writes the file);
- warm: the same with the plan cached (a few listings + one memory map), then two forked workers
  map the plan and walk their shards.

The planning process's figure is its anonymous memory growth; a worker's is its private dirty
memory growth (copy-on-write included) after its first triplet and after its last, and apart the
clean file pages of the mapped plan it touched ("clean": page cache, shared, reclaimable).

    python bench/bench_plan.py [--rows 10000 100000 1000000] [--skip-before-above 1000000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import random
import sqlite3
import tempfile
import time
from pathlib import Path

CLIP = 1_800_000
EDITS = ("local", "global_style1")


def rss() -> dict[str, int]:
    """Resident memory of this process in bytes: ``Anonymous``, ``Private_Dirty`` (what a forked
    worker does not share with its parent, copy-on-write pages included) and ``Private_Clean``
    (file pages only this process maps: page cache, dropped under memory pressure)."""
    values = {}
    with open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            name, _, rest = line.partition(":")
            if name in ("Anonymous", "Private_Dirty", "Private_Clean"):
                values[name] = int(rest.split()[0]) * 1024
    return values


def write_release(folder: Path, rows: int) -> None:
    """Metadata, captions, empty category folders and one SQLite member table per category."""
    sources = rows // len(EDITS)
    entries, captions, members = [], [], {"source": []}
    for number in range(sources):
        directory = f"{number // 100:04d}"
        digest = hashlib.md5(str(number).encode()).hexdigest()
        source = f"source/{directory}/{digest}.mp4"
        members["source"].append(source)
        captions.append({"path": f"{directory}/{digest}.mp4", "caption": f"A clip of thing {number}."})
        for variant, category in enumerate(EDITS, start=1):
            edited = f"{category}/{directory}/{digest}_{variant}.mp4"
            members.setdefault(category, []).append(edited)
            entries.append({"source_path": source, "instruction": f"Edit thing {number} the {category} way.", "edited_path": edited})
    random.Random(0).shuffle(entries)  # metadata order is not archive order
    for name, value in (("training_metadata/bench.json", entries), ("source_video_captions/captions.json", captions)):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(value))
    for category, paths in members.items():
        (folder / "videos" / category).mkdir(parents=True, exist_ok=True)
        write_member_table(folder / "indexes" / f"{category}.sqlite", paths)


def write_member_table(path: Path, paths: list[str]) -> None:
    from ratarmountcore.SQLiteIndex import SQLiteIndex

    path.parent.mkdir(parents=True, exist_ok=True)
    shuffler = random.Random(path.name)
    ordered = sorted(paths, key=lambda member: (member.split("/")[1], shuffler.random()))  # folder by folder, shuffled inside
    with sqlite3.connect(path) as connection:
        connection.executescript(SQLiteIndex._CREATE_TABLES)
        connection.executemany(
            'INSERT INTO "files" VALUES (?, ?, ?, ?, ?, 0, 33188, 48, "", 0, 0, 0, 0, 0, 0)',
            (
                ("/" + member.rsplit("/", 1)[0], member.rsplit("/", 1)[1], i * (CLIP + 512), i * (CLIP + 512) + 512, CLIP)
                for i, member in enumerate(ordered)
            ),
        )


class SyntheticCategory:
    """A packed category's planning side over a synthetic member table: ratarmountcore's own
    ``lookup`` for ``locate`` and the builder's one-query ``member_table``."""

    layout = "packed"

    def __init__(self, index_file: Path, category: str) -> None:
        from ratarmountcore.SQLiteIndex import SQLiteIndex

        self.category = category
        self.connection = sqlite3.connect(f"file:{index_file}?mode=ro", uri=True)
        self.connection.row_factory = sqlite3.Row
        self.index = type(
            "Index",
            (),
            {
                "get_connection": lambda _self: self.connection,
                "lookup": SQLiteIndex.lookup,
                "_query_normpath": staticmethod(SQLiteIndex._query_normpath),
                "_row_to_file_info": staticmethod(SQLiteIndex._row_to_file_info),
            },
        )()

    def locate(self, release_path: str):
        from ditto_hf.builders.members import Member

        found = self.index.lookup("/" + release_path)
        return None if found is None else Member(self.category, found.userdata[0].offset, found.size, release_path)

    def member_table(self):
        from ditto_hf.builders.packed import index_member_table

        return index_member_table(self.connection)

    def close(self) -> None:
        self.connection.close()


def use_synthetic_indexes(folder: Path) -> None:
    from ditto_hf.builders.plan import Readers

    Readers._open = lambda readers, category: SyntheticCategory(folder / "indexes" / f"{category}.sqlite", category)


def in_child(function, *args):
    """Run ``function(*args)`` in a forked process; returns its result."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=lambda: send.send(function(*args)))
    process.start()
    result = receive.recv()
    process.join()
    return result


def walk_in_workers(walk, shard_count: int, workers: int) -> list[dict]:
    """Fork ``workers`` processes; worker k walks shards k, k+workers, ... with ``walk(shard index)``;
    each reports its private and file memory growth after its first triplet and at the end."""

    def worker(rank: int) -> dict:
        start = rss()
        first = None
        count = 0
        for shard in range(rank, shard_count, workers):
            for triplet in walk(shard):
                touched = (triplet.row.source_path, triplet.row.edited_path, triplet.row.instruction, triplet.caption, triplet.edited)
                count += len(touched) > 0  # what reading a triplet touches
                if first is None:
                    first = rss()
        end = rss()
        return {
            "triplets": count,
            "first_private": (first or end)["Private_Dirty"] - start["Private_Dirty"],
            "end_private": end["Private_Dirty"] - start["Private_Dirty"],
            "end_clean": end["Private_Clean"] - start["Private_Clean"],
        }

    return [in_child(worker, rank) for rank in range(workers)]


def before(folder: Path, workers: int) -> dict:
    from ditto_hf.builders.plan import BadRows, Readers, plan_triplets, shard_triplets
    from ditto_hf.builders.release import ReleaseRoot, load_captions, parse_row, read_json_array

    root = ReleaseRoot(str(folder))
    start, memory = time.perf_counter(), rss()
    entries = read_json_array(root.fs, root.join("training_metadata/bench.json"), "bench.json")
    rows = [parse_row(index, entry, "bench.json") for index, entry in enumerate(entries)]
    del entries
    readers = Readers(root, folder / "cache", strict=True)
    shards = shard_triplets(plan_triplets(rows, readers, load_captions(root), BadRows("raise"), "bench.json"), 256)
    del rows
    seconds, grown = time.perf_counter() - start, rss()["Anonymous"] - memory["Anonymous"]
    walked = walk_in_workers(lambda shard: iter(shards[shard].triplets), len(shards), workers)
    return {"seconds": seconds, "anon": grown, "workers": walked}


def after(folder: Path, workers: int, cache: Path) -> dict:
    from ditto_1m import Ditto1M
    from ditto_hf.builders.plan_cache import open_plan

    start, memory = time.perf_counter(), rss()
    builder = Ditto1M(config_name="bench", data_dir=str(folder), cache_dir=str(cache))
    spans = builder._split_generators(None)[0].gen_kwargs["shards"]
    seconds, grown = time.perf_counter() - start, rss()["Anonymous"] - memory["Anonymous"]
    walked = walk_in_workers(lambda shard: open_plan(spans[shard].plan).triplets(spans[shard]), len(spans), workers)
    plan = Path(spans[0].plan)
    return {"seconds": seconds, "anon": grown, "workers": walked, "plan_bytes": plan.stat().st_size, "shards": len(spans)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-before-above", type=int, default=10**9, help="measure the row-by-row plan only up to this many rows")
    args = parser.parse_args()
    import ditto_hf  # noqa: F401

    work = Path(tempfile.mkdtemp(prefix="ditto-bench-plan-"))
    mb = 2**20
    print(
        f"{'rows':>9} {'path':<7}{'plan s':>8}{'plan RSS MB':>12}{'plan file MB':>13}"
        f"{'worker MB 1st':>14}{'worker MB end':>14}{'clean MB':>9}"
    )
    for rows in args.rows:
        folder = work / f"release-{rows}"
        started = time.perf_counter()
        write_release(folder, rows)
        print(f"{rows:>9} fixture written in {time.perf_counter() - started:.1f}s")
        use_synthetic_indexes(folder)
        results = []
        if rows <= args.skip_before_above:
            results.append(("before", in_child(before, folder, args.workers)))
        cache = work / f"cache-{rows}"
        results.append(("cold", in_child(after, folder, args.workers, cache)))
        results.append(("warm", in_child(after, folder, args.workers, cache)))
        for name, result in results:
            first = max(worker["first_private"] for worker in result["workers"]) / mb
            end = max(worker["end_private"] for worker in result["workers"]) / mb
            file_pages = max(worker["end_clean"] for worker in result["workers"]) / mb
            size = f"{result['plan_bytes'] / mb:.1f}" if "plan_bytes" in result else "-"
            print(
                f"{rows:>9} {name:<7}{result['seconds']:>8.2f}{result['anon'] / mb:>12.0f}{size:>13}"
                f"{first:>14.1f}{end:>14.1f}{file_pages:>9.1f}"
            )


if __name__ == "__main__":
    main()
