"""``ditto-hf mirror`` (original release -> Hub-native parquet mirror) and ``ditto-hf check``."""

from __future__ import annotations

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

LEVEL_STYLE = {"ok": "green", "warning": "yellow", "error": "bold red"}


@click.command("mirror")
@click.option(
    "--config",
    "configs",
    multiple=True,
    help="Config to mirror (repeat for several; 'all' is global+local.json). Default: every metadata file of the release.",
)
@click.option(
    "--data-dir",
    default="hf://datasets/QingyanBai/Ditto-1M",
    show_default=True,
    help="Root of the original release: a local folder or an hf:// URL.",
)
@click.option("--repo", required=True, help="Target dataset repo, NS/NAME (created if missing).")
@click.option(
    "--num-workers",
    default=2,
    show_default=True,
    type=click.IntRange(1),
    help="Processes reading and encoding shards (and upload threads).",
)
@click.option(
    "--shard-rows", default=160, show_default=True, type=click.IntRange(1), help="Rows per parquet file (cut between source videos)."
)
@click.option(
    "--preview-rows",
    default=4,
    show_default=True,
    type=click.IntRange(0),
    help="Triplets per category in the default `preview` config (0: none).",
)
@click.option(
    "--on-bad-rows",
    type=click.Choice(["raise", "skip"]),
    default="raise",
    show_default=True,
    help="Stop at the first unreadable row, or skip (and count) such rows.",
)
@click.option("--dry-run", is_flag=True, help="Print the parts, configs and shards from the metadata files; read no video, upload nothing.")
@click.option("--token", default=None, envvar="HF_TOKEN", help="Hub token (default: the logged-in token).")
def mirror_command(configs, data_dir, repo, num_workers, shard_rows, preview_rows, on_bad_rows, dry_run, token) -> None:
    """Convert the original Ditto-1M release into one Hub dataset repo of parquet configs.

    Every triplet is stored once, in one of the disjoint parts of the release's metadata files;
    each config lists the parts it is made of. Resumable: rerun the same command after an
    interruption; shards already on the Hub are neither read nor uploaded again.
    """
    from ditto_hf.hub.retry import dataset_repo_id, explained_hub_errors
    from ditto_hf.mirror import mirror_release, plan_mirror

    repo = dataset_repo_id(repo)
    console = Console(stderr=True)
    options = {"shard_rows": shard_rows, "preview_rows": preview_rows, "on_bad_rows": on_bad_rows, "token": token}
    if dry_run:
        from ditto_hf.hub.compose import remote_composition

        with explained_hub_errors(repo):
            before = [name for name in (remote_composition(repo, token) or {}).get("configs", {}) if name != "preview"]
        plan = plan_mirror(data_dir, configs=list(configs) or None, mirrored_before=before, **options)
        Console().print(_plan_tables(plan))
        return
    progress, on_plan, on_shard = _mirror_progress(console)
    with progress, explained_hub_errors(repo):
        result = mirror_release(
            data_dir, repo, configs=list(configs) or None, num_workers=num_workers, on_plan=on_plan, on_shard=on_shard, **options
        )
    for name, rows in result.configs.items():
        console.print(f"[green]{repo}[/] config [bold]{name}[/]: {rows} rows")
    console.print(
        f"{sum(len(records) for records in result.folders.values())} shard(s) in {len(result.folders)} folder(s): "
        f"{result.made} made, {result.reused} already on the Hub, {result.uploaded} uploaded, {len(result.deleted)} stale removed, "
        f"{len(result.commits)} commit(s)"
    )
    if result.skipped_rows:
        console.print(f"[yellow]{len(result.skipped_rows)} bad row(s) skipped (see the log above and the folders' manifest.json)[/]")


def _mirror_progress(console: Console):
    """A rich progress bar over the planned rows (with an ETA), and the callbacks that drive it."""
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # the rich progress below replaces the per-file upload bars
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    progress = Progress(*columns, console=console, transient=False)
    task = progress.add_task("mirror", total=None, status="reading the metadata files…")
    totals = {"shards": 0, "planned": 0, "bytes": 0, "reused": 0}

    def on_plan(plan) -> None:
        totals["planned"] = len(plan.shards)
        total_rows = sum(shard.num_rows for shard in plan.shards)
        status = f"{len(plan.shards)} shards, {len(plan.parts)} parts, configs {', '.join(plan.configs)}"
        progress.update(task, total=total_rows, status=status)

    def on_shard(shard, record: dict, on_hub: bool) -> None:
        totals["shards"] += 1
        totals["bytes"] += record["size"]
        totals["reused"] += on_hub
        status = (
            f"shard {totals['shards']}/{totals['planned']}, {totals['bytes'] / 1e6:.1f} MB ({totals['reused']} shards already on the Hub)"
        )
        progress.update(task, advance=shard.num_rows, status=status)

    return progress, on_plan, on_shard


def _plan_tables(plan):
    from rich.console import Group

    parts = Table(title=f"Parts of {plan.data_dir} (each row stored once)")
    for column in ("part", "rows", "source videos", "shards", "in configs"):
        parts.add_column(column, overflow="fold")
    shards = {}
    for shard in plan.shards:
        shards[shard.folder] = shards.get(shard.folder, 0) + 1
    from ditto_hf.mirror import part_folder

    for part in plan.parts:
        parts.add_row(part.name, str(len(part.rows)), str(len(part.sources)), str(shards[part_folder(part.name)]), ", ".join(part.configs))
    configs = Table(title="Configs (unions of parts)")
    for column in ("config", "rows", "metadata entries", "parts"):
        configs.add_column(column, overflow="fold")
    for name in plan.configs:
        names = plan.composition.configs[name]
        rows = sum(len(plan.composition.part(part).rows) for part in names)
        configs.add_row(name, str(rows), str(plan.composition.files[name].entries), ", ".join(names))
    distinct, copies = plan.source_copies
    summary = (
        f"{sum(len(part.rows) for part in plan.parts)} triplets stored once; {distinct} source videos stored {copies} times "
        f"(once per part that uses them); preview: {len(plan.preview)} rows; {len(plan.shards)} shards"
    )
    return Group(parts, configs, summary)


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
