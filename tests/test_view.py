"""``ditto-hf view`` over plain HTTP: pages, filters, text search, ranges, error rows, every kind of SOURCE."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from view_fixtures import BROKEN_BYTES, get, get_json, make_run, serving

from ditto_hf.errors import DittoError
from ditto_hf.testing.release import make_release
from ditto_hf.view import open_source
from ditto_hf.view.media import Blob, RangeNotSatisfiable, byte_range
from ditto_hf.view.rows import Catalog, StreamRows

KEPT = ["orbit", "portrait", "static"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("view-run"))


@pytest.fixture(scope="module")
def run_url(run):
    with serving(open_source(str(run))) as url:
        yield url


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("view-release"), dirs=2, sources_per_dir=2)


def triplets(release):
    """The release's ``all`` rows as a ``datasets.Dataset`` with the videos' bytes embedded."""
    import datasets
    from datasets.table import embed_table_storage

    from ditto_hf.schema import TRIPLET_FEATURES

    rows = release.rows["all"]
    columns = {
        "source": [str(release.files[row["source_path"]]) for row in rows],
        "edited": [str(release.files[row["edited_path"]]) for row in rows],
        "instruction": [row["instruction"] for row in rows],
        "category": [row["edited_path"].split("/")[0] for row in rows],
        "source_path": [row["source_path"] for row in rows],
        "edited_path": [row["edited_path"] for row in rows],
        "caption": [release.caption_of(row["source_path"]) for row in rows],
    }
    dataset = datasets.Dataset.from_dict(columns, features=TRIPLET_FEATURES)
    return dataset.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)


def instructions(url: str, **params) -> list[str]:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return [row["fields"]["instruction"] for row in get_json(f"{url}api/rows?{query}")["rows"]]


def all_rows(url: str, size: int = 5, **params) -> list[dict]:
    """Every matching row, page after page, checking the paging fields on the way."""
    rows, page = [], 0
    while True:
        query = "&".join(f"{key}={value}" for key, value in {"page": page, "size": size, **params}.items())
        body = get_json(f"{url}api/rows?{query}")
        assert body["page"] == page and len(body["rows"]) <= size
        rows += body["rows"]
        if not body["has_more"]:
            assert body["total"] == len(rows)
            return rows
        assert len(body["rows"]) == size and (body["total"] is None or body["total"] > len(rows))  # known once scanned to the end
        page += 1


# -- a generate run --------------------------------------------------------------------------------


def test_run_directory_pages_kept_then_rejected(run_url, run):
    first = get_json(f"{run_url}api/rows?page=0&size=2")
    assert [row["index"] for row in first["rows"]] == [0, 1] and first["has_more"] and first["total"] is None
    second = get_json(f"{run_url}api/rows?page=1&size=2")
    assert [row["index"] for row in second["rows"]] == [2, 3] and not second["has_more"] and second["total"] == 4
    assert get_json(f"{run_url}api/rows?page=2&size=2")["rows"] == []
    rows = first["rows"] + second["rows"]
    assert [row["fields"]["sample_id"].split("-")[0] for row in rows] == [*KEPT, "zoom"]
    assert [row["fields"]["status"] for row in rows] == ["kept", "kept", "kept", "rejected"]
    kept = pq.read_table(run / "manifest.parquet").to_pylist()
    assert [row["fields"]["instruction"] for row in rows[:3]] == [row["instruction"] for row in kept]
    assert rows[0]["fields"]["scores"] == kept[0]["scores"] and rows[0]["fields"]["scores"]["brightness"] > 0
    assert set(rows[0]["media"]) == {"source", "edited", "keyframe"}
    assert rows[0]["media"]["keyframe"]["kind"] == "image" and rows[1]["media"]["depth"]["kind"] == "video"
    rejected = rows[3]
    assert rejected["fields"]["stage"] == "brightness" and "mean brightness" in rejected["fields"]["reason"]
    assert set(rejected["media"]) == {"source"}  # rejected before the edit: its standardised clip, from the marker


def test_filters_and_text_search(run_url):
    assert [row["index"] for row in all_rows(run_url, status="rejected")] == [3]
    assert [row["index"] for row in all_rows(run_url, size=1, status="kept")] == [0, 1, 2]
    assert [row["index"] for row in all_rows(run_url, category="global_freeform")] == [0, 1, 2]
    assert instructions(run_url, q="MIRROR%20the") == ["Mirror the video from left to right."] * 3  # case-insensitive
    assert instructions(run_url, q="balloon") == []
    assert instructions(run_url, q="mirror", status="rejected") == []
    facets = get_json(f"{run_url}api/rows")["facets"]
    assert facets == {"category": ["global_freeform"], "status": ["kept", "rejected"]}


def test_media_served_as_stored_with_ranges(run_url, run):
    stored = (run / pq.read_table(run / "manifest.parquet").to_pylist()[0]["source"]["path"]).read_bytes()
    status, headers, body = get(f"{run_url}media/0/source")
    assert (status, headers["Content-Type"], headers["Accept-Ranges"], body) == (200, "video/mp4", "bytes", stored)
    size = len(stored)
    for header, (start, end) in {"bytes=0-99": (0, 99), "bytes=100-": (100, size - 1), "bytes=-50": (size - 50, size - 1)}.items():
        status, headers, body = get(f"{run_url}media/0/source", {"Range": header})
        assert status == 206 and headers["Content-Range"] == f"bytes {start}-{end}/{size}"
        assert body == stored[start : end + 1] and int(headers["Content-Length"]) == end - start + 1
    status, headers, body = get(f"{run_url}media/0/source", {"Range": f"bytes={size}-"})
    assert (status, headers["Content-Range"], body) == (416, f"bytes */{size}", b"")
    status, headers, body = get(f"{run_url}media/0/source", method="HEAD")
    assert (status, int(headers["Content-Length"]), body) == (200, size, b"")
    status, headers, body = get(f"{run_url}media/0/keyframe")
    assert status == 200 and headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=2-4", 10, (2, 4)),
        ("bytes=2-40", 10, (2, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=0-1,4-5", 10, None),  # several ranges: answered whole
        ("items=0-1", 10, None),
    ],
)
def test_byte_range(header, size, expected):
    assert byte_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=5-2", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_byte_range_not_satisfiable(header, size):
    with pytest.raises(RangeNotSatisfiable):
        byte_range(header, size)


def test_error_rows_carry_the_reason_and_the_page_keeps_working(run_url, run):
    broken = get_json(f"{run_url}api/row/2")
    assert broken["media"]["source"]["ok"] and broken["media"]["source"]["codec"] == "h264"
    assert not broken["media"]["edited"]["ok"] and "cannot be opened as a video" in broken["media"]["edited"]["reason"]
    status, _, body = get(f"{run_url}media/2/edited")
    assert status == 200 and body == BROKEN_BYTES  # served as stored; the check says why it cannot play
    missing = get_json(f"{run_url}api/row/1")["media"]["depth"]
    assert not missing["ok"] and f"{run / 'depth' / 'missing.mp4'} does not exist" in missing["reason"]
    assert get_json(f"{run_url}api/check/1/depth") == {"ok": False, "reason": missing["reason"]}
    status, _, body = get(f"{run_url}media/1/depth")
    assert status == 404 and "missing.mp4 does not exist" in json.loads(body)["error"]
    status, _, body = get(f"{run_url}media/3/edited")
    assert status == 404 and "no media called 'edited' (has source)" in json.loads(body)["error"]
    for path, code, message in [
        ("api/row/99", 404, "no row 99"),
        ("api/rows?page=x", 400, "page must be a whole number"),
        ("api/rows?size=0", 400, "size must be between"),
        ("media/abc/source", 400, "row index must be a whole number"),
        ("static/../server.py", 404, "no such"),
    ]:
        status, _, body = get(run_url + path)
        assert status == code and message in json.loads(body)["error"], (path, body)
    assert len(get_json(f"{run_url}api/rows")["rows"]) == 4  # still serving


def test_page_and_assets_are_served(run_url):
    status, headers, page = get(run_url)
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"/static/app.js" in page
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        status, headers, body = get(f"{run_url}static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind) and body
    assert b"http" not in get(f"{run_url}static/app.js")[2].replace(b"http-", b"")  # nothing fetched from elsewhere


# -- the other sources ---------------------------------------------------------------------------


def check_release_rows(url: str, release, category: str = "", config: str = "all", ordered: bool = True) -> None:
    """Every row of the release config (in metadata order if ``ordered``), and each video's bytes exactly as released."""
    rows = all_rows(url, **({"category": category} if category else {}))
    expected = [row for row in release.rows[config] if not category or row["edited_path"].startswith(category)]
    if ordered:
        assert [row["fields"]["edited_path"] for row in rows] == [row["edited_path"] for row in expected]
    assert sorted(row["fields"]["edited_path"] for row in rows) == sorted(row["edited_path"] for row in expected)
    for row in (rows[0], rows[-1]):
        for column in ("source", "edited"):
            status, _, body = get(url + row["media"][column]["url"].lstrip("/"))
            assert status == 200 and body == release.files[row["fields"][f"{column}_path"]].read_bytes()
    status, headers, body = get(url + rows[-1]["media"]["edited"]["url"].lstrip("/"), {"Range": "bytes=4-11"})
    assert status == 206 and body == b"ftypisom"


