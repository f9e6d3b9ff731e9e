"""``ditto-hf stream`` (a table of triplets) and ``ditto-hf index`` (publish the seek indexes)."""

from __future__ import annotations

import itertools
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ditto_hf.builders.release import DEFAULT_ROOT, VIDEOS_DIR, ReleaseRoot


@click.command("stream")
@click.argument("config", default="all")
@click.option("--data-dir", "root", default=DEFAULT_ROOT, show_default=True, help="Release root: a local folder or an hf:// URL.")
@click.option("--limit", type=click.IntRange(min=1), default=5, show_default=True, help="How many triplets to show.")
@click.option("--skip-bad-rows", is_flag=True, help="Log and count bad rows instead of stopping at the first one.")
def stream_command(config: str, root: str, limit: int, skip_bad_rows: bool) -> None:
    """Stream the first triplets of CONFIG (a training_metadata file: all, local, global_style, ...)."""
    from datasets import load_dataset

    import ditto_hf  # noqa: F401  (registers "ditto_1m")
    from ditto_hf.cli import UserError
    from ditto_hf.registration import builder_configs
    from ditto_hf.video import probe

    present = [found.name for found in builder_configs(root)]
    if config not in present:
        raise UserError(f"no config {config!r} under {root}; configs present: {', '.join(present) or 'none'}")
    dataset = load_dataset(
        "ditto_1m", name=config, data_dir=root, streaming=True, split="train", on_bad_rows="skip" if skip_bad_rows else "raise"
    ).decode(False)
    table = Table(title=f"ditto_1m / {config} ({root})")
    for column in ("category", "instruction", "source", "edited", "caption"):
        table.add_column(column, overflow="fold")
    for row in itertools.islice(dataset, limit):
        table.add_row(row["category"], row["instruction"], _describe(row["source"], probe), _describe(row["edited"], probe), row["caption"])
    Console().print(table)


def _describe(video: dict, probe) -> str:
    info = probe(video)
    return f"{video['path']}\n{info.num_frames} frames {info.width}x{info.height} @ {info.fps:g} fps, {len(video['bytes']) / 1024:.0f} KiB"


@click.command("index")
@click.argument("root", default=DEFAULT_ROOT)
@click.option("--category", "categories", multiple=True, help="Only these categories (default: every packed one).")
@click.option(
    "--spacing",
    type=int,
    default=None,
    help="Gzip seek point spacing in bytes (default 1 MiB: about half a release clip, index ~3% of the archive).",
)
def index_command(root: str, categories: tuple[str, ...], spacing: int | None) -> None:
    """Build the seek index of every packed category under ROOT and write it next to its parts
    (videos/<category>/<category>.tar.gz.index.sqlite), so readers download it instead of scanning."""
    from ditto_1m import release_storage_options
    from ditto_hf.builders.packed import (
        PUBLISHED_SEEK_POINT_SPACING,
        PackedCategory,
        find_parts,
        index_cache_dir,
    )
    from ditto_hf.errors import DittoError

    release = ReleaseRoot(root, release_storage_options(root, None))
    chosen = categories or _packed_categories(release)
    if not chosen:
        raise DittoError(f"{release.display(VIDEOS_DIR)}: no <category>/<category>.tar.gz.NN parts found")
    table = Table(title=f"Seek indexes for {root}")
    for column in ("category", "parts", "archive bytes", "index", "index bytes"):
        table.add_column(column, overflow="fold")
    for category in chosen:
        parts = find_parts(release, category)
        if not parts:
            raise DittoError(f"{release.display(VIDEOS_DIR, category)}: no {category}.tar.gz.NN parts found")
        archive = PackedCategory(release, category, parts, index_cache_dir(), spacing=spacing or PUBLISHED_SEEK_POINT_SPACING)
        published = archive.publish_index()
        table.add_row(
            category,
            str(len(parts)),
            f"{sum(part.size for part in parts):,}",
            release.display(VIDEOS_DIR, category, Path(published).name),
            f"{archive.cached_index.stat().st_size:,}",
        )
    Console().print(table)


def _packed_categories(release: ReleaseRoot) -> list[str]:
    fs, folder = release.fs, release.join(VIDEOS_DIR)
    if not fs.isdir(folder):
        return []
    return [Path(entry).name for entry in sorted(fs.ls(folder, detail=False)) if fs.glob(f"{entry}/{Path(entry).name}.tar.gz.[0-9]*")]
