"""Check a Hub repo (or a local folder with the same layout) the way the dataset viewer sees it.

Findings cover: the card's YAML (valid, ``configs:`` with ``config_name``, ``dataset_info:``,
licence); every parquet file once (row groups under the viewer's 300 MB scan limit, sizes); every
data folder's ``manifest.json`` (every shard listed, row counts, SHA-256 of the actual bytes);
each config's first rows streamed with plain ``datasets`` (video stream at index 0, decodable,
first-rows payload size). A composed repo (``composition.json``: the release mirror) is also
checked as a whole: each config lists the folders recorded for it and has as many rows as its
metadata file, no row is in two parts, and no video bytes are stored twice: an edited video once
in the repo, a source once per part that uses it (sources are embedded in every row so that each
row is a complete triplet; the figure is reported).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import json
import os
import posixpath
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from datasets import Video
from datasets.utils.metadata import MetadataConfigs
from fsspec.implementations.local import LocalFileSystem
from huggingface_hub import DatasetCard, HfApi, HfFileSystem

from ditto_hf.errors import DittoError
from ditto_hf.hub.card import COMPOSITION_PATH, LICENSE, declared_configs, manifest_path
from ditto_hf.hub.retry import dataset_repo_id, explained_hub_errors, with_retries

VIEWER_SCAN_LIMIT = 300_000_000  # a row group the viewer must scan may not be bigger (TooBigContentError)
ROW_GROUP_TARGET = 100_000_000
SHARD_FILE_TARGET = 1_000_000_000
FIRST_ROWS_PAYLOAD = 200_000  # the viewer's first-rows response budget
FIRST_ROWS = 100  # rows the viewer's first-rows response holds
KEY_COLUMNS = ("source_path", "edited_path", "instruction")
VIDEO_COLUMNS = ("source", "edited")
#: Bytes a column chunk may store beyond its distinct values (length prefixes, page headers).
CHUNK_SLACK = 4096
VALUE_SLACK = 8


@dataclass(frozen=True)
class Finding:
    """One result: ``level`` is ``"error"``, ``"warning"`` or ``"ok"``; ``where`` names config / file."""

    level: str
    where: str
    message: str


@dataclass
class CheckReport:
    target: str
    configs: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    def add(self, level: str, where: str, message: str) -> None:
        self.findings.append(Finding(level, where, message))


@dataclass
class _FileFacts:
    """What one pass over a parquet file found."""

    size: int
    recorded_sha256: str | None  # what the Hub recorded at upload (LFS files)
    sha256: str | None = None  # of the bytes, when verified
    num_rows: int = 0
    row_groups: list[int] = field(default_factory=list)  # total_byte_size of each
    keys: list[tuple] | None = None
    chunks: list[tuple] | None = None  # (column, row group, [(sha256, size) of each value], stored bytes)
    unreadable: bool = False  # reported already; nothing else to compare


def check(repo_or_dir: str | os.PathLike, *, token: str | None = None, first_rows: int = 5, verify_sha256: bool = True) -> CheckReport:
    """Check a dataset repo id (``ns/name``) or a local folder; see the module docstring."""
    target = _Target.of(repo_or_dir, token)
    report = CheckReport(target.name)
    card = _check_card(target, report)
    if card is None:
        return report
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    report.configs = list(configs)
    composition = _read_composition(target, report)
    composed = _composed_folders(composition)
    files_of = {name: _check_files(target, name, config, report) for name, config in configs.items()}
    every_file = {path: info for files in files_of.values() for path, info in files.items()}
    facts = {}
    for path, info in every_file.items():
        folder = posixpath.dirname(path)
        try:
            keys = folder in composed
            facts[path] = _scan(target, path, info, sha256=verify_sha256, keys=keys, videos=verify_sha256 and keys)
        except (OSError, pa.ArrowException) as error:  # truncated or corrupted: exactly what check exists to catch
            report.add("error", path, f"not a readable parquet file ({' '.join(str(error).split())[:200]}); republish the config")
            facts[path] = _FileFacts(size=info["size"], recorded_sha256=_recorded_sha256(info), unreadable=True)
            continue
        _check_parquet(path, facts[path], report)
    manifests = {}
    for folder in dict.fromkeys(posixpath.dirname(path) for path in every_file):
        in_folder = {path: facts[path] for path in every_file if posixpath.dirname(path) == folder}
        manifests[folder] = _check_manifest(target, folder, in_folder, report, verify_sha256)
    for name, config in configs.items():
        broken = [path for path in files_of[name] if facts[path].unreadable]
        if broken:
            report.add("warning", name, f"first rows not streamed: {len(broken)} unreadable parquet file(s), e.g. {broken[0]}")
        elif files_of[name]:
            _check_first_rows(target, name, config, report, first_rows)
    if composition is not None:
        _check_composition(composition, card.data, files_of, facts, manifests, report, verify_sha256)
    return report


class _Target:
    """Files of a repo (through HfFileSystem) or a folder (local filesystem), addressed by repo path."""

    def __init__(self, name: str, fs, base: str, dataset_ref: str, token: str | None):
        self.name, self.fs, self.base, self.dataset_ref, self.token = name, fs, base, dataset_ref, token

    @classmethod
    def of(cls, repo_or_dir: str | os.PathLike, token: str | None) -> _Target:
        """A folder, or a dataset repo (``ns/name`` or ``hf://datasets/ns/name``) that exists."""
        text = os.fspath(repo_or_dir)
        path = Path(text).expanduser()
        if path.is_dir():
            base = str(path.absolute())
            return cls(base, LocalFileSystem(), base, base, token)
        if path.exists():
            raise DittoError(f"{text}: a file; check a folder laid out like a dataset repo, or a repo id NAMESPACE/NAME")
        if not isinstance(repo_or_dir, str) or text.startswith((".", "/", "~")) or os.sep != "/" and os.sep in text:
            raise DittoError(f"{text}: no such folder")
        if not text.startswith("hf://") and text.count("/") > 1:
            raise DittoError(f"{text}: no such folder, and not a dataset repo id (NAMESPACE/NAME)")
        name = dataset_repo_id(text)
        with explained_hub_errors(name):
            with_retries(HfApi(token=token).repo_info, name, repo_type="dataset")
        return cls(name, HfFileSystem(token=token), f"datasets/{name}", name, token)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def full(self, path: str) -> str:
        return f"{self.base}/{path}"

    def read_text(self, path: str) -> str | None:
        try:
            with self.fs.open(self.full(path), "rb") as source:
                return source.read().decode("utf-8")
        except FileNotFoundError:
            return None

    def glob(self, pattern: str) -> dict[str, dict]:
        """``repo path -> fsspec info`` (``size``; ``lfs`` on the Hub) of the files matching ``pattern``."""
        found = self.fs.find(self.base, detail=True)
        prefix = self.base.rstrip("/") + "/"
        files = {name[len(prefix) :]: info for name, info in found.items() if info["type"] == "file"}
        return {path: info for path, info in sorted(files.items()) if fnmatch.fnmatch(path, pattern)}

    @contextlib.contextmanager
    def local_copy(self, path: str):
        """A local file with the bytes of ``path`` (downloaded once for a Hub repo, removed afterwards)."""
        if self.is_local:
            yield self.full(path)
            return
        with tempfile.TemporaryDirectory(prefix="ditto-hf-check-") as folder:
            local = os.path.join(folder, "file.parquet")
            self.fs.get_file(self.full(path), local)
            yield local


def _check_card(target: _Target, report: CheckReport) -> DatasetCard | None:
    text = target.read_text("README.md")
    if text is None:
        report.add("error", "README.md", "missing: the viewer needs a dataset card with `configs:`")
        return None
    try:
        card = DatasetCard(text)
        configs = MetadataConfigs.from_dataset_card_data(card.data)
    except (ValueError, yaml.YAMLError) as error:
        report.add("error", "README.md", f"invalid card YAML: {' '.join(str(error).split())}")
        return None
    if not configs:
        report.add("error", "README.md", "no `configs:` in the card YAML")
        return None
    report.add("ok", "README.md", f"valid YAML, configs: {', '.join(configs)}")
    if not card.data.license:
        report.add("warning", "README.md", "no `license:` in the card YAML")
    elif card.data.license != LICENSE and target.read_text(COMPOSITION_PATH) is not None:
        report.add("warning", "README.md", f"licence is {card.data.license!r}, the Ditto-1M release mirrored here is {LICENSE}")
    infos = card.data.get("dataset_info") or []
    described = {info.get("config_name", "default") for info in (infos if isinstance(infos, list) else [infos])}
    for name in configs:
        if name not in described:
            report.add("warning", "README.md", f"config {name!r} has no `dataset_info:` entry (no row counts)")
    return card


def _read_composition(target: _Target, report: CheckReport) -> dict | None:
    text = target.read_text(COMPOSITION_PATH)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        report.add("error", COMPOSITION_PATH, f"not valid JSON ({error}); mirror the release again")
        return None


def _composed_folders(composition: dict | None) -> set[str]:
    """The disjoint parts of a composed repo (folders that copy rows on purpose excluded)."""
    if composition is None:
        return set()
    return set(composition.get("folders", {})) - set(composition.get("copies", []))


def _patterns(config: dict) -> list[str]:
    data_files = config.get("data_files") or []
    if isinstance(data_files, str):
        return [data_files]
    patterns = []
    for entry in data_files:
        paths = entry["path"] if isinstance(entry, dict) else entry
        patterns.extend([paths] if isinstance(paths, str) else paths)
    return patterns


def _check_files(target: _Target, name: str, config: dict, report: CheckReport) -> dict[str, dict]:
    files: dict[str, dict] = {}
    for pattern in _patterns(config):
        files.update(target.glob(pattern))
    if not files:
        report.add("error", name, f"no data files match {_patterns(config)}")
        return {}
    for path in files:
        if not path.endswith(".parquet"):
            report.add("warning", path, "not parquet: the viewer converts only the first 5 GB of other formats")
    parquet = {path: info for path, info in files.items() if path.endswith(".parquet")}
    report.add("ok", name, f"{len(parquet)} parquet file(s), {sum(info['size'] for info in parquet.values()) / 1e6:.1f} MB")
    return parquet


def _scan(target: _Target, path: str, info: dict, *, sha256: bool, keys: bool, videos: bool) -> _FileFacts:
    """One pass over a parquet file: its footer, and as asked its SHA-256, row keys and video hashes."""
    facts = _FileFacts(size=info["size"], recorded_sha256=_recorded_sha256(info))
    with contextlib.ExitStack() as stack:
        if sha256 or videos:
            local = stack.enter_context(target.local_copy(path))
            facts.sha256 = _sha256_file(local) if sha256 else None
            parquet = pq.ParquetFile(local)
        else:
            parquet = pq.ParquetFile(stack.enter_context(target.fs.open(target.full(path), "rb")))
        metadata = parquet.metadata
        facts.num_rows = metadata.num_rows
        facts.row_groups = [metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)]
        if keys:
            table = parquet.read(columns=list(KEY_COLUMNS))
            facts.keys = list(zip(*(table.column(name).to_pylist() for name in KEY_COLUMNS), strict=True))
        if videos:
            facts.chunks = list(_video_chunks(parquet))
    return facts