def test_local_parquet_folder(release, tmp_path):
    dataset = triplets(release)
    folder = tmp_path / "parquet"
    for number, shard in enumerate((dataset.select(range(5)), dataset.select(range(5, len(dataset))))):
        folder.mkdir(exist_ok=True)
        pq.write_table(shard.data.table, folder / f"train-{number:05d}.parquet", row_group_size=2)
    assert pq.ParquetFile(folder / "train-00000.parquet").metadata.num_row_groups == 3
    with serving(open_source(str(folder))) as url:
        check_release_rows(url, release)
        check_release_rows(url, release, category="local")
        assert [row["index"] for row in all_rows(url, q="watercolor")] == [
            index for index, row in enumerate(release.rows["all"]) if "watercolor" in row["instruction"]
        ]


def test_hub_repo_config(release, hub_server):
    from ditto_hf.hub import publish

    published = publish(triplets(release), "loopback/view", "triplets", max_shard_size=12000, row_group_bytes=5000)
    assert len(published.shards) >= 2
    with serving(open_source("loopback/view:triplets")) as url:
        check_release_rows(url, release)
    with pytest.raises(DittoError, match="loopback/nothing:x: no such dataset"):
        open_source("loopback/nothing:x")


def test_builder_on_a_release(release):
    from ditto_1m import Ditto1M

    streamed = [row["edited_path"] for row in Ditto1M(config_name="local", data_dir=str(release.root)).as_streaming_dataset("train")]
    assert sorted(streamed) == sorted(row["edited_path"] for row in release.rows["local"])
    with serving(open_source("ditto_1m:local", str(release.root))) as url:
        rows = all_rows(url)
        assert [row["fields"]["edited_path"] for row in rows] == streamed  # the builder's order
        check_release_rows(url, release, config="local", ordered=False)
    # with room for two rows' media, earlier rows are read again from the stream
    builder = Ditto1M(config_name="local", data_dir=str(release.root))
    catalog = Catalog(StreamRows(builder.as_streaming_dataset("train"), "local", cached_rows=2), "local")
    assert len(catalog.page(0, 8, {}).rows) == 8
    for index in (7, 0, 5):
        assert catalog.media(index, "source").read() == release.files[catalog.record(index)["source_path"]].read_bytes()


