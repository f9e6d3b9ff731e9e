"""Check a Hub repo (or a local folder with the same layout) the way the dataset viewer sees it.

Findings cover: the card's YAML (valid, ``configs:`` with ``config_name``, ``dataset_info:``,
licence), each config's parquet files (row groups under the viewer's 300 MB scan limit, sizes),
its ``manifest.json`` (every shard listed, row counts, SHA-256 of the actual bytes), and its
first rows streamed with plain ``datasets`` (video stream at index 0, decodable, first-rows
payload size).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from datasets import Video
from datasets.utils.metadata import MetadataConfigs
from fsspec.implementations.local import LocalFileSystem
from huggingface_hub import DatasetCard, HfFileSystem

from ditto_hf.errors import DittoError
from ditto_hf.hub.card import LICENSE, manifest_path

VIEWER_SCAN_LIMIT = 300_000_000  # a row group the viewer must scan may not be bigger (TooBigContentError)
ROW_GROUP_TARGET = 100_000_000
SHARD_FILE_TARGET = 1_000_000_000
FIRST_ROWS_PAYLOAD = 200_000  # the viewer's first-rows response budget
FIRST_ROWS = 100  # rows the viewer's first-rows response holds


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


def check(repo_or_dir: str | os.PathLike, *, token: str | None = None, first_rows: int = 5, verify_sha256: bool = True) -> CheckReport:
    """Check a dataset repo id (``ns/name``) or a local folder; see the module docstring."""
    target = _Target.of(repo_or_dir, token)
    report = CheckReport(target.name)
    card = _check_card(target, report)
    if card is None:
        return report
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    report.configs = list(configs)
    for name, config in configs.items():
        files = _check_files(target, name, config, report)
        if files:
            _check_manifest(target, name, files, report, verify_sha256)
            _check_first_rows(target, name, config, report, first_rows)
    return report


class _Target:
    """Files of a repo (through HfFileSystem) or a folder (local filesystem), addressed by repo path."""

    def __init__(self, name: str, fs, base: str, dataset_ref: str, token: str | None):
        self.name, self.fs, self.base, self.dataset_ref, self.token = name, fs, base, dataset_ref, token

    @classmethod
    def of(cls, repo_or_dir: str | os.PathLike, token: str | None) -> _Target:
        path = Path(repo_or_dir)
        if path.is_dir():
            base = str(path.absolute())
            return cls(base, LocalFileSystem(), base, base, token)
        name = os.fspath(repo_or_dir)
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", name):
            raise DittoError(f"{name}: neither a folder nor a dataset repo id like 'namespace/name'")
        return cls(name, HfFileSystem(token=token), f"datasets/{name}", name, token)

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

    def sha256(self, path: str) -> str:
        digest = hashlib.sha256()
        with self.fs.open(self.full(path), "rb", block_size=8 << 20) as source:
            while chunk := source.read(8 << 20):
                digest.update(chunk)
        return digest.hexdigest()


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
    if card.data.license != LICENSE:
        report.add("warning", "README.md", f"licence is {card.data.license!r}, Ditto-1M data is {LICENSE}")
    infos = card.data.get("dataset_info") or []
    described = {info.get("config_name", "default") for info in (infos if isinstance(infos, list) else [infos])}
    for name in configs:
        if name not in described:
            report.add("warning", "README.md", f"config {name!r} has no `dataset_info:` entry (no row counts)")
    return card


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
    for path, info in files.items():
        size = info["size"]
        if not path.endswith(".parquet"):
            report.add("warning", path, "not parquet: the viewer converts only the first 5 GB of other formats")
            continue
        with target.fs.open(target.full(path), "rb") as source:
            metadata = pq.ParquetFile(source).metadata
        groups = [metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)]
        biggest = max(groups, default=0)
        if biggest > VIEWER_SCAN_LIMIT:
            report.add("error", path, f"row group of {biggest / 1e6:.0f} MB exceeds the viewer's 300 MB scan limit")
        elif biggest > ROW_GROUP_TARGET:
            report.add("warning", path, f"row group of {biggest / 1e6:.0f} MB (aim for <= 100 MB)")
        if size > SHARD_FILE_TARGET:
            report.add("warning", path, f"file of {size / 1e9:.2f} GB (aim for <= 1 GB)")
    report.add("ok", name, f"{len(files)} parquet file(s), {sum(info['size'] for info in files.values()) / 1e6:.1f} MB")
    return files


def _check_manifest(target: _Target, name: str, files: dict[str, dict], report: CheckReport, verify_sha256: bool) -> None:
    text = target.read_text(manifest_path(name))
    if text is None:
        report.add("warning", name, f"no {manifest_path(name)}: shard checksums cannot be verified")
        return
    shards = {shard["path"]: shard for shard in json.loads(text)["shards"]}
    for path in sorted(set(shards) - set(files)):
        report.add("error", path, "listed in the manifest but missing from the repo")
    for path in sorted(set(files) - set(shards)):
        report.add("error", path, "not in the manifest: left over from another publish?")
    bad = 0
    for path in sorted(set(shards) & set(files)):
        expected, info = shards[path], files[path]
        recorded = _recorded_sha256(info)
        if info["size"] != expected["size"]:
            report.add("error", path, f"size {info['size']} differs from the manifest's {expected['size']}")
            bad += 1
        elif recorded is not None and recorded != expected["sha256"]:
            report.add(
                "error",
                path,
                f"the Hub records SHA-256 {recorded[:12]}…, the manifest {expected['sha256'][:12]}… (replaced after publishing?)",
            )
            bad += 1
        elif verify_sha256 and (actual := target.sha256(path)) != expected["sha256"]:
            report.add(
                "error",
                path,
                f"SHA-256 mismatch: manifest {expected['sha256'][:12]}…, bytes {actual[:12]}… (corrupted; republish)",
            )
            bad += 1
    if not bad:
        what = "SHA-256 of every byte verified" if verify_sha256 else "sizes and recorded SHA-256 match"
        report.add("ok", name, f"manifest: {len(shards)} shard(s), {what}")


def _recorded_sha256(info: dict) -> str | None:
    """The SHA-256 the Hub recorded at upload (LFS files), without downloading anything."""
    lfs = info.get("lfs")
    if lfs is None:
        return None
    return lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)


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
