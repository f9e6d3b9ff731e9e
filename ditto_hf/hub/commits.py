"""What a repo holds, and writing to it: background uploads, batched commits, a last commit that
only carries files whose content changed.

The Hub throttles commits per repo (~128 an hour), so shards are uploaded in background threads
(``preupload_lfs_files``) and committed ``commit_every`` at a time; the last commit is built
against the repo's current head (card, manifests, deletions) and retried when another writer
moved the head in between.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from ditto_hf.hub.retry import with_retries

logger = logging.getLogger(__name__)

#: Shards per intermediate commit (the Hub allows ~128 commits per hour and repo).
DEFAULT_COMMIT_EVERY = 25


@dataclass(frozen=True)
class RemoteFile:
    """A file of the repo as its tree lists it: LFS files have a ``sha256``, all have a git ``blob_id``."""

    path: str
    size: int
    blob_id: str
    sha256: str | None

    def holds(self, content: bytes) -> bool:
        """True when the stored file has exactly ``content``."""
        if self.sha256 is not None:
            return self.sha256 == hashlib.sha256(content).hexdigest()
        return self.blob_id == git_blob_id(content)


def git_blob_id(content: bytes) -> str:
    """The git object id of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def remote_files(api: HfApi, repo_id: str, folder: str | None = None, revision: str | None = None) -> dict[str, RemoteFile]:
    """``path -> RemoteFile`` for every file of the repo (under ``folder``), from one tree listing."""
    try:
        entries = list(
            with_retries(api.list_repo_tree, repo_id, path_in_repo=folder, repo_type="dataset", recursive=True, revision=revision)
        )
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
        return {}
    return {entry.path: _remote(entry) for entry in entries if hasattr(entry, "blob_id")}


def _remote(entry) -> RemoteFile:
    lfs = getattr(entry, "lfs", None)
    return RemoteFile(entry.path, entry.size, entry.blob_id, lfs.sha256 if lfs is not None else None)


def changed_files(api: HfApi, repo_id: str, files: dict[str, bytes], revision: str) -> list[CommitOperationAdd]:
    """Additions for the ``files`` (path -> content) the repo does not already hold at ``revision``."""
    if not files:
        return []
    known = {
        entry.path: _remote(entry)
        for entry in with_retries(api.get_paths_info, repo_id, list(files), repo_type="dataset", revision=revision)
    }
    return [CommitOperationAdd(path, content) for path, content in files.items() if path not in known or not known[path].holds(content)]


class CommitQueue:
    """Uploads files in background threads and commits them ``commit_every`` at a time.

    ``riders(paths)`` gives extra operations for each intermediate commit (a manifest updated to
    list the shards it commits), so what a commit adds is always described by what it adds.
    """

    def __init__(
        self,
        api: HfApi,
        repo_id: str,
        *,
        title: str,
        commit_every: int = DEFAULT_COMMIT_EVERY,
        workers: int = 2,
        riders: Callable[[list[str]], list] | None = None,
    ):
        self.api, self.repo_id, self.title, self.riders = api, repo_id, title, riders
        self.commit_every = max(1, commit_every)
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ditto-hf-upload")
        self.pending: list[tuple[CommitOperationAdd, Future]] = []
        self.commits: list[str] = []
        self.uploaded = 0  # parquet files sent in a commit by this queue

    def add(self, path_in_repo: str, local_path: Path) -> None:
        operation = CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=str(local_path))
        self.pending.append((operation, self.pool.submit(self._upload, operation, local_path)))
        if len(self.pending) >= self.commit_every:
            self.commit_pending()

    def commit_pending(self) -> None:
        operations = self._take_uploaded()
        if operations:
            paths = [operation.path_in_repo for operation in operations]
            riders = self.riders(paths) if self.riders else []
            self._commit(operations + riders, f"{self.title}: {paths[0]} .. {paths[-1]}")

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

    def finish(self, last_operations: Callable[[str], list], message: str) -> None:
        """Commit what is still pending plus ``last_operations(head)`` (built against the current
        head, re-built if another writer moves it first); no commit when there is nothing to change."""
        uploaded = self._take_uploaded()
        for attempt in range(5):
            parent = with_retries(self.api.repo_info, self.repo_id, repo_type="dataset").sha
            operations = uploaded + last_operations(parent)
            if not operations:
                return
            try:
                self._commit(operations, message, parent)
                return
            except HfHubHTTPError as error:
                if error.response is None or error.response.status_code != 412 or attempt == 4:
                    raise
                logger.info("%s moved on while committing %r; building the last commit again", self.repo_id, message)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _commit(self, operations: list, message: str, parent: str | None = None) -> None:
        info = with_retries(
            self.api.create_commit,
            self.repo_id,
            operations,
            commit_message=message,
            repo_type="dataset",
            parent_commit=parent,
        )
        self.uploaded += sum(isinstance(op, CommitOperationAdd) and op.path_in_repo.endswith(".parquet") for op in operations)
        if info.oid != parent:  # create_commit skips a commit that would change nothing and returns the head
            self.commits.append(info.oid)


def deletions(paths) -> list[CommitOperationDelete]:
    return [CommitOperationDelete(path_in_repo=path) for path in sorted(paths)]