def test_remote_sources_never_read_local_paths():
    with pytest.raises(DittoError, match="stores only a path"):
        Blob.from_cell({"bytes": None, "path": "/etc/hostname"}, None, "row 0 source")


@pytest.mark.parametrize(
    ("source", "data_dir", "message"),
    [
        ("ditto_1m:local", None, "pass --data-dir ROOT"),
        ("/no/such/place", None, "not a run directory, a parquet file or folder"),
        ("EMPTY", None, "no *.parquet files in this folder"),
        ("EMPTY", "/x", "--data-dir goes with the builder source"),
    ],
)
def test_bad_sources_are_one_line(source, data_dir, message, tmp_path):
    with pytest.raises(DittoError, match=message.replace("*", r"\*")):
        open_source(str(tmp_path) if source == "EMPTY" else source, data_dir)


# -- the command -----------------------------------------------------------------------------------


def test_command_prints_the_url_first_serves_and_opens_a_browser(run, tmp_path):
    opened = tmp_path / "opened.txt"
    browser = f"sh -c 'echo $0 > {opened}' %s"  # webbrowser runs $BROWSER with the URL for %s
    process = subprocess.Popen(
        [sys.executable, "-m", "ditto_hf.cli", "view", str(run), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BROWSER": browser},
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        assert [row["index"] for row in get_json(f"{url}api/rows?status=kept")["rows"]] == [0, 1, 2]
        deadline = time.monotonic() + 60
        while not (opened.is_file() and opened.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert opened.read_text().strip() == url
    finally:
        process.terminate()
        process.wait(timeout=60)
    failed = subprocess.run(
        [sys.executable, "-m", "ditto_hf.cli", "view", "/no/such/place", "--no-browser"], capture_output=True, text=True, timeout=300
    )
    assert failed.returncode == 1 and "Error: /no/such/place: not a run directory" in failed.stderr and "Traceback" not in failed.stderr


def test_run_media_show_vace_output_only_when_a_refiner_replaced_it():
    from ditto_hf.view.sources import run_media

    refined = {"edited_path": "refined/a.mp4", "generated_path": "generated/a.mp4", "depth_path": "depth/a.mp4", "keyframe_path": ""}
    assert {name: path for name, path in run_media(refined).items() if path} == {"depth": "depth/a.mp4", "generated": "generated/a.mp4"}
    assert "generated" not in run_media({**refined, "edited_path": "generated/a.mp4"})


def test_scores_stored_as_json_text_by_earlier_runs_arrive_parsed():
    from ditto_hf.view.server import row_json

    row = row_json(4, {"scores": '{"vlm": 0.5}', "reasons": "", "instruction": "x", "media": {"source": "video"}})
    assert row == {
        "index": 4,
        "fields": {"scores": {"vlm": 0.5}, "reasons": {}, "instruction": "x"},
        "media": {"source": {"kind": "video", "url": "/media/4/source"}},
    }
