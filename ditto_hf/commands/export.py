"""``ditto-hf export diffsynth``: triplets → a folder DiffSynth-Studio's VACE training reads."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


@click.group("export")
def export_command() -> None:
    """Export triplets for a training framework."""


@export_command.command("diffsynth")
@click.argument("source", metavar="SOURCE")
@click.option("--out", required=True, type=click.Path(file_okay=False), metavar="DIR", help="Folder to write (new, or one to resume).")
@click.option("--num-frames", default=73, show_default=True, type=int, help="Frames per video (4k+1; DiffSynth's --num_frames).")
@click.option("--width", default=832, show_default=True, type=int, help="Width (DiffSynth's --width; a multiple of 16).")
@click.option("--height", default=480, show_default=True, type=int, help="Height (DiffSynth's --height; a multiple of 16).")
@click.option("--keyframes", is_flag=True, help="Add vace_reference_image: the edited keyframe (else the first edited frame) as PNG.")
@click.option("--data-dir", metavar="ROOT", help="Release root for a ditto_1m:CONFIG SOURCE (local or hf://; default: the Hub release).")
@click.option("--json", "json_out", is_flag=True, help="Print the report as JSON.")
def diffsynth_command(source, out, num_frames, width, height, keyframes, data_dir, json_out) -> None:
    """Write SOURCE's triplets as DIR/metadata.jsonl + metadata.csv and re-encoded videos.

    SOURCE: a generate run directory, ditto_1m:CONFIG (with --data-dir), or a datasets source
    NAME[:CONFIG][@SPLIT] (a Hub repo, a parquet folder). Rerun the same command to resume.
    """
    from ditto_hf.export import ExportSettings, export_diffsynth, open_training_source

    console = Console(stderr=True)
    settings = ExportSettings(source, num_frames, width, height, keyframes)
    settings.check()
    triplets = open_training_source(source, data_dir=data_dir)
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]export"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("triplets, {task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("export", total=triplets.count(), status="")

        def on_row(report) -> None:
            status = f"{report.videos_written} videos written, {report.videos_present} already there"
            progress.update(task, completed=report.rows, status=status)

        report = export_diffsynth(triplets, out, settings, on_row=on_row)
    if json_out:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(
            f"{report.rows} triplets → {report.out}/metadata.jsonl (+ metadata.csv): {report.videos_written} videos written, "
            f"{report.videos_present} already there, {report.short_videos} shorter than {num_frames} frames"
        )
        if keyframes:
            click.echo(
                f"keyframes: {report.keyframes_from_source} edited keyframes, {report.keyframes_from_first_frame} first frames "
                f"of the edited video, {report.keyframes_present} already there"
            )
    if report.csv_misread:
        console.print(
            f"[yellow]warning:[/] pandas misreads {report.csv_misread} prompt(s) of metadata.csv as NaN or numbers "
            f"(e.g. sample {', '.join(report.csv_misread_examples)}); train with --dataset_metadata_path {report.out}/metadata.jsonl"
        )
