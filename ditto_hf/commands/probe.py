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
    """Print fps, frame count, size, duration, codec and rotation of each video FILE.

    Every file is reported; the exit code is 1 when any of them cannot be probed.
    """
    from ditto_hf.cli import UserError
    from ditto_hf.errors import USER_ERRORS

    infos, problems = [], []
    for path in files:
        try:
            infos.append(probe(path))
        except USER_ERRORS as error:
            problems.append(str(error))
    _print(infos, as_json)
    for problem in problems:
        click.echo(f"Error: {problem}", err=True)
    if problems:
        raise UserError(f"{len(problems)} of {len(files)} file(s) could not be probed (see above)")


def _print(infos: list, as_json: bool) -> None:
    if as_json:
        for info in infos:
            click.echo(json.dumps(info.to_dict()))
        return
    if not infos:
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
