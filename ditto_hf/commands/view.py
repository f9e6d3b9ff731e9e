"""``ditto-hf view SOURCE``: browse triplets locally in a web page (run directory, parquet, Hub, builder)."""

from __future__ import annotations

import webbrowser

import click

from ditto_hf.view import ViewServer, open_source


@click.command("view")
@click.argument("source")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (127.0.0.1: this machine only).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser; just print the URL.")
@click.option("--data-dir", default=None, help="Release root for the builder source ditto_1m:CONFIG (local path or hf://...).")
def view_command(source: str, port: int, host: str, no_browser: bool, data_dir: str | None) -> None:
    """Serve a page of SOURCE's triplets: source and edited side by side, playing in sync.

    SOURCE is a `generate` run directory, a parquet file or folder, a Hub dataset REPO[:CONFIG],
    or ditto_1m:CONFIG with --data-dir. Rows are read page by page; videos are served as stored.
    """
    server = ViewServer(open_source(source, data_dir), host, port)
    click.echo(server.url)
    click.echo(f"Serving {server.catalog.title}; press Ctrl+C to stop.", err=True)
    if not no_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.", err=True)
    finally:
        server.server_close()
