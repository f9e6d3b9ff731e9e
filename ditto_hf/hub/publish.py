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
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from datasets import Features, Video
from huggingface_hub import HfApi

from ditto_hf.errors import DittoError
from ditto_hf.hub import card
from ditto_hf.hub.commits import DEFAULT_COMMIT_EVERY, CommitQueue, changed_files, deletions, remote_files
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
    license: str = card.LICENSE,  # noqa: A002 - the card field's name
    commit_every: int = DEFAULT_COMMIT_EVERY,
    num_workers: int = 2,
    private: bool | None = None,
    workdir: str | os.PathLike | None = None,
    on_shard: ShardCallback | None = None,
) -> PublishResult:
    """Publish ``source`` as config ``config_name`` of the dataset repo ``repo_id``.

    ``source`` is a ``datasets.Dataset`` / ``IterableDataset`` with the triplet columns (extra
    columns are kept); a generate run gives one with ``RunDir(path).dataset()``. ``provenance`` is
    free text for the card's "How it was made" section (recipe, model versions...); ``license`` the
    card's licence identifier (Ditto-1M's by default: pass the data's own for clips of your own).
    ``num_workers`` uploads run beside the encoding of the next shards.
    """
    _check_config_name(config_name)
    for name, value in (("max_shard_size", max_shard_size), ("row_group_bytes", row_group_bytes)):
        _check_size(name, value)
    dataset = as_dataset(source)
    features = publish_features(dataset.features, source)
    api = HfApi(token=token)
    with_retries(api.create_repo, repo_id, repo_type="dataset", exist_ok=True, private=private)
    remote = {path: entry.sha256 for path, entry in remote_files(api, repo_id, config_name).items() if path.endswith(".parquet")}
    result = PublishResult(repo_id, config_name)
    queue = CommitQueue(api, repo_id, title=f"Publish {config_name}", commit_every=commit_every, workers=num_workers)
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
                result.shards.append(shard.record(path))
                result.num_rows += shard.num_rows
                if on_hub:
                    result.reused += 1
                    shard.local_path.unlink()
                else:
                    queue.add(path, shard.local_path)
                if on_shard is not None:
                    on_shard(shard, on_hub)
            if not result.num_rows:
                raise DittoError(f"{_name(source)}: no rows to publish as config {config_name!r}")
            result.deleted = sorted(set(remote) - {s["path"] for s in result.shards})
            manifest = _manifest(result, split, features, provenance)
            extra_columns = [name for name in features if name not in TRIPLET_FEATURES]

            def last_operations(head: str) -> list:
                files = {
                    card.manifest_path(config_name): json_bytes(manifest),
                    "README.md": card.updated_card(
                        repo_id,
                        text_reader(api, repo_id, head),
                        [card.CardConfig(config_name, (config_name,), split)],
                        {config_name: manifest},
                        extra_columns=extra_columns,
                        license=license,
                    ).encode(),
                }
                return changed_files(api, repo_id, files, head) + deletions(result.deleted)

            queue.finish(last_operations, f"Publish {config_name}: {result.num_rows} rows")
        finally:
            queue.close()
    result.uploaded, result.commits = queue.uploaded, queue.commits
    return result


def _manifest(result: PublishResult, split: str, features: Features, provenance: str) -> dict:
    """``<config>/manifest.json``: row counts, features, provenance and every shard's SHA-256."""
    return {
        "config_name": result.config_name,
        "folder": result.config_name,
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


def _check_size(name: str, value: int | str) -> None:
    """A size is bytes or a number with a unit (``"500MB"``, ``"1GB"``, ``"64KiB"``), checked before any upload."""
    from datasets.utils.py_utils import convert_file_size_to_int

    try:
        ok = convert_file_size_to_int(value) > 0
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise DittoError(f"{name} {value!r} is not a size: give bytes or a number with a unit such as '500MB', '1GB' or '64KiB'")


def _check_config_name(name: str) -> None:
    if not name or name == "data" or not set(name) <= _CONFIG_NAME_CHARS or name[0] in "-.":
        raise DittoError(f"invalid config name {name!r}: use letters, digits, '_', '-' or '.' (and not 'data')")


def text_reader(api: HfApi, repo_id: str, revision: str | None) -> card.ReadText:
    """``path -> text`` of the repo's files at ``revision`` (None for a missing file)."""

    def read_text(path: str) -> str | None:
        if not with_retries(api.file_exists, repo_id, path, repo_type="dataset", revision=revision):
            return None
        local = with_retries(api.hf_hub_download, repo_id, path, repo_type="dataset", revision=revision)
        return Path(local).read_text(encoding="utf-8")

    return read_text


def json_bytes(payload: dict) -> bytes:
    return (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode()