def _video_chunks(parquet: pq.ParquetFile):
    """``(column, row group, [(sha256, size) per value], stored bytes)`` of every video column chunk."""
    metadata = parquet.metadata
    leaves = {metadata.schema.column(i).path: i for i in range(metadata.num_columns)}
    for group in range(metadata.num_row_groups):
        for column in VIDEO_COLUMNS:
            leaf = leaves.get(f"{column}.bytes")
            if leaf is None:
                continue
            values = parquet.read_row_group(group, columns=[f"{column}.bytes"]).column(column).combine_chunks().field("bytes")
            cells = [(hashlib.sha256(value).hexdigest(), len(value)) for value in values.to_pylist() if value is not None]
            yield column, group, cells, metadata.row_group(group).column(leaf).total_uncompressed_size


def _check_parquet(path: str, facts: _FileFacts, report: CheckReport) -> None:
    biggest = max(facts.row_groups, default=0)
    if biggest > VIEWER_SCAN_LIMIT:
        report.add("error", path, f"row group of {biggest / 1e6:.0f} MB exceeds the viewer's 300 MB scan limit")
    elif biggest > ROW_GROUP_TARGET:
        report.add("warning", path, f"row group of {biggest / 1e6:.0f} MB (aim for <= 100 MB)")
    if facts.size > SHARD_FILE_TARGET:
        report.add("warning", path, f"file of {facts.size / 1e9:.2f} GB (aim for <= 1 GB)")


