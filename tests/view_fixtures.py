"""What the viewer tests share: a finished generate run with intermediate and broken media, and HTTP helpers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from engine_fixtures import write_fixture_recipe
from PIL import Image

from ditto_hf.generate.run.driver import execute, prepare

BROKEN_BYTES = b"\x00\x00\x00\x18ftypisom" + b"not really a video" * 20


def make_run(folder: Path) -> Path:
    """A fixture-recipe run on the four bundled clips (orbit, portrait, static kept; zoom rejected), then:
    row 0 gets a keyframe png, row 1 a depth video whose file is missing, row 2's edited video is corrupted."""
    recipe_path, _ = write_fixture_recipe(folder)
    recipe, run, samples = prepare(recipe_path, folder / "run")
    execute(recipe, run, samples, engine="local")
    root = run.root
    manifest = pq.read_table(root / "manifest.parquet")
    rows = manifest.to_pylist()
    (root / "keyframe").mkdir()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(root / "keyframe" / "first.png")
    rows[0]["keyframe_path"] = "keyframe/first.png"
    rows[1]["depth_path"] = "depth/missing.mp4"
    (root / rows[2]["edited"]["path"]).write_bytes(BROKEN_BYTES)
    pq.write_table(pa.Table.from_pylist(rows, schema=manifest.schema), root / "manifest.parquet")
    return root


def get(url: str, headers: dict | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    """(status, headers, body) of one plain HTTP request."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def get_json(url: str) -> dict:
    status, _, body = get(url)
    assert status == 200, (status, body[:500])
    return json.loads(body)


@contextmanager
def serving(catalog):
    """The viewer serving ``catalog`` on a free loopback port; yields its base URL."""
    from ditto_hf.view import ViewServer

    server = ViewServer(catalog, "127.0.0.1", 0).start()
    try:
        yield server.url
    finally:
        server.stop()
