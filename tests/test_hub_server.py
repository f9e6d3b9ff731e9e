"""The loopback Hub answers the real huggingface_hub and datasets clients."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

REPO = "loopback/tiny"


@pytest.fixture
def api(hub_server):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_server.endpoint, token=hub_server.token)


@pytest.fixture
def parquet_repo(api, tmp_path):
    """A dataset repo with two parquet shards (LFS) and a README (regular file)."""
    import datasets

    api.create_repo(REPO, repo_type="dataset")
    folder = tmp_path / "upload"
    for index in range(2):
        shard = datasets.Dataset.from_dict({"n": list(range(index * 50, index * 50 + 50)), "s": ["x" * 20] * 50})
        (folder / "data").mkdir(parents=True, exist_ok=True)
        shard.to_parquet(folder / "data" / f"train-{index}.parquet")
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# tiny\n")
    api.upload_folder(folder_path=folder, repo_id=REPO, repo_type="dataset", commit_message="add data")
    return folder


def test_create_upload_list_and_history(api, hub_server, parquet_repo, monkeypatch):
    from huggingface_hub.errors import (
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    import ditto_hf.testing.hub_server as server_module

    api.create_repo(REPO, repo_type="dataset", exist_ok=True)
    with pytest.raises(HfHubHTTPError):
        api.create_repo(REPO, repo_type="dataset")

    files = {f.path: f for f in api.list_repo_tree(REPO, repo_type="dataset", recursive=True) if hasattr(f, "size")}
    assert set(files) == {".gitattributes", "README.md", "data/train-0.parquet", "data/train-1.parquet"}
    shard = parquet_repo / "data" / "train-0.parquet"
    assert files["data/train-0.parquet"].lfs.sha256 == hashlib.sha256(shard.read_bytes()).hexdigest()
    assert files["README.md"].lfs is None
    monkeypatch.setattr(server_module, "TREE_PAGE_SIZE", 2)  # the client follows the Link header
    assert len(list(api.list_repo_tree(REPO, repo_type="dataset", recursive=True))) == len(files) + 1
    assert hub_server.requests["GET tree"] >= 4
    top = [f.path for f in api.list_repo_tree(REPO, repo_type="dataset")]
    assert top == [".gitattributes", "README.md", "data"]

    info = api.dataset_info(REPO, files_metadata=True)
    assert info.card_data["license"] == "mit"
    assert {s.rfilename for s in info.siblings} == set(files)
    assert [c.title for c in api.list_repo_commits(REPO, repo_type="dataset")] == ["add data", "initial commit"]

    # a second identical upload is a no-op: no new commit, nothing re-sent
    assert hub_server.requests["PUT lfs_put"] == 2
    api.upload_folder(folder_path=parquet_repo, repo_id=REPO, repo_type="dataset")
    assert len(api.list_repo_commits(REPO, repo_type="dataset")) == 2
    assert hub_server.requests["PUT lfs_put"] == 2

    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("loopback/missing")
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(REPO, revision="no-such-branch")


def test_parent_commit_and_old_revisions(api, parquet_repo):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    first = api.dataset_info(REPO).sha
    api.create_commit(
        REPO,
        repo_type="dataset",
        commit_message="drop shard 1",
        parent_commit=first,
        operations=[CommitOperationDelete("data/train-1.parquet"), CommitOperationAdd("notes.txt", b"hello")],
    )
    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(
            REPO,
            repo_type="dataset",
            commit_message="stale",
            parent_commit=first,
            operations=[CommitOperationAdd("other.txt", b"x")],
        )
    assert stale.value.response.status_code == 412

    assert not api.file_exists(REPO, "data/train-1.parquet", repo_type="dataset")
    assert api.file_exists(REPO, "data/train-1.parquet", repo_type="dataset", revision=first)
    infos = api.get_paths_info(REPO, ["notes.txt", "data", "missing.txt"], repo_type="dataset")
    assert [(type(i).__name__, i.path) for i in infos] == [("RepoFile", "notes.txt"), ("RepoFolder", "data")]


def test_download_and_range_reads(api, hub_server, parquet_repo):
    from huggingface_hub import HfFileSystem, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    shard = (parquet_repo / "data" / "train-1.parquet").read_bytes()
    local = hf_hub_download(REPO, "data/train-1.parquet", repo_type="dataset")
    assert Path(local).read_bytes() == shard
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "nope.parquet", repo_type="dataset")

    fs = HfFileSystem(endpoint=hub_server.endpoint, token=hub_server.token)
    assert sorted(fs.ls(f"datasets/{REPO}/data", detail=False)) == [
        f"datasets/{REPO}/data/train-0.parquet",
        f"datasets/{REPO}/data/train-1.parquet",
    ]
    hub_server.reset_counters()
    with fs.open(f"datasets/{REPO}/data/train-1.parquet", "rb", block_size=256) as remote:
        remote.seek(100)
        assert remote.read(64) == shard[100:164]
    assert 64 <= hub_server.bytes_served < len(shard)  # a range read, not the whole file


def test_datasets_reads_the_repo(parquet_repo, hub_server):
    import datasets

    full = datasets.load_dataset("parquet", data_files=f"hf://datasets/{REPO}/data/*.parquet", split="train")
    assert sorted(full["n"]) == list(range(100))
    streamed = datasets.load_dataset(REPO, split="train", streaming=True)
    assert sorted(row["n"] for row in streamed) == list(range(100))


def _http_json(url: str, payload: dict | None = None):
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_runs_as_a_subprocess(tmp_path):
    """``python -m ditto_hf.testing.hub_server --port P --root DIR`` serves until killed; storage survives."""
    from ditto_hf.testing.hub_server import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ditto_hf.testing.hub_server", "--port", str(port), "--root", str(tmp_path / "hub")],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert b"loopback Hub" in process.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        created = _http_json(f"{url}/api/repos/create", {"name": "a/b", "type": "dataset"})
        assert created["url"] == f"{url}/datasets/a/b"
        info = _http_json(f"{url}/api/datasets/a/b")
        assert [s["rfilename"] for s in info["siblings"]] == [".gitattributes"]
        stats = _http_json(f"{url}/_loopback/stats")
        assert stats["requests"]["POST create_repo"] == 1
    finally:
        process.kill()
        process.wait(timeout=10)
    assert (tmp_path / "hub" / "datasets" / "a" / "b" / "refs" / "main").is_file()
