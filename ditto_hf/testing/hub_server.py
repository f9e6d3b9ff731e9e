"""A small loopback Hugging Face Hub for tests.

It speaks enough of the Hub HTTP protocol for the real ``huggingface_hub`` and ``datasets`` clients
(with ``HF_ENDPOINT`` pointed at it and ``HF_HUB_DISABLE_XET=1``): repo creation, repo info,
pre-upload, the LFS batch API (basic transfer + verify), ndjson commits with ``parentCommit``
checks, YAML validation, tree listing (recursive, paginated), paths-info, commit history and
``resolve`` downloads with Range support.

Storage on disk, one folder per repo (``<root>/<type>s/<namespace>/<name>/``):

- ``objects/<sha256>``: file contents, one plain file per distinct content;
- ``commits/<commit id>.json``: a commit: parent, title, date and the full ``path -> file`` table;
- ``refs/<branch>``: the commit id a branch points to.

Tests can corrupt stored bytes (:meth:`HubServer.corrupt`), make routes fail transiently
(:meth:`HubServer.fail_next`) and read traffic counters
(:attr:`HubServer.bytes_served`, :attr:`HubServer.requests`). Run it on its own with
``python -m ditto_hf.testing.hub_server --port P --root DIR``; the counters are then at ``GET /_loopback/stats``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
LFS_SUFFIXES = (".parquet", ".arrow", ".mp4", ".webm", ".safetensors", ".bin", ".pt", ".gz", ".tar", ".zip", ".npy")
LFS_MIN_SIZE = 10 * 1024 * 1024
TREE_PAGE_SIZE = 1000
GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES)


class HubError(Exception):
    """An error answered to the client as ``status`` + ``X-Error-Code`` + JSON body."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob (what the Hub calls a regular file's ``oid``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file that stands in the git tree for an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


# --------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------