def _check_manifest(target: _Target, folder: str, files: dict[str, _FileFacts], report: CheckReport, verify_sha256: bool) -> dict | None:
    text = target.read_text(manifest_path(folder))
    if text is None:
        report.add("warning", folder, f"no {manifest_path(folder)}: shard checksums cannot be verified")
        return None
    manifest = json.loads(text)
    shards = {shard["path"]: shard for shard in manifest["shards"]}
    for path in sorted(set(shards) - set(files)):
        report.add("error", path, "listed in the manifest but missing from the repo")
    for path in sorted(set(files) - set(shards)):
        report.add("error", path, "not in the manifest: left over from another publish?")
    bad = 0
    for path in sorted(set(shards) & set(files)):
        expected, facts = shards[path], files[path]
        if facts.unreadable:
            bad += 1
        elif facts.size != expected["size"]:
            report.add("error", path, f"size {facts.size} differs from the manifest's {expected['size']}")
            bad += 1
        elif facts.recorded_sha256 is not None and facts.recorded_sha256 != expected["sha256"]:
            report.add(
                "error",
                path,
                f"the Hub records SHA-256 {facts.recorded_sha256[:12]}…, the manifest {expected['sha256'][:12]}… "
                "(replaced after publishing?)",
            )
            bad += 1
        elif verify_sha256 and facts.sha256 != expected["sha256"]:
            report.add(
                "error",
                path,
                f"SHA-256 mismatch: manifest {expected['sha256'][:12]}…, bytes {facts.sha256[:12]}… (corrupted; republish)",
            )
            bad += 1
    if not bad:
        what = "SHA-256 of every byte verified" if verify_sha256 else "sizes and recorded SHA-256 match"
        report.add("ok", folder, f"manifest: {len(shards)} shard(s), {what}")
    return manifest


