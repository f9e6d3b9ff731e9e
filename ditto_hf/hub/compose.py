"""Publish a repo composed of disjoint data folders, each config a list of the folders it is made of.

The caller plans every shard beforehand: a :class:`PlannedShard` names its folder and position, a
fingerprint of exactly what goes in it (rows and writer settings) and a picklable task that makes
it. The fingerprint is part of the file name, so before reading or encoding anything
:func:`publish_composed` knows which shards the repo already holds: those whose name is in the
repo tree with the SHA-256 that the folder's ``manifest.json`` (committed together with them)
recorded. Only the other shards are made, by ``num_workers`` processes, uploaded in the
background and committed in batches, each batch with its folders' updated manifests; the last
commit adds ``composition.json`` (configs, folders, expected row counts), the card and the removal
of files under the managed folders that the plan no longer has. A rerun of a complete publish
reads no video, uploads nothing and makes no commit.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Features
from huggingface_hub import CommitOperationAdd, HfApi

from ditto_hf.hub import card
from ditto_hf.hub.commits import DEFAULT_COMMIT_EVERY, CommitQueue, changed_files, deletions, remote_files
from ditto_hf.hub.publish import json_bytes, text_reader
from ditto_hf.hub.retry import with_retries
from ditto_hf.hub.shards import ShardFile

logger = logging.getLogger(__name__)

FINGERPRINT_CHARS = 16


@dataclass(frozen=True)
class PlannedShard:
    """One shard to be: where it goes, what it holds (``fingerprint``) and how to make it (``task``)."""

    folder: str
    index: int
    fingerprint: str
    num_rows: int
    task: object  # handed to ``encode(task, local_path) -> ShardFile`` in a worker process

    def path(self, split: str) -> str:
        """``<folder>/<split>-00003-<fingerprint>.parquet``: a new content gets a new name."""
        return f"{self.folder}/{split}-{self.index:05d}-{self.fingerprint[:FINGERPRINT_CHARS]}.parquet"


@dataclass(frozen=True)
class ComposedConfig:
    """A config made of data folders; ``about`` (where its rows come from) goes to ``composition.json``."""

    name: str
    folders: tuple[str, ...]
    default: bool = False
    expected_rows: int | None = None
    about: dict = field(default_factory=dict)


@dataclass
class ComposedResult:
    """What a composed publish did."""

    repo_id: str
    configs: dict[str, int] = field(default_factory=dict)  # config -> rows
    folders: dict[str, list[dict]] = field(default_factory=dict)  # folder -> shard records
    made: int = 0  # shards read and encoded by this run
    reused: int = 0  # shards the repo already had
    uploaded: int = 0  # shards sent in a commit by this run
    deleted: list[str] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)
    skipped_rows: list[str] = field(default_factory=list)


Encode = Callable[[object, str], ShardFile]
ShardProgress = Callable[[PlannedShard, dict, bool], None]  # (shard, its record, already on the Hub)


def remote_composition(repo_id: str, token: str | None = None) -> dict | None:
    """The repo's ``composition.json``, or None (no repo, or not a composed one)."""
    text = text_reader(HfApi(token=token), repo_id, None)(card.COMPOSITION_PATH)
    return json.loads(text) if text is not None else None


