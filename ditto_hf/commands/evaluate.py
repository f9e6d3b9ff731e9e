"""``ditto-hf eval``: CLIP-T, CLIP-F and a VLM score for edited videos, beside the paper's Table 1."""

from __future__ import annotations

import logging

import click
from rich.console import Console
from rich.logging import RichHandler

from ditto_hf.evaluate.clip_scores import DEFAULT_CLIP
from ditto_hf.generate.helpers.vlm import DEFAULT_VLM


@click.command("eval")
@click.argument("edited", nargs=-1, required=True, metavar="EDITED...")
@click.option("--source", type=click.Path(file_okay=False), help="Folder of the source videos of a folder EDITED.")
@click.option(
    "--instructions",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help='JSONL for a folder EDITED: {"video": NAME, "instruction": TEXT, "source": FILE (optional), "category": TEXT (optional)}.',
)
@click.option("--clip", "clip_model", default=DEFAULT_CLIP, show_default=True, metavar="MODEL", help="CLIP checkpoint (Hub id or folder).")
@click.option(
    "--vlm", "vlm_model", default=DEFAULT_VLM, show_default=True, metavar="MODEL|none", help="Judge VLM; 'none' skips the VLM score."
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, allow_dash=True),
    metavar="OUT",
    help="Write aggregate and per-video scores ('-': stdout).",
)
@click.option(
    "--num-frames", type=click.IntRange(min=2), metavar="N", help="Score N frames spread evenly over each video (default: every frame)."
)
@click.option(
    "--judge-prompt",
    default="judge_v1",
    show_default=True,
    metavar="NAME|FILE.txt",
    help="Versioned judge prompt (a .txt beside its .json schema).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Edits decoded and scored per step (never changes a score).",
)
@click.option(
    "--vlm-batch-size",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Judge requests per generate call; more is faster on a GPU, but padding changes the arithmetic and can tip near-ties.",
)
@click.option("--device", default="auto", show_default=True, metavar="DEVICE", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Score at most N edits of each EDITED.")
@click.option("--skip-bad", is_flag=True, help="Skip (log, count and list) unusable edits instead of stopping at the first.")
def eval_command(
    edited,
    source,
    instructions,
    clip_model,
    vlm_model,
    json_out,
    num_frames,
    judge_prompt,
    batch_size,
    vlm_batch_size,
    device,
    limit,
    skip_bad,
) -> None:
    """Score edited videos: CLIP-T, CLIP-F and a VLM judge, the metrics of the paper's Table 1.

    EDITED is a folder of edited videos (with --instructions, or its own metadata.jsonl), a
    `ditto-hf generate` run directory, or a datasets source NAME[:CONFIG][@SPLIT] with edited /
    instruction / source columns (e.g. a Hub mirror). Give several to compare systems row by row.
    """
    from ditto_hf.evaluate import EvalSettings, JudgeConfig, evaluate
    from ditto_hf.generate.contract.models import ModelSpec

    console = Console(stderr=True)
    _log_to(console)
    judge = None
    if vlm_model.lower() != "none":
        judge = JudgeConfig(model=ModelSpec(vlm_model, device=device), prompt=judge_prompt, batch_size=vlm_batch_size)
    settings = EvalSettings(
        clip=ModelSpec(clip_model, dtype="float32", device=device),
        num_frames=num_frames,
        judge=judge,
        batch_size=batch_size,
        skip_bad=skip_bad,
        limit=limit,
    )
    report = evaluate(edited, settings, instructions=instructions, source=source, console=console)
    report.print(Console(stderr=json_out == "-"))
    if json_out == "-":
        click.echo(report.to_json(), nl=False)
    elif json_out:
        console.print(f"scores written to {report.write_json(json_out)}")


def _log_to(console: Console) -> None:
    """Warnings (and ditto-hf's skips) through rich on ``console``; no model-loading bars."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    logging.basicConfig(
        level=logging.WARNING, handlers=[RichHandler(console=console, show_time=False, show_path=False)], format="%(message)s"
    )
    logging.getLogger("ditto_hf").setLevel(logging.INFO)
