"""What the Hub tests share: reading a repo back the way a user without ditto-hf would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

DEFAULT = ""  # config name that stands for load_dataset(repo) without a config

# Runs in a fresh interpreter that never imports ditto_hf: only datasets + torchcodec, as a user would.
READ_BACK = textwrap.dedent(
    """
    import hashlib, json, sys
    import datasets

    repo, configs = sys.argv[1], sys.argv[2:]
    out = {}
    for config in configs:
        decoded = datasets.load_dataset(repo, config or None, split="train", streaming=True)
        raw = datasets.load_dataset(repo, config or None, split="train", streaming=True).decode(False)
        rows = []
        for row, raw_row in zip(decoded, raw, strict=True):
            record = {k: v for k, v in row.items() if k not in ("source", "edited")}
            for column in ("source", "edited"):
                frames = row[column][:]  # every frame, (T, C, H, W) uint8
                record[column + "_frames"] = hashlib.sha256(frames.permute(0, 2, 3, 1).contiguous().numpy().tobytes()).hexdigest()
                record[column + "_sha256"] = hashlib.sha256(raw_row[column]["bytes"]).hexdigest()
            rows.append(record)
        out[config] = rows
    assert not any(name.startswith("ditto_hf") for name in sys.modules), "the reader imported ditto_hf"
    print(json.dumps(out))
    """
)


def read_back(hub_server, repo_id: str, configs: list[str]) -> dict:
    """``config -> rows`` (text columns, SHA-256 of each video's bytes and of its decoded frames),
    streamed with plain ``datasets`` in a process that never imports ditto_hf; ``DEFAULT`` reads
    ``load_dataset(repo)``."""
    env = {**os.environ, "HF_ENDPOINT": hub_server.endpoint, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1"}
    done = subprocess.run(
        [sys.executable, "-c", READ_BACK, repo_id, *configs],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def repo_state(api, repo_id: str) -> dict[str, str]:
    """``path -> content hash`` of every file on the repo's main branch."""
    files = [f for f in api.list_repo_tree(repo_id, repo_type="dataset", recursive=True) if hasattr(f, "blob_id")]
    return {f.path: (f.lfs.sha256 if f.lfs else f.blob_id) for f in files}


def commits(api, repo_id: str) -> list:
    """The repo's commits, newest first (none when the repo does not exist yet)."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return api.list_repo_commits(repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        return []


def card_text(api, repo_id: str, placeholder: str) -> str:
    """The card with the repo's id and name replaced by ``placeholder``."""
    text = Path(api.hf_hub_download(repo_id, "README.md", repo_type="dataset")).read_text()
    return text.replace(repo_id, placeholder).replace(repo_id.split("/")[1], placeholder)