@dataclass
class Repo:
    """One repo on disk."""

    folder: Path
    repo_type: str  # "dataset" | "model" | "space"
    repo_id: str

    lock = threading.Lock()  # one lock for all repos: commits are rare and tiny

    def object_path(self, sha256: str) -> Path:
        return self.folder / "objects" / sha256

    def has_object(self, sha256: str, size: int | None = None) -> bool:
        path = self.object_path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def store_object(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.has_object(sha256, len(data)):
            _atomic_write(self.object_path(sha256), data)
        return sha256

    def head(self, branch: str) -> str | None:
        ref = self.folder / "refs" / branch
        return ref.read_text().strip() if ref.is_file() else None

    def commit(self, commit_id: str) -> dict:
        return json.loads((self.folder / "commits" / f"{commit_id}.json").read_text())

    def resolve(self, revision: str) -> dict:
        """The commit a branch name or a (full or abbreviated) commit id points to."""
        commit_id = self.head(revision)
        if commit_id is None and re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [p.stem for p in (self.folder / "commits").glob(f"{revision}*.json")]
            commit_id = matches[0] if len(matches) == 1 else None
        if commit_id is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commit(commit_id)

    def write_commit(self, branch: str, parent: str | None, title: str, message: str, files: dict) -> str:
        commit_id = hashlib.sha1(f"{parent}{title}{time.time_ns()}{uuid.uuid4()}".encode()).hexdigest()
        record = {
            "id": commit_id,
            "parent": parent,
            "title": title,
            "message": message,
            "date": _now(),
            "files": files,
        }
        _atomic_write(self.folder / "commits" / f"{commit_id}.json", json.dumps(record).encode())
        _atomic_write(self.folder / "refs" / branch, commit_id.encode())
        return commit_id

    def history(self, revision: str) -> list[dict]:
        commit = self.resolve(revision)
        commits = [commit]
        while commit["parent"]:
            commit = self.commit(commit["parent"])
            commits.append(commit)
        return commits


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def file_entry(data_sha256: str, size: int, lfs: bool, content: bytes | None = None) -> dict:
    """The record a commit keeps for one file."""
    oid = git_blob_oid(lfs_pointer(data_sha256, size) if lfs else content)
    return {"sha256": data_sha256, "size": size, "lfs": lfs, "oid": oid}


class HubStorage:
    """All repos under one root folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def repo(self, type_plural: str, repo_id: str, must_exist: bool = True) -> Repo:
        if type_plural not in REPO_TYPES or repo_id.count("/") != 1:
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        repo = Repo(self.root / type_plural / repo_id, REPO_TYPES[type_plural], repo_id)
        if must_exist and not (repo.folder / "refs" / "main").is_file():
            raise HubError(404, f"Repository Not Found for url: {type_plural}/{repo_id}", "RepoNotFound")
        return repo

    def create(self, type_plural: str, repo_id: str, url: str) -> Repo:
        repo = self.repo(type_plural, repo_id, must_exist=False)
        with Repo.lock:
            if repo.head("main") is not None:
                raise HubError(409, "You already created this repo", url=url)
            content = GITATTRIBUTES.encode()
            files = {".gitattributes": file_entry(repo.store_object(content), len(content), False, content)}
            repo.write_commit("main", None, "initial commit", "", files)
        return repo


def _is_lfs(path: str, size: int, sample: bytes) -> bool:
    return size >= LFS_MIN_SIZE or path.endswith(LFS_SUFFIXES) or b"\0" in sample


def _entries_under(files: dict, folder: str, recursive: bool) -> list[tuple[str, dict | None]]:
    """``(path, file record or None for a folder)`` for what lies under ``folder``, sorted by path."""
    prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
    found: dict[str, dict | None] = {}
    for path, record in files.items():
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        depth = len(parts) if recursive else 1
        for i in range(1, min(depth, len(parts) - 1) + 1):
            found.setdefault(prefix + "/".join(parts[:i]), None)
        if recursive or len(parts) == 1:
            found[path] = record
    return sorted(found.items())


def _folder_exists(files: dict, folder: str) -> bool:
    return not folder or any(path.startswith(folder.rstrip("/") + "/") for path in files)


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


class HubRequestHandler(BaseHTTPRequestHandler):
    """Routes Hub API calls to :class:`HubStorage`."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle's algorithm a short body then waits for
    # the client's delayed ACK of the headers (40 ms on Linux), which no real Hub response does.
    disable_nagle_algorithm = True
    server: _HTTPServer

    ROUTES = [
        ("POST", r"/api/repos/create", "create_repo"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", r"/_loopback/stats", "stats"),
        ("GET", r"/api/(?P<type>\w+)/(?P<repo>[^/]+/[^/]+)", "repo_info"),
        ("GET", r"/api/(?P<type>\w+)/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)", "repo_info"),
        ("POST", r"/api/(?P<type>\w+)/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/]+)", "preupload"),
        ("POST", r"/api/(?P<type>\w+)/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/]+)", "commit"),
        ("GET", r"/api/(?P<type>\w+)/(?P<repo>[^/]+/[^/]+)/commits/(?P<rev>[^/]+)", "list_commits"),
        ("GET", r"/api/(?P<type>\w+)/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
        ("POST", r"/api/(?P<type>\w+)/(?P<repo>[^/]+/[^/]+)/paths-info/(?P<rev>[^/]+)", "paths_info"),
        ("POST", r"/(?P<prefix>datasets/|spaces/)?(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch", "lfs_batch"),
        ("PUT", r"/_lfs/(?P<type>\w+)/(?P<repo>[^/]+/[^/]+)/(?P<oid>[0-9a-f]{64})", "lfs_put"),
        ("POST", r"/_lfs/(?P<type>\w+)/(?P<repo>[^/]+/[^/]+)/(?P<oid>[0-9a-f]{64})/verify", "lfs_verify"),
        (
            "HEAD",
            r"/(?P<prefix>datasets/|spaces/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)",
            "resolve",
        ),
        ("GET", r"/(?P<prefix>datasets/|spaces/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ]
    COMPILED = [(method, re.compile(pattern + r"/?"), name) for method, pattern, name in ROUTES]

    # ---- plumbing -------------------------------------------------------------------------

    def log_message(self, format, *args):  # noqa: A002 - quiet: tests read counters, not logs
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        try:
            for route_method, pattern, name in self.COMPILED:
                match = pattern.fullmatch(url.path)
                if route_method == method and match:
                    self.server.count_request(method, name)
                    if status := self.server.take_injected_failure(f"{method} {name}"):
                        raise HubError(status, f"loopback Hub: injected {status} for {method} {name}")
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    getattr(self, f"handle_{name}")(**params)
                    return
            self.server.count_request(method, "unknown")
            raise HubError(404, f"No route for {method} {url.path}")
        except HubError as error:
            self._drain_body()
            self._send_json(
                {"error": error.message, **error.extra},
                error.status,
                {"X-Error-Code": error.code} if error.code else {},
            )
        except Exception as error:  # a request this server does not understand: say so, keep serving
            self.server.handle_error(self.request, self.client_address)
            self._send_json({"error": f"loopback Hub: {type(error).__name__}: {error}"}, 500)

    def _drain_body(self) -> None:
        if not getattr(self, "_body_read", False):
            self.read_body()

    def read_body(self) -> bytes:
        """The request body (Content-Length or chunked transfer encoding)."""
        self._body_read = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            data = b"".join(chunks)
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.count_received(len(data))
        return data

    def read_json(self):
        return json.loads(self.read_body() or b"{}")

    def _send(self, status: int, body: bytes, headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, payload, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _endpoint(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def _repo(self, type_plural: str, repo_id: str) -> Repo:
        return self.server.storage.repo(type_plural, repo_id)

    @staticmethod
    def _type_from_prefix(prefix: str | None) -> str:
        return (prefix or "models/").rstrip("/")

    # ---- repos ----------------------------------------------------------------------------

    def handle_create_repo(self) -> None:
        payload = self.read_json()
        name = payload["name"] if not payload.get("organization") else f"{payload['organization']}/{payload['name']}"
        if "/" not in name:
            name = f"user/{name}"
        type_plural = f"{payload.get('type') or 'model'}s"
        prefix = "" if type_plural == "models" else f"{type_plural}/"
        url = f"{self._endpoint()}/{prefix}{name}"
        self.server.storage.create(type_plural, name, url)
        self._send_json({"url": url, "name": name, "id": name})

    def handle_repo_info(self, type, repo, rev="main") -> None:  # noqa: A002
        commit = self._repo(type, repo).resolve(rev)
        siblings = [self._sibling(path, record) for path, record in sorted(commit["files"].items())]
        self._send_json(
            {
                "id": repo,
                "_id": repo,
                "author": repo.split("/")[0],
                "sha": commit["id"],
                "private": False,
                "gated": False,
                "disabled": False,
                "lastModified": commit["date"],
                "createdAt": commit["date"],
                "tags": [],
                "siblings": siblings,
                "cardData": self._card_data(type, repo, commit),
            }
        )

    def _sibling(self, path: str, record: dict) -> dict:
        sibling = {"rfilename": path}
        if self.query.get("blobs", "").lower() in ("1", "true"):
            sibling.update(size=record["size"], blobId=record["oid"])
            if record["lfs"]:
                lfs = self._lfs_info(record)
                sibling["lfs"] = {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
        return sibling

    def _card_data(self, type_plural: str, repo_id: str, commit: dict) -> dict | None:
        record = commit["files"].get("README.md")
        if record is None:
            return None
        text = self._repo(type_plural, repo_id).object_path(record["sha256"]).read_text(errors="replace")
        match = re.match(r"^---\n(.*?)\n---", text, re.S)
        try:
            return yaml.safe_load(match.group(1)) if match else None
        except yaml.YAMLError:
            return None

    def handle_validate_yaml(self) -> None:
        content = self.read_json().get("content", "")
        match = re.match(r"^---\n(.*?)\n---", content, re.S)
        try:
            if match:
                yaml.safe_load(match.group(1))
        except yaml.YAMLError as error:
            self._send_json({"errors": [{"message": f"Invalid YAML: {error}"}], "warnings": []}, 400)
            return
        self._send_json({"errors": [], "warnings": []})

    def handle_stats(self) -> None:
        self._send_json(self.server.stats())

    # ---- listing --------------------------------------------------------------------------

    @staticmethod
    def _lfs_info(record: dict) -> dict:
        return {"oid": record["sha256"], "size": record["size"], "pointerSize": len(lfs_pointer(record["sha256"], 0))}

    def _path_info(self, repo: Repo, commit: dict, path: str, record: dict | None, expand: bool) -> dict:
        if record is None:
            info = {"type": "directory", "oid": hashlib.sha1(f"{commit['id']}{path}".encode()).hexdigest(), "size": 0}
        else:
            info = {"type": "file", "oid": record["oid"], "size": record["size"]}
            if record["lfs"]:
                info["lfs"] = self._lfs_info(record)
        info["path"] = path
        if expand:
            last = self._last_change(repo, commit, path)
            info["lastCommit"] = {"id": last["id"], "title": last["title"], "date": last["date"]}
        return info

    @staticmethod
    def _last_change(repo: Repo, commit: dict, path: str) -> dict:
        """The oldest commit since which ``path`` is unchanged (files) or the commit itself (folders)."""
        record = commit["files"].get(path)
        while record is not None and commit["parent"]:
            parent = repo.commit(commit["parent"])
            if parent["files"].get(path) != record:
                break
            commit = parent
        return commit

    def handle_tree(self, type, repo, rev, path="") -> None:  # noqa: A002
        store = self._repo(type, repo)
        commit = store.resolve(rev)
        if not _folder_exists(commit["files"], path):
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        expand = self.query.get("expand", "").lower() in ("1", "true")
        entries = _entries_under(commit["files"], path, recursive)
        start = int(self.query.get("cursor", 0))
        limit = int(self.query.get("limit", TREE_PAGE_SIZE))
        page = entries[start : start + limit]
        headers = {}
        if start + limit < len(entries):
            next_query = urlencode({**self.query, "cursor": start + limit, "limit": limit})
            headers["Link"] = f'<{self._endpoint()}{urlsplit(self.path).path}?{next_query}>; rel="next"'
        self._send_json([self._path_info(store, commit, p, record, expand) for p, record in page], 200, headers)

    def handle_paths_info(self, type, repo, rev) -> None:  # noqa: A002
        store = self._repo(type, repo)
        commit = store.resolve(rev)
        body = self.read_body()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            payload = json.loads(body)
            paths, expand = payload.get("paths", []), bool(payload.get("expand"))
        else:
            form = parse_qs(body.decode())
            paths, expand = form.get("paths", []), form.get("expand", ["false"])[-1].lower() == "true"
        infos = []
        for path in dict.fromkeys(p.strip("/") for p in paths):
            if path in commit["files"]:
                infos.append(self._path_info(store, commit, path, commit["files"][path], expand))
            elif path and _folder_exists(commit["files"], path):
                infos.append(self._path_info(store, commit, path, None, expand))
        self._send_json(infos)

    def handle_list_commits(self, type, repo, rev) -> None:  # noqa: A002
        history = self._repo(type, repo).history(rev)
        self._send_json(
            [
                {
                    "id": c["id"],
                    "title": c["title"],
                    "message": c["message"],
                    "date": c["date"],
                    "authors": [{"user": "loopback"}],
                }
                for c in history
            ]
        )

    # ---- uploads --------------------------------------------------------------------------

    def handle_preupload(self, type, repo, rev) -> None:  # noqa: A002
        files = self._repo(type, repo).resolve(rev)["files"]
        answers = []
        for item in self.read_json()["files"]:
            sample = base64.b64decode(item.get("sample", ""))
            existing = files.get(item["path"])
            mode = "lfs" if _is_lfs(item["path"], item["size"], sample) else "regular"
            oid = None if existing is None else (existing["sha256"] if existing["lfs"] else existing["oid"])
            answers.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._send_json({"files": answers, "commitOid": None})

    def handle_lfs_batch(self, repo, prefix=None) -> None:
        type_plural = self._type_from_prefix(prefix)
        store = self._repo(type_plural, repo)
        payload = self.read_json()
        if payload.get("operation") != "upload":
            raise HubError(400, "only the upload operation is supported")
        objects = []
        for obj in payload["objects"]:
            answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not store.has_object(obj["oid"], obj["size"]):
                href = f"{self._endpoint()}/_lfs/{type_plural}/{repo}/{obj['oid']}"
                answer["actions"] = {"upload": {"href": href}, "verify": {"href": f"{href}/verify"}}
            objects.append(answer)
        self._send_json({"transfer": "basic", "objects": objects}, 200, {"Content-Type": "application/vnd.git-lfs+json"})

    def handle_lfs_put(self, type, repo, oid) -> None:  # noqa: A002
        store = self._repo(type, repo)
        data = self.read_body()
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, f"uploaded bytes do not match sha256 {oid}")
        store.store_object(data)
        self._send(200, b"")

    def handle_lfs_verify(self, type, repo, oid) -> None:  # noqa: A002
        size = self.read_json().get("size")
        if not self._repo(type, repo).has_object(oid, size):
            raise HubError(404, f"LFS object {oid} of size {size} was not uploaded")
        self._send_json({"success": True})

    def handle_commit(self, type, repo, rev) -> None:  # noqa: A002
        store = self._repo(type, repo)
        lines = [json.loads(line) for line in self.read_body().splitlines() if line.strip()]
        if self.query.get("create_pr"):
            raise HubError(400, "pull requests are not supported by the loopback Hub")
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        with Repo.lock:
            head = store.resolve(rev)
            if store.head(rev) is None:
                raise HubError(400, f"Cannot commit to {rev}: not a branch", "RevisionNotFound")
            if header.get("parentCommit") and header["parentCommit"] != head["id"]:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(head["files"])
            for line in lines:
                self._apply_operation(store, files, line["key"], line["value"])
            commit_id = store.write_commit(rev, head["id"], header.get("summary", "update"), header.get("description", ""), files)
        prefix = "" if type == "models" else f"{type}/"
        self._send_json(
            {
                "success": True,
                "commitOid": commit_id,
                "commitUrl": f"{self._endpoint()}/{prefix}{repo}/commit/{commit_id}",
                "pullRequestUrl": None,
            }
        )

    @staticmethod
    def _apply_operation(store: Repo, files: dict, key: str, value: dict) -> None:
        if key == "file":
            content = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else value["content"].encode()
            files[value["path"]] = file_entry(store.store_object(content), len(content), False, content)
        elif key == "lfsFile":
            if not store.has_object(value["oid"], value.get("size")):
                raise HubError(400, f"LFS object {value['oid']} for {value['path']} was not uploaded")
            files[value["path"]] = file_entry(value["oid"], value["size"], True)
        elif key == "deletedFile":
            if files.pop(value["path"], None) is None:
                raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
        elif key == "deletedFolder":
            folder = value["path"].rstrip("/") + "/"
            for path in [p for p in files if p.startswith(folder)]:
                del files[path]
        elif key != "header":
            raise HubError(400, f"unsupported commit operation {key!r}")

    # ---- downloads ------------------------------------------------------------------------

    def handle_resolve(self, repo, rev, path, prefix=None) -> None:
        store = self._repo(self._type_from_prefix(prefix), repo)
        commit = store.resolve(rev)
        record = commit["files"].get(path)
        if record is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        blob = store.object_path(record["sha256"])
        size = blob.stat().st_size
        start, end = self._byte_range(size)
        headers = {
            "ETag": f'"{record["oid"]}"',
            "X-Repo-Commit": commit["id"],
            "Accept-Ranges": "bytes",
            "Content-Length": end - start,
        }
        if record["lfs"]:
            headers.update({"X-Linked-Etag": f'"{record["sha256"]}"', "X-Linked-Size": record["size"]})
        status = 200
        if "Range" in self.headers:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        self._send(status, b"", headers, content_type="application/octet-stream")
        if self.command == "GET":
            self._stream_file(blob, start, end)

    def _byte_range(self, size: int) -> tuple[int, int]:
        """``[start, end)`` from the Range header (the whole file without one)."""
        header = self.headers.get("Range")
        if not header:
            return 0, size
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
        if not match or match.groups() == ("", ""):
            raise HubError(416, f"Unsupported range {header!r}")
        first, last = match.groups()
        if first == "":
            start, end = max(size - int(last), 0), size
        else:
            start, end = int(first), min(int(last) + 1, size) if last else size
        if start >= size or start >= end:
            raise HubError(416, f"Range {header!r} not satisfiable for {size} bytes")
        return start, end

    def _stream_file(self, blob: Path, start: int, end: int) -> None:
        with open(blob, "rb") as source:
            source.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = source.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                self.wfile.write(chunk)
                self.server.count_served(len(chunk))
                remaining -= len(chunk)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, storage: HubStorage):
        super().__init__(address, HubRequestHandler)
        self.storage = storage
        self.failures: dict[str, list[int]] = {}  # "METHOD route" -> statuses to answer next
        self._counter_lock = threading.Lock()
        self.reset_counters()

    def handle_error(self, request, client_address) -> None:
        """Clients that vanish mid-request (killed publishers) are expected; report anything else."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def reset_counters(self) -> None:
        with self._counter_lock:
            self.requests: collections.Counter = collections.Counter()
            self.bytes_served = 0
            self.bytes_received = 0

    def take_injected_failure(self, route: str) -> int | None:
        """The status to fail this request with, if a test asked for failures on ``route``."""
        with self._counter_lock:
            queued = self.failures.get(route)
            return queued.pop(0) if queued else None

    def count_request(self, method: str, route: str) -> None:
        with self._counter_lock:
            self.requests[f"{method} {route}"] += 1

    def count_served(self, n: int) -> None:
        with self._counter_lock:
            self.bytes_served += n

    def count_received(self, n: int) -> None:
        with self._counter_lock:
            self.bytes_received += n

    def stats(self) -> dict:
        with self._counter_lock:
            return {
                "requests": dict(self.requests),
                "bytes_served": self.bytes_served,
                "bytes_received": self.bytes_received,
            }


# --------------------------------------------------------------------------------------------
# Test-facing handle
# --------------------------------------------------------------------------------------------


class HubServer:
    """A running loopback Hub: ``endpoint``, ``root``, ``token``, traffic counters, corruption."""

    token = "hf_loopback_token"

    def __init__(self, root: str | Path, port: int = 0, host: str = "127.0.0.1"):
        self.storage = HubStorage(root)
        self._http = _HTTPServer((host, port), self.storage)
        self.endpoint = f"http://{host}:{self._http.server_address[1]}"
        self._thread: threading.Thread | None = None

    @property
    def root(self) -> Path:
        return self.storage.root

    @root.setter
    def root(self, folder: str | Path) -> None:
        self.storage.root = Path(folder)

    @property
    def bytes_served(self) -> int:
        """File bytes sent by ``resolve`` downloads since the last :meth:`reset_counters`."""
        return self._http.bytes_served

    @property
    def bytes_received(self) -> int:
        return self._http.bytes_received

    @property
    def requests(self) -> collections.Counter:
        """Requests per ``"METHOD route"`` (e.g. ``"GET resolve"``, ``"POST commit"``)."""
        return self._http.requests

    def reset_counters(self) -> None:
        self._http.reset_counters()
        self._http.failures.clear()

    def fail_next(self, route: str, times: int = 1, status: int = 503) -> None:
        """Answer the next ``times`` requests of ``route`` (e.g. ``"POST commit"``) with ``status``."""
        self._http.failures.setdefault(route, []).extend([status] * times)

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._http.serve_forever, name="loopback-hub", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._http.serve_forever()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def blob_path(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "dataset") -> Path:
        """Where the bytes of ``path`` (at ``revision``) are stored on disk."""
        repo = self.storage.repo(f"{repo_type}s", repo_id)
        return repo.object_path(repo.resolve(revision)["files"][path]["sha256"])

    def corrupt(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "dataset") -> None:
        """Flip bytes in the middle of a stored file; size and recorded hashes stay as they were."""
        blob = self.blob_path(repo_id, path, revision, repo_type)
        data = bytearray(blob.read_bytes())
        middle = len(data) // 2
        for i in range(middle, min(middle + 16, len(data))):
            data[i] ^= 0xFF
        blob.write_bytes(bytes(data))

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def client_environment(cache_dir: str | Path, endpoint: str | None = None, *, offline: bool = False) -> dict[str, str]:
    """Environment for huggingface_hub / datasets clients of the loopback Hub. Both libraries read it
    at import time, so apply it before importing them."""
    cache_dir = Path(cache_dir)
    env = {
        "HF_HUB_DISABLE_XET": "1",  # xet uploads have no fallback the loopback Hub could serve
        "HF_HUB_OFFLINE": "1" if offline else "0",
        "HF_HOME": str(cache_dir / "hf"),
        "HF_DATASETS_CACHE": str(cache_dir / "datasets"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    return env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", required=True, help="folder holding the repos (created if missing)")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    Path(args.root).mkdir(parents=True, exist_ok=True)
    server = HubServer(args.root, args.port, args.host)
    print(f"loopback Hub at {server.endpoint}, storage in {args.root}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