def _recorded_sha256(info: dict) -> str | None:
    """The SHA-256 the Hub recorded at upload (LFS files), without downloading anything."""
    lfs = info.get("lfs")
    if lfs is None:
        return None
    return lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_composition(
    composition: dict,
    card_data,
    files_of: dict[str, dict],
    facts: dict[str, _FileFacts],
    manifests: dict[str, dict | None],
    report: CheckReport,
    verify_sha256: bool,
) -> None:
    """Configs vs ``composition.json``, row counts vs the metadata files, disjoint parts, videos stored once."""
    declared = {config.name: config for config in declared_configs(card_data)}
    for name, entry in composition.get("configs", {}).items():
        if name not in declared:
            report.add("error", name, f"in {COMPOSITION_PATH} but not declared in the card's `configs:`")
            continue
        if list(declared[name].folders) != entry["folders"]:
            report.add("error", name, f"the card reads {list(declared[name].folders)}, {COMPOSITION_PATH} says {entry['folders']}")
            continue
        _check_rows(name, entry, sum(facts[path].num_rows for path in files_of.get(name, {})), manifests, report)
    parts = _composed_folders(composition)
    part_files = {path: fact for path, fact in facts.items() if posixpath.dirname(path) in parts}
    _check_disjoint(part_files, composition.get("shared_keys", 0), report)
    if verify_sha256:
        _check_video_storage(part_files, composition.get("shared_keys", 0), report)
    else:
        report.add("warning", COMPOSITION_PATH, "video storage not checked (the shards' bytes were not read: --no-sha256)")


def _check_rows(name: str, entry: dict, rows: int, manifests: dict[str, dict | None], report: CheckReport) -> None:
    expected = entry.get("expected_rows")
    source = entry.get("metadata_file", "its source")
    if expected is None or rows == expected:
        report.add("ok", name, f"{rows} rows, as {source}" if expected is not None else f"{rows} rows")
        return
    skipped = entry.get("bad_entries", 0) + sum(
        len(shard.get("skipped_rows", [])) for folder in entry["folders"] for shard in (manifests.get(folder) or {}).get("shards", [])
    )
    if rows + skipped == expected:
        report.add("warning", name, f"{rows} rows, {source} has {expected}: {skipped} bad row(s) were skipped when mirroring")
    else:
        report.add("error", name, f"{rows} rows, {source} has {expected}: the config does not match its metadata file; mirror again")


def _check_disjoint(part_files: dict[str, _FileFacts], shared_keys: int, report: CheckReport) -> None:
    holders: dict[tuple, set[str]] = defaultdict(set)
    for path, fact in part_files.items():
        for key in fact.keys or []:
            holders[key].add(posixpath.dirname(path))
    shared = [(key, sorted(folders)) for key, folders in holders.items() if len(folders) > 1]
    if len(shared) > shared_keys:
        (source, edited, _), folders = shared[0]
        report.add(
            "error", COMPOSITION_PATH, f"parts overlap: {len(shared)} row(s) are in several parts, e.g. {source} -> {edited} in {folders}"
        )
        return
    note = f" ({shared_keys} row(s) repeated by the metadata files themselves)" if shared_keys else ""
    report.add("ok", COMPOSITION_PATH, f"{len(part_files)} part file(s), {len(holders)} distinct rows, no row in two parts{note}")


