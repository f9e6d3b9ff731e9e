"""Bad input: a clear error naming the row / file by default, a counted and logged skip on request."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from datasets import load_dataset

import ditto_hf  # noqa: F401  (registers "ditto_1m")
from ditto_1m import Ditto1M
from ditto_hf.errors import BadRowError, DittoError
from ditto_hf.testing.release import MiniRelease, copy_release, make_release, pack_release, write_json

SPACING = 64 * 1024
PART_SIZE = 2048


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> MiniRelease:
    return make_release(tmp_path_factory.mktemp("bad") / "extracted", dirs=2, sources_per_dir=2)


def damaged(clean: MiniRelease, tmp_path, layout: str, damage=None, **pack_options) -> MiniRelease:
    """A copy of the clean extracted release, damaged by ``damage(copy)``, then packed if asked."""
    copy = copy_release(clean, tmp_path / "extracted")
    copy.files = {path: _file_in(copy, path) for path in clean.files}
    if damage:
        damage(copy)
    if layout == "packed":
        return pack_release(copy, tmp_path / "packed", part_size=PART_SIZE, **pack_options)
    return copy


def _file_in(release: MiniRelease, release_path: str):
    category, inside = release_path.split("/", 1)
    nested = release.root / "videos" / category / category
    return (nested if nested.is_dir() else release.root / "videos" / category) / inside


def stream_all(root, config: str, **options) -> list[dict]:
    dataset = load_dataset(
        "ditto_1m", name=config, data_dir=str(root), streaming=True, split="train", seek_point_spacing=SPACING, **options
    )
    return list(dataset.decode(False))


def skip_stream(root, config: str) -> tuple[list[dict], Ditto1M]:
    builder = Ditto1M(config_name=config, data_dir=str(root), on_bad_rows="skip", seek_point_spacing=SPACING)
    return list(builder.as_streaming_dataset("train").decode(False)), builder


def add_metadata(release: MiniRelease, name: str, rows) -> None:
    write_json(release.root / "training_metadata" / f"{name}.json", rows)


@pytest.mark.parametrize("layout", ["extracted", "packed"])
def test_row_pointing_to_a_missing_file(clean, tmp_path, layout, caplog):
    release = damaged(clean, tmp_path, layout)
    good = clean.rows["local"][:3]
    add_metadata(release, "broken", good + [{**good[0], "edited_path": "local/0000/0123456789abcdef_9.mp4"}])
    with pytest.raises(BadRowError, match=r"broken\.json row 3: edited_path local/0000/0123456789abcdef_9\.mp4 is not in the release"):
        stream_all(release.root, "broken")
    caplog.set_level(logging.WARNING, logger="ditto_hf.builders")
    rows, builder = skip_stream(release.root, "broken")
    assert sorted(row["edited_path"] for row in rows) == sorted(row["edited_path"] for row in good)
    assert builder.bad_rows.skipped == 1
    assert "skipped 1 bad row(s)" in caplog.text and "row 3" in caplog.text


def _break_two_edits(release: MiniRelease) -> None:
    garbage, truncated = release.rows["local"][0]["edited_path"], release.rows["local"][1]["edited_path"]
    release.files[garbage].write_bytes(b"this is not a video " * 50)
    data = release.files[truncated].read_bytes()
    release.files[truncated].write_bytes(data[: len(data) * 2 // 3])


@pytest.mark.parametrize("layout", ["extracted", "packed"])
def test_corrupt_and_truncated_mp4s(clean, tmp_path, layout, caplog):
    release = damaged(clean, tmp_path, layout, _break_two_edits)
    broken = {row["edited_path"] for row in clean.rows["local"][:2]}
    with pytest.raises(BadRowError) as error:
        stream_all(release.root, "local")
    message = str(error.value)
    assert "local.json row" in message and any(path in message for path in broken)
    assert "truncated" in message or "not an mp4" in message
    caplog.set_level(logging.WARNING, logger="ditto_hf.builders")
    rows, builder = skip_stream(release.root, "local")
    assert {row["edited_path"] for row in rows} == {row["edited_path"] for row in clean.rows["local"]} - broken
    assert builder.bad_rows.skipped == 2 and "skipped 2 bad row(s)" in caplog.text
    assert all(path in caplog.text for path in broken)


def _truncate_last_part(release: MiniRelease) -> int:
    parts = sorted((release.root / "videos/local").glob("local.tar.gz.*"))
    data = parts[-1].read_bytes()
    parts[-1].write_bytes(data[: len(data) // 3])
    return len(parts)


def test_truncated_last_part(clean, tmp_path, caplog):
    release = damaged(clean, tmp_path, "packed")
    count = _truncate_last_part(release)
    with pytest.raises(DittoError, match=rf"local\.tar\.gz\.\*: the archive is truncated \(the last part, local\.tar\.gz\.{count:02d}"):
        stream_all(release.root, "local")
    caplog.set_level(logging.WARNING, logger="ditto_hf.builders")
    rows, builder = skip_stream(release.root, "local")
    assert 0 < len(rows) < len(clean.rows["local"])
    assert builder.bad_rows.skipped == len(clean.rows["local"]) - len(rows)
    assert "the archive is truncated" in caplog.text


def test_missing_part_number(clean, tmp_path):
    release = damaged(clean, tmp_path, "packed")
    parts = sorted((release.root / "videos/local").glob("local.tar.gz.*"))
    assert len(parts) >= 3
    parts[1].unlink()
    with pytest.raises(DittoError, match=r"archive part\(s\) local\.tar\.gz\.02 missing"):
        stream_all(release.root, "all")
    rows, builder = skip_stream(release.root, "all")
    assert not any(row["category"] == "local" for row in rows)
    assert len(rows) == len(clean.rows["all"]) - len(clean.rows["local"])
    assert builder.bad_rows.skipped == len(clean.rows["local"])


def test_malformed_json_names_the_file_and_position(clean, tmp_path):
    release = damaged(clean, tmp_path, "extracted")
    (release.root / "training_metadata" / "broken.json").write_text('[{"source_path": "source/0000/a.mp4",\n  "instruction": }]')
    for options in ({}, {"on_bad_rows": "skip"}):  # nothing can be salvaged from a file that does not parse
        with pytest.raises(DittoError, match=r"broken\.json: malformed JSON at line 2 column"):
            stream_all(release.root, "broken", **options)
    add_metadata(release, "not_an_array", {"rows": []})
    with pytest.raises(DittoError, match="expected a JSON array"):
        stream_all(release.root, "not_an_array")


def test_malformed_rows_are_named(clean, tmp_path):
    release = damaged(clean, tmp_path, "extracted")
    good = clean.rows["local"][0]
    rows = [good, "just a string", {"source_path": good["source_path"], "edited_path": good["edited_path"]}, {**good, "instruction": 7}]
    add_metadata(release, "odd", rows)
    with pytest.raises(BadRowError, match=r"odd\.json row 1: expected an object"):
        stream_all(release.root, "odd")
    yielded, builder = skip_stream(release.root, "odd")
    assert [row["edited_path"] for row in yielded] == [good["edited_path"]] and builder.bad_rows.skipped == 3


@pytest.mark.parametrize(
    ("bad_path", "reason"),
    [("../../etc/passwd.mp4", "contains '..'"), ("/etc/source/0000/x.mp4", "absolute path"), ("file:///etc/0000/x.mp4", "is a URL")],
)
def test_paths_that_leave_the_videos_folder(clean, tmp_path, bad_path, reason):
    release = damaged(clean, tmp_path, "extracted")
    good = clean.rows["local"][0]
    add_metadata(release, "escape", [good, {**good, "source_path": bad_path}])
    with pytest.raises(BadRowError, match=rf"escape\.json row 1: source_path .* {reason}"):
        stream_all(release.root, "escape")
    yielded, builder = skip_stream(release.root, "escape")
    assert len(yielded) == 1 and builder.bad_rows.skipped == 1


def test_unsafe_member_names_inside_an_archive(clean, tmp_path, caplog):
    unsafe = {"local": {"../../outside.mp4": b"x" * 10, "/absolute/outside.mp4": b"y" * 10}}
    release = damaged(clean, tmp_path, "packed", extra_members=unsafe)
    with pytest.raises(DittoError, match=r"member names with '\.\.' or absolute paths: ") as error:
        stream_all(release.root, "local")
    assert "../../outside.mp4" in str(error.value) and "/absolute/outside.mp4" in str(error.value)
    caplog.set_level(logging.WARNING, logger="ditto_hf.builders")
    rows, _ = skip_stream(release.root, "local")
    assert len(rows) == len(clean.rows["local"])
    assert "member names with '..' or absolute paths" in caplog.text


def test_unknown_bad_row_policy_is_rejected(clean):
    with pytest.raises(DittoError, match="on_bad_rows must be one of raise, skip"):
        Ditto1M(config_name="local", data_dir=str(clean.root), on_bad_rows="ignore")


@pytest.mark.parametrize("threads", [0, -2, 1.5, "4", True])
def test_read_threads_must_be_a_whole_number_of_at_least_one(clean, threads):
    with pytest.raises(DittoError, match=rf"read_threads must be a whole number of at least 1 .*got {threads!r}"):
        Ditto1M(config_name="local", data_dir=str(clean.root), read_threads=threads)


def test_a_published_index_of_other_parts_is_refused(clean, tmp_path):
    from ditto_hf.builders.packed import PackedCategory, find_parts, index_name
    from ditto_hf.builders.release import ReleaseRoot

    old = damaged(clean, tmp_path / "old", "packed")
    old_root = ReleaseRoot(str(old.root))
    stale = Path(PackedCategory(old_root, "local", find_parts(old_root, "local"), tmp_path / "cache-old", spacing=SPACING).publish_index())
    repacked = pack_release(old, tmp_path / "repacked", part_size=PART_SIZE * 2)  # same members, other parts
    shutil.copy(stale, repacked.root / "videos" / "local" / index_name("local"))
    with pytest.raises(DittoError, match=r"local\.tar\.gz\.index\.sqlite was built for other archive parts .* ditto-hf index"):
        stream_all(repacked.root, "local")


def test_truncated_middle_part(clean, tmp_path):
    release = damaged(clean, tmp_path, "packed")
    parts = sorted((release.root / "videos/local").glob("local.tar.gz.*"))
    parts[1].write_bytes(parts[1].read_bytes()[: PART_SIZE // 2])
    with pytest.raises(DittoError, match=r"local\.tar\.gz\.\*: the \d+ part\(s\) do not read as one gzip-compressed tar .* re-download"):
        stream_all(release.root, "local")
    rows, builder = skip_stream(release.root, "all")
    assert not any(row["category"] == "local" for row in rows)
    assert builder.bad_rows.skipped == len(clean.rows["local"])


def test_rows_of_a_missing_category_are_named(clean, tmp_path):
    release = damaged(clean, tmp_path, "extracted")
    shutil.rmtree(release.root / "videos" / "global_freeform1")
    with pytest.raises(
        BadRowError,
        match=r"global\.json row \d+: edited_path global_freeform1/.*neither extracted videos nor global_freeform1\.tar\.gz\.NN parts",
    ):
        stream_all(release.root, "global")
    rows, builder = skip_stream(release.root, "global")
    freeform = [row for row in clean.rows["global"] if row["edited_path"].startswith("global_freeform1/")]
    assert len(rows) == len(clean.rows["global"]) - len(freeform) and builder.bad_rows.skipped == len(freeform)


def _blank_moov(release: MiniRelease) -> str:
    """An edit whose boxes are intact but whose ``moov`` payload is zeros: only a decoder notices."""
    import struct

    path = release.rows["local"][0]["edited_path"]
    data = bytearray(release.files[path].read_bytes())
    offset = 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if kind == b"moov":
            data[offset + 8 : offset + size] = bytes(size - 8)
        offset += size
    release.files[path].write_bytes(bytes(data))
    return path


def test_container_check_by_default_and_a_decoder_probe_on_request(clean, tmp_path):
    release = damaged(clean, tmp_path, "extracted", _blank_moov)
    broken = clean.rows["local"][0]["edited_path"]
    assert len(stream_all(release.root, "local")) == len(clean.rows["local"])  # the boxes are whole: the cheap check passes
    with pytest.raises(BadRowError, match=rf"local\.json row 0: edited_path: {broken}"):
        stream_all(release.root, "local", verify_videos="full")
    with pytest.raises(DittoError, match="verify_videos must be"):
        stream_all(release.root, "local", verify_videos="thorough")
