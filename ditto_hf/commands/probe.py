"""``ditto-hf probe FILE...``: a rich table of video properties."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from ditto_hf.video import probe


@click.command("probe")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file instead of a table.")
def probe_command(files: tuple[str, ...], as_json: bool) -> None:
    """Print fps, frame count, size, duration, codec and rotation of each video FILE."""
    infos = [probe(path) for path in files]
    if as_json:
        for info in infos:
            click.echo(json.dumps(info.to_dict()))
        return
    table = Table(title="Video properties")
    for column in ("file", "fps", "frames", "width", "height", "seconds", "codec", "rotation"):
        table.add_column(column, justify="left" if column in ("file", "codec") else "right", overflow="fold")
    for info in infos:
        table.add_row(
            info.path,
            f"{info.fps:.3f}",
            str(info.num_frames),
            str(info.width),
            str(info.height),
            f"{info.duration:.3f}",
            info.codec,
            str(info.rotation),
        )
    Console().print(table)
