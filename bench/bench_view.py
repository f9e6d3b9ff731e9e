"""What ``ditto-hf view`` reads to show a page: bytes read from a parquet folder and time per request,
against loading the whole folder (``pyarrow.parquet.read_table``, what opening a config in memory costs).

The folder holds ``--rows`` triplets in ``--files`` files with row groups of ``--group-rows`` rows;
each video cell embeds one of the bundled sample clips' bytes (plus a distinct tail, so no two cells
are equal). Bytes are counted at the file objects the reader opens.

    python bench/bench_view.py [--rows 4000] [--files 4] [--group-rows 100]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ditto_hf.samples import sample_clips
from ditto_hf.view.rows import Catalog, ParquetPart, ParquetRows


class CountingFile(io.FileIO):
    """A file that adds every byte read to ``counter[0]``."""

    def __init__(self, path, counter: list[int]):
        super().__init__(path, "rb")
        self.counter = counter

    def read(self, size=-1):
        data = super().read(size)
        self.counter[0] += len(data)
        return data

    def readinto(self, buffer):
        count = super().readinto(buffer)
        self.counter[0] += count or 0
        return count


def write_folder(folder: Path, rows: int, files: int, group_rows: int) -> int:
    clips = [path.read_bytes() for path in sample_clips()]
    categories = ("global_style", "global_freeform", "local_replace", "local_add")
    per_file = -(-rows // files)
    for number in range(files):
        indices = range(number * per_file, min(rows, (number + 1) * per_file))
        cell = lambda index, shift: {"bytes": clips[(index + shift) % len(clips)] + index.to_bytes(8, "big"), "path": None}  # noqa: E731
        table = pa.table(
            {
                "source": [cell(index, 0) for index in indices],
                "edited": [cell(index, 1) for index in indices],
                "instruction": [f"Turn scene {index} into a {categories[index % 4].replace('_', ' ')} edit." for index in indices],
                "category": [categories[index % 4] for index in indices],
            }
        )
        pq.write_table(table, folder / f"train-{number:05d}.parquet", row_group_size=group_rows)
    return sum(path.stat().st_size for path in folder.glob("*.parquet"))


def timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--group-rows", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        total = write_folder(folder, args.rows, args.files, args.group_rows)
        files = sorted(folder.glob("*.parquet"))
        counter = [0]
        baseline_seconds, _ = timed(lambda: pa.concat_tables([pq.read_table(CountingFile(path, counter)) for path in files]))
        baseline_bytes = counter[0]
        print(f"folder: {args.rows} rows, {len(files)} files, {total / 2**20:.1f} MiB; row groups of {args.group_rows} rows")
        print(f"baseline (read_table of every file): {baseline_bytes / 2**20:.2f} MiB read, {baseline_seconds * 1000:.1f} ms")
        counter[0] = 0
        parts = [ParquetPart(str(path), lambda path=path: CountingFile(path, counter)) for path in files]
        opened, catalog = timed(lambda: Catalog(ParquetRows(parts), "bench"))
        steps = [
            ("open (footers)", None),
            ("first page (12 rows)", lambda: catalog.page(0, 12, {})),
            ("page 150 (rows 1800-1811)", lambda: catalog.page(150, 12, {})),
            ("search to the end (no match)", lambda: catalog.page(0, 12, {"q": "no such words"})),
            ("category filter, page 10", lambda: catalog.page(10, 12, {"category": "local_add"})),
            ("one video (row 1805, edited)", lambda: catalog.media(1805, "edited").read()),
            ("same row group, other row", lambda: catalog.media(1806, "edited").read()),
        ]
        print(f"{'request':32} {'MiB read':>9} {'x baseline':>10} {'ms':>8} {'x baseline':>10}")
        for name, action in steps:
            if action is None:
                seconds = opened
            else:
                counter[0] = 0
                seconds, _ = timed(action)
            read = counter[0]
            print(f"{name:32} {read / 2**20:9.3f} {read / baseline_bytes:10.4f} {seconds * 1000:8.1f} {seconds / baseline_seconds:10.4f}")
            counter[0] = 0


if __name__ == "__main__":
    main()
