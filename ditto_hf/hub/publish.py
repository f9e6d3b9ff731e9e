"""Publish triplets to a Hub dataset repo as one parquet config.

``publish`` is resumable and idempotent: shards are deterministic (:mod:`ditto_hf.hub.shards`), a
shard whose SHA-256 the repo already holds at the same path is neither uploaded nor committed
again, shards are committed in batches (the Hub throttles commits per repo), and the last commit
adds the config's ``manifest.json``, the re-rendered README.md and the removal of shards a
previous, longer publish of the same config left behind. Running it again with the same input
changes nothing.

``Dataset.push_to_hub`` is not used directly because it re-encodes and re-uploads before its
first commit, needs a full extra pass to size an ``IterableDataset``, and writes 1000-row row
groups for streamed video; the same building blocks (``embed_table_storage``, the features'
arrow schema, ``preupload_lfs_files``, ``create_commit``, ``MetadataConfigs``,
``DatasetInfosDict``, ``DatasetCard``) are used instead.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from datasets import Features, Video
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    DatasetCard,
    HfApi,
)
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

from ditto_hf.errors import DittoError
from ditto_hf.hub import card
from ditto_hf.hub.retry import with_retries
from ditto_hf.hub.shards import (
    DEFAULT_MAX_SHARD_SIZE,
    DEFAULT_ROW_GROUP_BYTES,
    ShardFile,
    iter_arrow_batches,
    write_shards,
)
from ditto_hf.schema import TRIPLET_FEATURES

logger = logging.getLogger(__name__)

#: Shards per intermediate commit (the Hub allows ~128 commits per hour and repo).
DEFAULT_COMMIT_EVERY = 25
_CONFIG_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


@dataclass
class PublishResult:
    """What a publish did."""

    repo_id: str
    config_name: str
    num_rows: int = 0
    shards: list[dict] = field(default_factory=list)
    uploaded: int = 0  # shards sent in a commit by this run
    reused: int = 0  # shards the repo already had
    deleted: list[str] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)


ShardCallback = Callable[[ShardFile, bool], None]  # (shard, already on the Hub)


def publish(
    source,
    repo_id: str,
    config_name: str,
    *,
    token: str | None = None,
    split: str = "train",
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    row_group_bytes: int | str = DEFAULT_ROW_GROUP_BYTES,
    provenance: str = "",
    commit_every: int = DEFAULT_COMMIT_EVERY,
    num_workers: int = 2,
    private: bool | None = None,
    workdir: str | os.PathLike | None = None,
    on_shard: ShardCallback | None = None,
) -> PublishResult:
    """Publish ``source`` as config ``config_name`` of the dataset repo ``repo_id``.

    ``source`` is a ``datasets.Dataset`` / ``IterableDataset`` with the triplet columns (extra
    columns are kept); a generate run gives one with ``RunDir(path).dataset()``. ``provenance`` is
    free text for the card's "How it was made" section (recipe, model versions...).
    ``num_workers`` uploads run beside the encoding of the next shards.
    """
    _check_config_name(config_name)
    dataset = as_dataset(source)
    features = publish_features(dataset.features, source)
    api = HfApi(token=token)
    with_retries(api.create_repo, repo_id, repo_type="dataset", exist_ok=True, private=private)
    remote = _remote_shards(api, repo_id, config_name)
    result = PublishResult(repo_id, config_name)
    batch = _CommitBatch(api, repo_id, config_name, commit_every, num_workers, result)
    with tempfile.TemporaryDirectory(prefix="ditto-hf-publish-", dir=workdir) as folder:
        try:
            for shard in write_shards(
                iter_arrow_batches(dataset, features),
                features,
                folder,
                max_shard_size=max_shard_size,
                row_group_bytes=row_group_bytes,
            ):
                path = shard.path_in_repo(config_name, split)
                on_hub = remote.get(path) == shard.sha256
                result.shards.append(_shard_record(shard, path))
                result.num_rows += shard.num_rows
                if on_hub:
                    result.reused += 1
                    shard.local_path.unlink()
                else:
                    batch.add(path, shard)
                if on_shard is not None:
                    on_shard(shard, on_hub)
            if not result.num_rows:
                raise DittoError(f"{_name(source)}: no rows to publish as config {config_name!r}")
            result.deleted = sorted(set(remote) - {s["path"] for s in result.shards})
            batch.finish(_manifest(result, split, features, provenance), features, result.deleted)
        finally:
            batch.close()
    return result


def _manifest(result: PublishResult, split: str, features: Features, provenance: str) -> dict:
    """``<config>/manifest.json``: row counts, features, provenance and every shard's SHA-256."""
    return {
        "config_name": result.config_name,
        "split": split,
        "num_rows": result.num_rows,
        "num_bytes": sum(s["num_bytes"] for s in result.shards),
        "features": features.to_dict(),
        "provenance": provenance.strip(),
        "shards": result.shards,
    }


