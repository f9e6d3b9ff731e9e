"""``ditto-hf generate``: run the generation chain over source clips, resumable, and publish it."""

from __future__ import annotations

import logging
import sys

import click
from rich.console import Console
from rich.logging import RichHandler

DEMO_RECIPE, DEFAULT_RECIPE = "tiny", "paper"


@click.command("generate")
@click.option(
    "--input",
    "src",
    metavar="SRC",
    help="Folder of videos, list file (one path per line), or a datasets source NAME[:CONFIG][@SPLIT]. Default: the bundled sample clips.",
)
@click.option(
    "--output",
    "output",
    required=True,
    type=click.Path(file_okay=False),
    metavar="RUN_DIR",
    help="Run directory (rerun the same command to resume).",
)
@click.option(
    "--recipe",
    metavar="paper|paper-full|fast|tiny|FILE.yaml",
    help=f"Default: {DEMO_RECIPE!r} for the bundled sample clips, {DEFAULT_RECIPE!r} for your own --input.",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: one process; ray: a Ray Data actor pool per stage.",
)
@click.option("--ray-address", metavar="ADDRESS", help="Ray cluster to join ('auto' for the running one); default: start Ray locally.")
@click.option("--limit", type=click.IntRange(min=1), help="Use at most N source clips.")
@click.option(
    "--wave-size",
    type=click.IntRange(min=1),
    metavar="N",
    help=(
        "local engine: take N samples through every stage before starting the next N (default: all at once); "
        "kept samples appear sooner, models load once per wave."
    ),
)
@click.option("--retry-failed", is_flag=True, help="Run again the samples that failed in an earlier invocation.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (stages, models, resources) and the estimated GPU cost per stage, per clip and per kept sample; run nothing.",
)
@click.option("--push-to-hub", "repo_id", metavar="NS/REPO", help="Publish the kept samples to this Hub dataset repo ...")
@click.option("--config-name", metavar="NAME", help="... as this config (other configs of the repo stay intact).")
@click.option(
    "--license",
    "license_id",
    metavar="ID",
    help="... under this licence (a Hub licence id). Default: Ditto-1M's cc-by-nc-sa-4.0 when --input is Ditto-1M, else 'unknown'.",
)
def generate_command(
    src, output, recipe, engine, ray_address, limit, wave_size, retry_failed, dry_run, repo_id, config_name, license_id
) -> None:
    """Generate (source, instruction, edited) triplets with the Ditto model chain.

    The tiny recipe uses random tiny models: its edited videos are noise, it shows the mechanics end
    to end on CPU. The paper and fast recipes are what to run on GPUs.
    """
    from ditto_hf.generate.run.driver import execute, prepare
    from ditto_hf.generate.run.recipe import load_recipe

    if bool(repo_id) != bool(config_name):
        raise click.UsageError("--push-to-hub and --config-name go together")
    if license_id and not repo_id:
        raise click.UsageError("--license applies to --push-to-hub")
    if repo_id:
        from ditto_hf.hub.retry import dataset_repo_id

        repo_id = dataset_repo_id(repo_id)
    if wave_size and engine != "local":
        raise click.UsageError("--wave-size applies to the local engine (the ray engine already streams samples between stages)")
    console = Console(stderr=True)
    _log_to(console)
    recipe = load_recipe(recipe or (DEFAULT_RECIPE if src else DEMO_RECIPE))
    if dry_run:
        _dry_run(recipe, src, limit, console)
        return
    recipe, run, samples = prepare(recipe, output, src, limit, command=["ditto-hf", *sys.argv[1:]])
    console.print(f"[bold]generate[/]: {len(samples)} clip(s), recipe {recipe.name!r}, engine {engine}, run directory {run.root}")
    result = execute(
        recipe, run, samples, engine=engine, ray_address=ray_address, retry_failed=retry_failed, wave_size=wave_size, console=console
    )
    console.print(
        f"kept {len(result.kept)}, rejected {len(result.rejected)}, failed {len(result.failed)} -> {run.root / 'manifest.parquet'}"
    )
    if repo_id and result.kept:
        _push(run, repo_id, config_name, license_id or default_license(src), console)
    if result.failed:
        from ditto_hf.cli import UserError

        raise UserError(
            f"{len(result.failed)} of {len(result.records)} sample(s) failed (errors in {run.root / 'rejected.parquet'}); "
            "fix the cause and rerun the same command with --retry-failed"
        )


def _dry_run(recipe, src, limit, console: Console) -> None:
    from ditto_hf.generate.run.inputs import count_sources
    from ditto_hf.generate.run.report import plan_table

    recipe.validate()
    console.print(plan_table(recipe, count_sources(src, limit)))


def default_license(src: str | None) -> str:
    """Ditto-1M's licence for clips taken from Ditto-1M (the ``ditto_1m`` builder or a Hub copy of
    the release), ``unknown`` for the user's own clips: only the user knows their licence."""
    from pathlib import Path

    from ditto_hf.hub.card import LICENSE, UNKNOWN_LICENSE

    name = (src or "").partition("@")[0].partition(":")[0].lower()
    from_ditto = bool(name) and not Path(src).exists() and (name == "ditto_1m" or "ditto-1m" in name)
    return LICENSE if from_ditto else UNKNOWN_LICENSE


def _push(run, repo_id: str, config_name: str, license_id: str, console: Console) -> None:
    from ditto_hf.hub import publish
    from ditto_hf.hub.retry import explained_hub_errors

    with explained_hub_errors(repo_id):
        publish(run.dataset(), repo_id, config_name, provenance=run.provenance(), license=license_id)
    console.print(f"published {run.root.name} as config {config_name!r} of {repo_id}")


def _log_to(console: Console) -> None:
    """Log through rich on ``console``; the per-stage progress replaces the libraries' own bars."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    diffusers_logging.disable_progress_bar()
    handler = RichHandler(console=console, show_time=False, show_path=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s")
    logging.getLogger("ditto_hf").setLevel(logging.INFO)
