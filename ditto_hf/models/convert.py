"""``python -m ditto_hf.models.convert``: official ``.pth`` checkpoints → ``model.safetensors`` + ``config.json``.

    python -m ditto_hf.models.convert video-depth-anything video_depth_anything_vits.pth models/vda-small
    python -m ditto_hf.models.convert cotracker3 scaled_offline.pth models/cotracker3-offline

The output folder is what the ``depth`` / ``motion`` stages' ``model`` may point at (or upload it to a
Hub repo). Conversion is optional: pointing ``model`` at the official file or repo converts it once
into the cache on first use.
"""

from __future__ import annotations

import click

from ditto_hf.errors import DittoError

ARCHITECTURES = {
    "video-depth-anything": "ditto_hf.models.video_depth_anything:VideoDepthAnything",
    "cotracker3": "ditto_hf.models.cotracker:CoTracker3",
}


def model_class(architecture: str):
    from importlib import import_module

    module_name, _, name = ARCHITECTURES[architecture].partition(":")
    return getattr(import_module(module_name), name)


@click.command()
@click.argument("architecture", type=click.Choice(sorted(ARCHITECTURES)))
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("output", type=click.Path(file_okay=False))
@click.option("--mode", type=click.Choice(["offline", "online"]), help="cotracker3 only: override the mode read from the file name")
def main(architecture: str, checkpoint: str, output: str, mode: str | None) -> None:
    """Check CHECKPOINT (an official ARCHITECTURE .pth) and write it to OUTPUT as safetensors."""
    if mode is not None and architecture != "cotracker3":
        raise click.UsageError("--mode applies to cotracker3 checkpoints only")
    hints = {"mode": mode} if mode else {}
    try:
        target = model_class(architecture).convert_checkpoint(checkpoint, output, **hints)
    except DittoError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(target)


if __name__ == "__main__":
    main(prog_name="python -m ditto_hf.models.convert")