def as_dataset(source):
    """``source`` itself when it is a ``datasets`` Dataset/IterableDataset; a clear error otherwise."""
    if isinstance(source, (datasets.Dataset, datasets.IterableDataset)):
        return source
    hint = " (a generate run directory: publish RunDir(path).dataset())" if isinstance(source, (str, os.PathLike)) else ""
    raise DittoError(f"cannot publish a {type(source).__name__}: pass a datasets Dataset or IterableDataset{hint}")


def publish_features(features: Features | None, source) -> Features:
    """The triplet columns first (checked against ``TRIPLET_FEATURES``), then any extra columns."""
    if features is None:
        raise DittoError(f"{_name(source)}: the dataset declares no features; pass features= when building it")
    missing = [name for name in TRIPLET_FEATURES if name not in features]
    if missing:
        raise DittoError(f"{_name(source)}: missing triplet column(s) {', '.join(missing)}; expected {list(TRIPLET_FEATURES)}")
    wrong = [name for name in ("source", "edited") if not isinstance(features[name], Video)]
    if wrong:
        raise DittoError(f"{_name(source)}: column(s) {', '.join(wrong)} must be datasets.Video, got {[features[n] for n in wrong]}")
    extra = {name: feature for name, feature in features.items() if name not in TRIPLET_FEATURES}
    return Features({**TRIPLET_FEATURES, **extra})


def _name(source) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def _check_config_name(name: str) -> None:
    if not name or name == "data" or not set(name) <= _CONFIG_NAME_CHARS or name[0] in "-.":
        raise DittoError(f"invalid config name {name!r}: use letters, digits, '_', '-' or '.' (and not 'data')")


def _shard_record(shard: ShardFile, path: str) -> dict:
    return {
        "path": path,
        "sha256": shard.sha256,
        "size": shard.size,
        "num_rows": shard.num_rows,
        "num_bytes": shard.num_bytes,
        "num_row_groups": shard.num_row_groups,
        "max_row_group_bytes": shard.max_row_group_bytes,
    }


def _remote_shards(api: HfApi, repo_id: str, config_name: str) -> dict[str, str]:
    """``path -> sha256`` of the parquet files the repo already holds for this config."""
    try:
        entries = with_retries(api.list_repo_tree, repo_id, path_in_repo=config_name, repo_type="dataset", recursive=True)
        entries = list(entries)
    except EntryNotFoundError:
        return {}
    return {
        entry.path: entry.lfs.sha256 for entry in entries if getattr(entry, "lfs", None) is not None and entry.path.endswith(".parquet")
    }