def _check_video_storage(part_files: dict[str, _FileFacts], shared_keys: int, report: CheckReport) -> None:
    distinct: dict[str, int] = {}
    edited_in: dict[str, set[str]] = defaultdict(set)
    stored_copies = stored_bytes = 0
    for path, fact in part_files.items():
        for column, group, cells, stored in fact.chunks or []:
            unique = dict(cells)
            distinct.update(unique)
            stored_copies += len(unique)
            stored_bytes += sum(unique.values())
            if stored > sum(unique.values()) + VALUE_SLACK * len(cells) + CHUNK_SLACK:
                report.add(
                    "error",
                    path,
                    f"row group {group}: column {column} stores repeated video bytes ({stored} bytes for {sum(unique.values())} distinct)",
                )
            if column == "edited":
                for digest in unique:
                    edited_in[digest].add(posixpath.dirname(path))
    twice = [digest for digest, folders in edited_in.items() if len(folders) > 1]
    if len(twice) > shared_keys:
        report.add(
            "error", COMPOSITION_PATH, f"{len(twice)} edited video(s) stored in several parts, e.g. in {sorted(edited_in[twice[0]])}"
        )
    distinct_bytes = sum(distinct.values())
    report.add(
        "ok",
        COMPOSITION_PATH,
        f"videos: {len(distinct)} distinct ({distinct_bytes / 1e6:.2f} MB) stored as {stored_copies} copies "
        f"({stored_bytes / 1e6:.2f} MB): each edited video once, each source once per part row group that uses it "
        f"(sources are embedded in every row so that each row is a complete triplet)",
    )


def _check_first_rows(target: _Target, name: str, config: dict, report: CheckReport, count: int) -> None:
    import datasets

    split = next((e["split"] for e in config.get("data_files") or [] if isinstance(e, dict)), "train")
    try:
        stream = datasets.load_dataset(target.dataset_ref, name, split=split, streaming=True, token=target.token)
        video_columns = [column for column, feature in stream.features.items() if isinstance(feature, Video)]
        rows = list(stream.decode(False).take(count))
    except Exception as error:  # the viewer shows this config as broken
        report.add("error", name, f"first rows cannot be streamed with datasets: {type(error).__name__}: {error}")
        return
    if not rows:
        report.add("error", name, "no rows")
        return
    problems = [
        message
        for index, row in enumerate(rows)
        for column in video_columns
        if (message := _video_problem(row[column], f"row {index} {column}"))
    ]
    for message in problems:
        report.add("error", name, message)
    payload = len(json.dumps([_without_media(row, video_columns) for row in rows], default=str).encode())
    estimate = payload * FIRST_ROWS // len(rows)
    if estimate > FIRST_ROWS_PAYLOAD:
        report.add(
            "warning",
            name,
            f"first-rows payload ≈{estimate / 1e3:.0f} KB for {FIRST_ROWS} rows (viewer budget 200 KB): cells will be truncated",
        )
    if not problems:
        report.add("ok", name, f"first {len(rows)} row(s) stream; videos decode, video stream at index 0")


def _video_problem(cell: dict | None, where: str) -> str | None:
    """Why a video cell would not play in the viewer / decode remotely, or None."""
    import av

    from ditto_hf.video import VideoError, read_frames

    if not cell or not cell.get("bytes"):
        return f"{where}: no embedded video bytes"
    try:
        with av.open(io.BytesIO(cell["bytes"])) as container:
            if not container.streams or container.streams[0].type != "video":
                kinds = [stream.type for stream in container.streams]
                return f"{where}: stream 0 is {kinds[0] if kinds else 'missing'}, the video must be stream 0 ({kinds})"
        read_frames(cell["bytes"], num_frames=1)
    except (av.FFmpegError, VideoError) as error:
        return f"{where}: cannot be decoded ({error})"
    return None


def _without_media(row: dict, video_columns: list[str]) -> dict:
    return {key: (value.get("path") if key in video_columns and value else value) for key, value in row.items()}