def publish_composed(
    repo_id: str,
    shards: Sequence[PlannedShard],
    configs: Sequence[ComposedConfig],
    encode: Encode,
    *,
    features: Features,
    managed: tuple[str, ...],
    layout: str = "",
    copies: tuple[str, ...] = (),
    removed: tuple[str, ...] = (),
    extra: dict | None = None,
    provenance: str = "",
    title: str = "Publish",
    split: str = "train",
    token: str | None = None,
    num_workers: int = 2,
    commit_every: int = DEFAULT_COMMIT_EVERY,
    private: bool | None = None,
    workdir: str | os.PathLike | None = None,
    prepare: Callable[[list[object]], None] | None = None,
    on_shard: ShardProgress | None = None,
) -> ComposedResult:
    """Publish the planned ``shards`` and declare ``configs``; see the module docstring.

    ``managed`` are the folder prefixes this composition owns (stale files there are removed);
    ``copies`` the folders that repeat rows of others on purpose (a preview); ``removed`` configs
    are dropped from the card; ``extra`` goes to ``composition.json`` as is; ``title`` starts the
    commit messages. ``num_workers``
    processes run ``encode`` and as many threads upload; ``prepare(tasks)`` runs once in this
    process before them when there is anything to make (e.g. to build indexes the workers share).
    """
    api = HfApi(token=token)
    with_retries(api.create_repo, repo_id, repo_type="dataset", exist_ok=True, private=private)
    head = with_retries(api.repo_info, repo_id, repo_type="dataset").sha
    tree = remote_files(api, repo_id, revision=head)
    read_text = text_reader(api, repo_id, head)
    folders = list(dict.fromkeys(shard.folder for shard in shards))
    previous = {folder: _records(read_text, folder) if card.manifest_path(folder) in tree else {} for folder in folders}

    result = ComposedResult(repo_id)
    on_hub: dict[str, dict[str, dict]] = {folder: {} for folder in folders}  # records the repo holds or is being sent
    todo = []
    for shard in shards:
        path = shard.path(split)
        record = previous[shard.folder].get(path)
        if record is not None and path in tree and tree[path].sha256 == record["sha256"] and not record.get("skipped_rows"):
            on_hub[shard.folder][path] = record
            result.reused += 1
            if on_shard is not None:
                on_shard(shard, record, True)
        else:
            todo.append(shard)

    committed = {folder: dict(records) for folder, records in on_hub.items()}
    made: dict[str, dict] = {}

    def manifest(folder: str, records: dict[str, dict]) -> dict:
        shard_list = [records[path] for path in sorted(records)]
        return {
            "folder": folder,
            "split": split,
            "num_rows": sum(record["num_rows"] for record in shard_list),
            "num_bytes": sum(record["num_bytes"] for record in shard_list),
            "features": features.to_dict(),
            "provenance": provenance.strip(),
            "shards": shard_list,
        }

    def riders(paths: list[str]) -> list:
        touched = set()
        for path in paths:
            folder = path.rsplit("/", 1)[0]
            committed[folder][path] = made[path]
            touched.add(folder)
        return [
            CommitOperationAdd(card.manifest_path(folder), json_bytes(manifest(folder, committed[folder]))) for folder in sorted(touched)
        ]

    if todo and prepare is not None:
        prepare([shard.task for shard in todo])
    queue = CommitQueue(api, repo_id, title=title, commit_every=commit_every, workers=num_workers, riders=riders)
    with tempfile.TemporaryDirectory(prefix="ditto-hf-compose-", dir=workdir) as scratch:
        try:
            for shard, made_file in make_shards(todo, encode, Path(scratch), num_workers):
                path = shard.path(split)
                record = made_file.record(path)
                made[path] = on_hub[shard.folder][path] = record
                result.made += 1
                result.skipped_rows.extend(made_file.skipped_rows)
                if tree.get(path) is not None and tree[path].sha256 == made_file.sha256:
                    made_file.local_path.unlink()  # same bytes already there (its manifest was lost): only the record is new
                    committed[shard.folder][path] = record
                else:
                    queue.add(path, made_file.local_path)
                if on_shard is not None:
                    on_shard(shard, record, False)

            manifests = {folder: manifest(folder, on_hub[folder]) for folder in folders}
            composition = _composition(configs, manifests, layout, copies, split) | (extra or {})
            planned = {shard.path(split) for shard in shards} | {card.manifest_path(folder) for folder in folders}
            result.deleted = sorted(path for path in tree if path.startswith(managed) and path not in planned)
            card_configs = [card.CardConfig(config.name, config.folders, split, config.default) for config in configs]

            def last_operations(head: str) -> list:
                files = {card.manifest_path(folder): json_bytes(manifests[folder]) for folder in folders}
                files[card.COMPOSITION_PATH] = json_bytes(composition)
                readme = card.updated_card(
                    repo_id,
                    text_reader(api, repo_id, head),
                    card_configs,
                    manifests,
                    extra_columns=[],
                    composition=composition,
                    removed=removed,
                )
                files["README.md"] = readme.encode()
                return changed_files(api, repo_id, files, head) + deletions(result.deleted)

            queue.finish(last_operations, f"{title}: {', '.join(config.name for config in configs)}")
        finally:
            queue.close()
    result.uploaded, result.commits = queue.uploaded, queue.commits
    result.folders = {folder: manifests[folder]["shards"] for folder in folders}
    result.configs = {config.name: sum(manifests[folder]["num_rows"] for folder in config.folders) for config in configs}
    return result


def _records(read_text: card.ReadText, folder: str) -> dict[str, dict]:
    text = read_text(card.manifest_path(folder))
    return {record["path"]: record for record in json.loads(text)["shards"]} if text else {}


def _composition(configs: Sequence[ComposedConfig], manifests: dict[str, dict], layout: str, copies: tuple[str, ...], split: str) -> dict:
    """``composition.json``: what each config is made of and how many rows it must have."""
    users: dict[str, list[str]] = {}
    for config in configs:
        for folder in config.folders:
            users.setdefault(folder, []).append(config.name)
    return {
        "layout": layout,
        "split": split,
        "copies": list(copies),
        "configs": {
            config.name: {
                "folders": list(config.folders),
                "default": config.default,
                "num_rows": sum(manifests[folder]["num_rows"] for folder in config.folders),
                "expected_rows": config.expected_rows,
                **config.about,
            }
            for config in sorted(configs, key=lambda c: c.name)
        },
        "folders": {
            folder: {
                "num_rows": manifests[folder]["num_rows"],
                "num_shards": len(manifests[folder]["shards"]),
                "configs": sorted(users.get(folder, [])),
            }
            for folder in sorted(manifests)
        },
    }


def make_shards(todo: list[PlannedShard], encode: Encode, scratch: Path, workers: int) -> Iterator[tuple[PlannedShard, ShardFile]]:
    """Run ``encode`` for every planned shard, in ``workers`` processes; results come in plan order."""

    def local_path(shard: PlannedShard) -> str:
        return str(scratch / f"{shard.folder.replace('/', '__')}-{shard.index:05d}.parquet")

    if workers <= 1 or len(todo) <= 1:
        for shard in todo:
            yield shard, encode(shard.task, local_path(shard))
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    window: deque = deque()
    try:
        for shard in todo:
            window.append((shard, pool.submit(encode, shard.task, local_path(shard))))
            if len(window) >= 2 * workers:  # bounded: finished shards wait on local disk until uploaded
                done, future = window.popleft()
                yield done, future.result()
        while window:
            done, future = window.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
