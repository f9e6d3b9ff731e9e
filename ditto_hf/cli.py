"""The ``ditto-hf`` command line.

Subcommands live in ``ditto_hf/commands/<name>.py`` (one module per command group, each exposing a
click command called ``command``) and are imported only when invoked, so ``ditto-hf --help`` stays
fast. Exit codes: 0 ok, 1 user error (one line, no traceback), 2 usage error.
"""

from __future__ import annotations

import importlib
import sys

import click

from ditto_hf import __version__

# name -> (module under ditto_hf.commands, one-line help shown by --help)
COMMANDS: dict[str, tuple[str, str]] = {
    "probe": ("probe", "Print video properties (fps, frames, size, codec, rotation)."),
    "stream": ("stream", "Stream Ditto-1M triplets from the release (local or hf://)."),
    "index": ("stream", "Build the seek index of a packed release so it can be streamed."),
    "mirror": ("hub", "Convert the original release into a Hub-native parquet mirror."),
    "check": ("hub", "Check a Hub repo or folder the way the dataset viewer sees it."),
    "generate": ("generate", "Generate new triplets with the Ditto model chain."),
    "edit": ("edit", "Edit a video from a text instruction with Editto (Ditto LoRAs)."),
    "lora": ("lora", "Convert Ditto / DiffSynth / ComfyUI Wan LoRAs for diffusers."),
    "eval": ("evaluate", "Score edited videos: CLIP-T, CLIP-F and a VLM judge (Table 1)."),
    "export": ("export", "Export triplets for training (a DiffSynth-Studio VACE folder)."),
    "view": ("view", "Browse triplets locally: source and edit side by side, in sync."),
}


class UserError(click.ClickException):
    """A problem with the user's input: printed as one line, exit code 1."""

    exit_code = 1

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True, file=file)


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module_name, _ = COMMANDS[name]
        module = importlib.import_module(f"ditto_hf.commands.{module_name}")
        return getattr(module, name.replace("-", "_") + "_command")

    def format_commands(self, ctx, formatter):
        rows = [(name, short) for name, (_, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ditto-hf")
def cli() -> None:
    """ditto-hf: stream, generate, publish, browse and evaluate Ditto-1M video-editing triplets."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors (VideoError, bad paths, ...) become exit code 1."""
    from ditto_hf.errors import USER_ERRORS

    try:
        cli.main(args=argv, prog_name="ditto-hf", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        exc.show()
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except USER_ERRORS as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
