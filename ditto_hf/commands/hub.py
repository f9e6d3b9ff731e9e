"""``ditto-hf mirror`` (original release -> Hub-native parquet mirror) and ``ditto-hf check``."""

from __future__ import annotations

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ditto_hf import __version__

LEVEL_STYLE = {"ok": "green", "warning": "yellow", "error": "bold red"}


@click.command("mirror")
@click.option("--config", "config", required=True, help="Builder config to mirror, or 'all' for every metadata file present.")
@click.option(
    "--data-dir",
    default="hf://datasets/QingyanBai/Ditto-1M",
    show_default=True,
    help="Root of the original release: a local folder or an hf:// URL.",
)
@click.option("--repo", required=True, help="Target dataset repo, NS/NAME (created if missing).")
@click.option("--config-name", default=None, help="Name of the config on the Hub (default: the builder config's name).")
@click.option("--num-workers", default=2, show_default=True, type=click.IntRange(1), help="Parallel shard uploads.")
@click.option("--max-shard-size", default="500MB", show_default=True, help="Parquet file size to aim for.")
@click.option(
    "--on-bad-rows",
    type=click.Choice(["raise", "skip"]),
    default="raise",
    show_default=True,
    help="Stop at the first unreadable row, or skip (and count) such rows.",
)
@click.option("--token", default=None, envvar="HF_TOKEN", help="Hub token (default: the logged-in token).")
def mirror_command(config, data_dir, repo, config_name, num_workers, max_shard_size, on_bad_rows, token) -> None:
    """Convert the original Ditto-1M release into parquet configs of a Hub dataset repo.

    Resumable: rerun the same command after an interruption; shards already on the Hub are kept.
    """
    from ditto_1m import Ditto1M, release_storage_options
    from ditto_hf.builders.release import ReleaseRoot
    from ditto_hf.errors import DittoError

    # every metadata file present (the builder's own "all" config, global+local.json, is one of them)
    release = ReleaseRoot(data_dir, release_storage_options(data_dir, None, token))
    names = list(release.metadata_files()) if config == "all" else [config]
    if config_name and len(names) > 1:
        raise DittoError("--config-name names one config; it cannot be used with --config all")
    console = Console(stderr=True)
    for name in names:
        target = config_name or name
        builder = Ditto1M(config_name=name, data_dir=data_dir, on_bad_rows=on_bad_rows, token=token)
        result = _publish_with_progress(
            console,
            builder.as_streaming_dataset("train"),
            repo,
            target,
            token=token,
            max_shard_size=max_shard_size,
            num_workers=num_workers,
            provenance=_mirror_provenance(name),
        )
        console.print(
            f"[green]{repo}[/] config [bold]{target}[/]: {result.num_rows} rows in {len(result.shards)} shard(s) "
            f"({result.uploaded} uploaded, {result.reused} already on the Hub, {len(result.deleted)} stale removed)"
        )
        if builder.bad_rows.skipped:
            console.print(f"[yellow]{builder.bad_rows.skipped} bad row(s) of {name} skipped (see the log above)[/]")


def _publish_with_progress(console: Console, dataset, repo: str, config_name: str, **options):
    from huggingface_hub.utils import disable_progress_bars

    from ditto_hf.hub import publish

    disable_progress_bars()  # the rich progress below replaces the per-file upload bars
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"{config_name}", total=None, status="reading rows…")
        totals = {"rows": 0, "bytes": 0, "shards": 0, "reused": 0}

        def on_shard(shard, on_hub: bool) -> None:
            totals["rows"] += shard.num_rows
            totals["bytes"] += shard.size
            totals["shards"] += 1
            totals["reused"] += on_hub
            status = (
                f"{totals['shards']} shards, {totals['rows']} rows, {totals['bytes'] / 1e6:.1f} MB ({totals['reused']} already on the Hub)"
            )
            progress.update(task, advance=1, status=status)

        result = publish(dataset, repo, config_name, on_shard=on_shard, **options)
        progress.update(task, total=totals["shards"], completed=totals["shards"], status=f"{result.num_rows} rows committed")
    return result


def _mirror_provenance(builder_config: str) -> str:
    import datasets
    import huggingface_hub

    return (
        f"Converted from the original Ditto-1M release (QingyanBai/Ditto-1M; builder config `{builder_config}`) "
        f"with `ditto-hf mirror` (ditto-hf {__version__}, datasets {datasets.__version__}, "
        f"huggingface_hub {huggingface_hub.__version__}). Videos are the release's mp4 files, byte for byte."
    )


@click.command("check")
@click.argument("repo_or_dir")
@click.option("--rows", default=5, show_default=True, type=click.IntRange(1), help="First rows to stream per config.")
@click.option("--no-sha256", is_flag=True, help="Trust the Hub's recorded SHA-256 instead of downloading every shard to hash it.")
@click.option("--token", default=None, envvar="HF_TOKEN", help="Hub token (default: the logged-in token).")
def check_command(repo_or_dir, rows, no_sha256, token) -> None:
    """Check REPO_OR_DIR (NS/NAME or a local folder) the way the Hub dataset viewer sees it.

    Exit code 1 when any check fails.
    """
    from ditto_hf.hub import check

    console = Console()
    with console.status(f"checking {repo_or_dir}…"):
        report = check(repo_or_dir, token=token, first_rows=rows, verify_sha256=not no_sha256)
    table = Table(title=f"{report.target}: configs {', '.join(report.configs) or '—'}")
    for column in ("level", "where", "finding"):
        table.add_column(column, overflow="fold")
    for finding in report.findings:
        style = LEVEL_STYLE[finding.level]
        table.add_row(f"[{style}]{finding.level}[/]", finding.where, finding.message)
    console.print(table)
    if not report.ok:
        from ditto_hf.cli import UserError

        raise UserError(f"{report.target}: {len(report.errors)} problem(s) found (see the table above)")