class _CommitBatch:
    """Uploads shards in the background and commits them in batches; the last commit adds the card."""

    def __init__(self, api: HfApi, repo_id: str, config_name: str, commit_every: int, workers: int, result: PublishResult):
        self.api, self.repo_id, self.config_name, self.result = api, repo_id, config_name, result
        self.commit_every = max(1, commit_every)
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ditto-hf-upload")
        self.pending: list[tuple[CommitOperationAdd, Future]] = []

    def add(self, path: str, shard: ShardFile) -> None:
        operation = CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(shard.local_path))
        self.pending.append((operation, self.pool.submit(self._upload, operation, shard.local_path)))
        if len(self.pending) >= self.commit_every:
            first, last = self.pending[0][0].path_in_repo, self.pending[-1][0].path_in_repo
            self._commit(self._take_uploaded(), f"Publish {self.config_name}: {first} .. {last}")

    def _upload(self, operation: CommitOperationAdd, local_path: Path) -> None:
        with_retries(self.api.preupload_lfs_files, self.repo_id, [operation], repo_type="dataset", free_memory=True)
        local_path.unlink()

    def _take_uploaded(self) -> list[CommitOperationAdd]:
        operations = []
        for operation, upload in self.pending:
            upload.result()
            operations.append(operation)
        self.pending = []
        return operations

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def finish(self, manifest: dict, features: Features, stale: list[str]) -> None:
        shards = self._take_uploaded()
        deletions = [CommitOperationDelete(path_in_repo=path) for path in stale]
        for attempt in range(5):  # another writer may commit between reading the card and committing it
            parent = with_retries(self.api.repo_info, self.repo_id, repo_type="dataset").sha
            readme = self._card(manifest, features, parent)
            operations = (
                shards
                + deletions
                + [
                    CommitOperationAdd(card.manifest_path(self.config_name), _json_bytes(manifest)),
                    CommitOperationAdd("README.md", readme.encode()),
                ]
            )
            try:
                self._commit(operations, f"Publish {self.config_name}: {manifest['num_rows']} rows", parent)
                return
            except HfHubHTTPError as error:
                if error.response is None or error.response.status_code != 412 or attempt == 4:
                    raise
                logger.info("the repo moved on while publishing %s; re-reading the card", self.config_name)

    def _card(self, manifest: dict, features: Features, revision: str) -> str:
        existing = self._existing_card(revision)
        manifests = [manifest] + [m for m in self._other_manifests(existing, revision) if m["config_name"] != manifest["config_name"]]
        card_data = card.card_data_with(existing.data if existing else None, manifest, features)
        extra_columns = [name for name in features if name not in TRIPLET_FEATURES]
        return card.render_card(self.repo_id, card_data, manifests, extra_columns)

    def _existing_card(self, revision: str) -> DatasetCard | None:
        text = self._read_text("README.md", revision)
        return DatasetCard(text) if text is not None else None

    def _other_manifests(self, existing: DatasetCard | None, revision: str) -> list[dict]:
        names = [entry.get("config_name") for entry in (existing.data.get("configs") or [])] if existing else []
        manifests = []
        for name in names:
            text = self._read_text(card.manifest_path(name), revision) if name else None
            if text is not None:
                manifests.append(json.loads(text))
        return manifests

    def _read_text(self, path: str, revision: str) -> str | None:
        if not with_retries(self.api.file_exists, self.repo_id, path, repo_type="dataset", revision=revision):
            return None
        local = with_retries(self.api.hf_hub_download, self.repo_id, path, repo_type="dataset", revision=revision)
        return Path(local).read_text(encoding="utf-8")

    def _commit(self, operations: list, message: str, parent: str | None = None) -> None:
        info = with_retries(
            self.api.create_commit,
            self.repo_id,
            operations,
            commit_message=message,
            repo_type="dataset",
            parent_commit=parent,
        )
        self.result.uploaded += sum(isinstance(op, CommitOperationAdd) and op.path_in_repo.endswith(".parquet") for op in operations)
        if info.oid != parent:  # create_commit skips a commit that would change nothing and returns the head
            self.result.commits.append(info.oid)


def _json_bytes(payload: dict) -> bytes:
    return (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode()
