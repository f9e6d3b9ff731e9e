"""Publishing to the (loopback) Hub: two configs streamed back by plain datasets, resume after
SIGKILL, and `check` catching a corrupted shard."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from ditto_hf.errors import DittoError
from ditto_hf.generate.run.rundir import RunDir

REPO = "loopback/ditto-mirror"
TINY = {"max_shard_size": 4000, "row_group_bytes": 8000}  # tiny clips: one row per row group, two per shard


@pytest.fixture(scope="module")
def tiny_clips(tmp_path_factory) -> list[Path]:
    """Eight distinct 32x32 clips of 6 frames (a moving bright bar on a tinted background)."""
    from ditto_hf.video import write_video

    folder = tmp_path_factory.mktemp("clips")
    clips = []
    for index in range(8):
        frames = torch.full((6, 32, 32, 3), 20 * index, dtype=torch.uint8)
        for t in range(6):
            frames[t, :, 4 * t : 4 * t + 4, index % 3] = 250
        clips.append(write_video(folder / f"clip{index}.mp4", frames, fps=6))
    return clips


def triplets(clips: list[Path], pairs: list[tuple[int, int]], tag: str):
    import datasets

    from ditto_hf.schema import TRIPLET_FEATURES

    columns = {
        "source": [str(clips[s]) for s, _ in pairs],
        "edited": [str(clips[e]) for _, e in pairs],
        "instruction": [f"{tag}: turn clip {s} into clip {e}" for s, e in pairs],
        "category": ["local"] * len(pairs),
        "source_path": [f"source/0000/{s:032d}.mp4" for s, _ in pairs],
        "edited_path": [f"local/0000/{s:032d}_{e}.mp4" for s, e in pairs],
        "caption": [f"clip {s}" for s, _ in pairs],
    }
    return datasets.Dataset.from_dict(columns, features=TRIPLET_FEATURES)


def run_dir(clips: list[Path], folder: Path) -> Path:
    """A finished generate run: videos plus ``manifest.parquet`` with run-relative paths."""
    import datasets
    import pyarrow.parquet as pq

    from ditto_hf.schema import PROVENANCE_FEATURES, RUN_FEATURES

    (folder / "videos").mkdir(parents=True)
    rows = []
    for number, (s, e) in enumerate([(5, 6), (7, 0)]):
        for name, index in (("src", s), ("out", e)):
            (folder / "videos" / f"{number}_{name}.mp4").write_bytes(clips[index].read_bytes())
        row = {name: "" for name in PROVENANCE_FEATURES}
        row.update(
            source={"path": f"videos/{number}_src.mp4"},
            edited={"path": f"videos/{number}_out.mp4"},
            instruction=f"run: turn clip {s} into clip {e}",
            category="global_style",
            source_path=f"videos/{number}_src.mp4",
            edited_path=f"videos/{number}_out.mp4",
            caption="",
            sample_id=f"sample-{number}",
            scores=json.dumps({"vlm": 0.5 + number}),
        )
        rows.append(row)
    pq.write_table(datasets.Dataset.from_list(rows, features=RUN_FEATURES).data.table, folder / "manifest.parquet")
    return folder


def repo_state(api, repo_id: str) -> dict[str, str]:
    """``path -> content hash`` of every file on the repo's main branch."""
    files = [f for f in api.list_repo_tree(repo_id, repo_type="dataset", recursive=True) if hasattr(f, "blob_id")]
    return {f.path: (f.lfs.sha256 if f.lfs else f.blob_id) for f in files}


def expected_rows(clips: list[Path], dataset) -> list[dict]:
    """What a reader must get back: text columns, mp4 bytes and decoded frames of every video."""
    from ditto_hf.video import read_frames

    rows = []
    for row in dataset.cast_column("source", _raw()).cast_column("edited", _raw()):
        expected = {k: v for k, v in row.items() if k not in ("source", "edited")}
        for column in ("source", "edited"):
            path = row[column]["path"]
            expected[f"{column}_sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            expected[f"{column}_frames"] = hashlib.sha256(read_frames(path).numpy().tobytes()).hexdigest()
        rows.append(expected)
    return rows


def _raw():
    from datasets import Video

    return Video(decode=False)


# Runs in a fresh interpreter that never imports ditto_hf: only datasets + torchcodec, as a user would.
READ_BACK = textwrap.dedent(
    """
    import hashlib, json, sys
    import datasets

    repo, configs = sys.argv[1], sys.argv[2:]
    out = {}
    for config in configs:
        decoded = datasets.load_dataset(repo, config, split="train", streaming=True)
        raw = datasets.load_dataset(repo, config, split="train", streaming=True).decode(False)
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


def test_two_configs_stream_back_with_plain_datasets(hub_server, tiny_clips, tmp_path):
    from huggingface_hub import DatasetCard, HfApi

    from ditto_hf.hub import publish

    api = HfApi(token=hub_server.token)
    alpha = triplets(tiny_clips, [(0, 1), (2, 3), (4, 5), (6, 7), (1, 0)], "alpha")
    first = publish(alpha, REPO, "alpha", provenance="Hand-made alpha triplets.", commit_every=2, **TINY)
    assert first.num_rows == 5 and len(first.shards) >= 3 and first.uploaded == len(first.shards)
    assert len(first.commits) == -(-len(first.shards) // 2)  # one commit per batch of 2, the card rides on the last
    assert [(shard["num_rows"], shard["num_row_groups"]) for shard in first.shards] == [(2, 2), (2, 2), (1, 1)]
    assert all(shard["max_row_group_bytes"] <= TINY["max_shard_size"] for shard in first.shards)  # groups never span shards
    alpha_files = {p: h for p, h in repo_state(api, REPO).items() if p.startswith("alpha/")}

    run = run_dir(tiny_clips, tmp_path / "run")
    second = publish(RunDir(run).dataset(), REPO, "beta", provenance="Generated by a tiny recipe.")
    assert second.num_rows == 2 and len(second.commits) == 1

    state = repo_state(api, REPO)
    assert {p: h for p, h in state.items() if p.startswith("alpha/")} == alpha_files  # config A untouched
    card = DatasetCard.load(REPO, repo_type="dataset")
    assert card.data.license == "cc-by-nc-sa-4.0"
    assert [c["config_name"] for c in card.data.configs] == ["alpha", "beta"]
    infos = {info["config_name"]: info["splits"][0]["num_examples"] for info in card.data.dataset_info}
    assert infos == {"alpha": 5, "beta": 2}
    for text in (
        "Hand-made alpha triplets.",
        "Generated by a tiny recipe.",
        "arXiv:2510.15742",
        "Scaling Instruction-Based Video Editing with a High-Quality Synthetic Dataset",
    ):
        assert text in card.text
    for shard in first.shards + second.shards:
        assert shard["sha256"] in card.text and state[shard["path"]] == shard["sha256"]

    streamed = read_back(hub_server, REPO, ["alpha", "beta"])
    assert streamed["alpha"] == expected_rows(tiny_clips, alpha)

    assert streamed["beta"] == expected_rows(tiny_clips, RunDir(run).dataset())
    assert json.loads(streamed["beta"][1]["scores"]) == {"vlm": 1.5}  # provenance columns travel along


def test_killed_publish_resumes_to_the_same_state(hub_server, tiny_clips):
    """SIGKILL a publishing process after its first commit; the rerun finishes without duplicates."""
    import datasets
    from huggingface_hub import HfApi

    from ditto_hf.hub import publish

    api = HfApi(token=hub_server.token)
    pairs = [(i, (i + 3) % 8) for i in range(8)]
    publish(triplets(tiny_clips, pairs, "kill"), "loopback/reference", "main_cfg", commit_every=2, **TINY)
    reference = repo_state(api, "loopback/reference")

    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED_PUBLISH,
            json.dumps([str(c) for c in tiny_clips]),
            json.dumps(pairs),
            json.dumps(TINY),
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "0"},
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while len(_commits(api, REPO)) < 2:  # the repo's initial commit + the child's first batch
        assert child.poll() is None, child.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the publishing process made no commit"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    interrupted = repo_state(api, REPO)
    assert "README.md" not in interrupted and 0 < sum(p.endswith(".parquet") for p in interrupted) < len(reference) - 2

    puts_before = hub_server.requests["PUT lfs_put"]
    resumed = publish(triplets(tiny_clips, pairs, "kill"), REPO, "main_cfg", commit_every=2, **TINY)
    assert resumed.reused >= 2  # committed shards were recognised by SHA-256, not re-sent
    assert hub_server.requests["PUT lfs_put"] - puts_before <= len(resumed.shards) - resumed.reused

    final = repo_state(api, REPO)
    readme = lambda state: {k: v for k, v in state.items() if k != "README.md"}  # noqa: E731 (names the repo)
    assert readme(final) == readme(reference)
    assert _card_text(api, REPO, "X") == _card_text(api, "loopback/reference", "X")

    commits = len(_commits(api, REPO))
    again = publish(triplets(tiny_clips, pairs, "kill"), REPO, "main_cfg", commit_every=2, **TINY)
    assert again.uploaded == 0 and again.commits == [] and again.reused == len(again.shards)
    assert repo_state(api, REPO) == final and len(_commits(api, REPO)) == commits
    rows = datasets.load_dataset(REPO, "main_cfg", split="train", streaming=True).decode(False)
    assert [row["instruction"] for row in rows] == [f"kill: turn clip {s} into clip {e}" for s, e in pairs]


KILLED_PUBLISH = textwrap.dedent(
    """
    import json, sys, time
    import datasets
    from ditto_hf.hub import publish
    from ditto_hf.schema import TRIPLET_FEATURES

    clips, pairs, limits = (json.loads(arg) for arg in sys.argv[1:4])
    columns = {
        "source": [clips[s] for s, _ in pairs], "edited": [clips[e] for _, e in pairs],
        "instruction": [f"kill: turn clip {s} into clip {e}" for s, e in pairs], "category": ["local"] * len(pairs),
        "source_path": [f"source/0000/{s:032d}.mp4" for s, _ in pairs],
        "edited_path": [f"local/0000/{s:032d}_{e}.mp4" for s, e in pairs], "caption": [f"clip {s}" for s, _ in pairs],
    }
    dataset = datasets.Dataset.from_dict(columns, features=TRIPLET_FEATURES)
    # a slow producer, so that the parent can kill it between two commits
    publish(dataset, "REPO", "main_cfg", commit_every=2, on_shard=lambda shard, on_hub: time.sleep(0.5), **limits)
    """
).replace("REPO", REPO)


def _commits(api, repo_id: str) -> list:
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return api.list_repo_commits(repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        return []


def _card_text(api, repo_id: str, placeholder: str) -> str:
    """The card with the repo's id and name replaced by ``placeholder``."""
    text = Path(api.hf_hub_download(repo_id, "README.md", repo_type="dataset")).read_text()
    return text.replace(repo_id, placeholder).replace(repo_id.split("/")[1], placeholder)


def test_publish_rides_out_transient_hub_errors(hub_server, tiny_clips):
    from huggingface_hub import HfApi

    from ditto_hf.hub import publish

    hub_server.fail_next("POST commit", status=503)
    hub_server.fail_next("PUT lfs_put", status=502)
    result = publish(triplets(tiny_clips, [(0, 1), (2, 3)], "flaky"), REPO, "flaky", **TINY)
    assert hub_server.requests["POST commit"] == len(result.commits) + 1  # the failed attempt, then success
    assert hub_server.requests["PUT lfs_put"] == len(result.shards) + 1
    assert sum(p.startswith("flaky/") for p in repo_state(HfApi(token=hub_server.token), REPO)) == len(result.shards) + 1


def test_check_names_a_corrupted_shard(hub_server, tiny_clips, capsys):
    from ditto_hf.cli import main
    from ditto_hf.hub import check, publish

    result = publish(triplets(tiny_clips, [(0, 1), (2, 3), (4, 5)], "check"), REPO, "gamma", **TINY)
    healthy = check(REPO)
    assert healthy.ok, healthy.errors
    assert healthy.configs == ["gamma"]
    assert any("SHA-256 of every byte verified" in f.message for f in healthy.findings)
    assert any("video stream at index 0" in f.message for f in healthy.findings)

    victim = result.shards[-1]["path"]
    hub_server.corrupt(REPO, victim)
    broken = check(REPO)
    assert not broken.ok
    assert [f.where for f in broken.errors if "SHA-256 mismatch" in f.message] == [victim]

    with pytest.raises(SystemExit) as exit_info:
        main(["check", REPO])
    assert exit_info.value.code == 1
    assert victim in capsys.readouterr().out


def test_check_reads_a_local_folder_and_reports_card_problems(hub_server, tiny_clips, tmp_path):
    from huggingface_hub import snapshot_download

    from ditto_hf.hub import check, publish

    publish(triplets(tiny_clips, [(0, 1), (2, 3)], "local"), REPO, "delta", **TINY)
    folder = Path(snapshot_download(REPO, repo_type="dataset", local_dir=tmp_path / "copy"))
    assert check(folder).ok

    readme = folder / "README.md"
    readme.write_text(readme.read_text().replace("config_name: delta", "config_name: [delta"))
    report = check(folder)
    assert not report.ok and report.errors[0].where == "README.md" and "YAML" in report.errors[0].message


def audio_first_mp4(path: Path) -> Path:
    """An mp4 whose stream 0 is audio and stream 1 the video (remote readers need video first)."""
    import av
    import numpy as np

    with av.open(str(path), "w", format="mp4") as container:
        audio = container.add_stream("aac", rate=16000, layout="mono")
        video = container.add_stream("libx264", rate=8)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        for index in range(8):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), index * 20, np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        sound.sample_rate = 16000
        container.mux(audio.encode(sound))
        container.mux(audio.encode())
    return path


def test_check_flags_a_video_that_is_not_stream_0(hub_server, tiny_clips, tmp_path):
    from ditto_hf.hub import check, publish

    clips = [tiny_clips[0], audio_first_mp4(tmp_path / "audio_first.mp4")]
    publish(triplets(clips, [(0, 1)], "audio"), REPO, "epsilon")
    report = check(REPO)
    assert [(f.where, f.message.split(":")[0]) for f in report.errors] == [("epsilon", "row 0 edited")]
    assert "stream 0 is audio" in report.errors[0].message


def test_publish_rejects_rows_without_the_triplet_columns(hub_server, tiny_clips):
    import datasets

    from ditto_hf.hub import publish

    bad = datasets.Dataset.from_dict({"source": [str(tiny_clips[0])], "instruction": ["x"]})
    with pytest.raises(DittoError, match="missing triplet column.*edited"):
        publish(bad, REPO, "bad")
    missing = triplets([tiny_clips[0], Path("/no/such.mp4")], [(0, 0), (0, 1)], "x")
    with pytest.raises(DittoError, match=r"rows 0-1: cannot embed a video .*/no/such.mp4"):
        publish(missing, REPO, "missing")
    with pytest.raises(DittoError, match="no rows to publish"):
        publish(triplets(tiny_clips, [], "x"), REPO, "empty")
    with pytest.raises(DittoError, match="invalid config name"):
        publish(triplets(tiny_clips, [(0, 1)], "x"), REPO, "no spaces")


def test_mirror_command_converts_the_release(hub_server, tmp_path, capsys):
    """`ditto-hf mirror --config all` puts every config of a (miniature) release on the Hub, byte for byte."""
    import datasets
    from huggingface_hub import DatasetCard

    from ditto_1m import Ditto1M
    from ditto_hf.cli import main
    from ditto_hf.testing.release import make_release

    release = make_release(tmp_path / "release", dirs=2, sources_per_dir=1)
    main(["mirror", "--config", "all", "--data-dir", str(release.root), "--repo", "loopback/mirror"])
    assert "config local: 4 rows" in " ".join(capsys.readouterr().err.split())

    card = DatasetCard.load("loopback/mirror", repo_type="dataset")
    assert [c["config_name"] for c in card.data.configs] == release.configs
    assert "builder config `sim2real`" in card.text
    for config in ("local", "sim2real"):
        original = list(Ditto1M(config_name=config, data_dir=str(release.root)).as_streaming_dataset("train").decode(False))
        mirrored = list(datasets.load_dataset("loopback/mirror", config, split="train", streaming=True).decode(False))
        assert [{**row, "source": row["source"]["bytes"], "edited": row["edited"]["bytes"]} for row in mirrored] == [
            {**row, "source": row["source"]["bytes"], "edited": row["edited"]["bytes"]} for row in original
        ]

    # a metadata row whose edited video is missing: named and fatal by default, counted when skipping
    metadata = release.root / "training_metadata" / "local.json"
    rows = json.loads(metadata.read_text())
    metadata.write_text(json.dumps(rows + [{**rows[0], "edited_path": "local/0000/missing_9.mp4"}]))
    local = ["mirror", "--config", "local", "--data-dir", str(release.root), "--repo", "loopback/mirror"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as failed:
        main([*local, "--config-name", "local_copy"])
    assert failed.value.code == 1 and "row 4" in capsys.readouterr().err
    main([*local, "--config-name", "local_copy", "--on-bad-rows", "skip"])
    assert "1 bad row(s) of local skipped" in " ".join(capsys.readouterr().err.split())
    copied = datasets.load_dataset("loopback/mirror", "local_copy", split="train", streaming=True).decode(False)
    assert sorted(row["edited_path"] for row in copied) == sorted(row["edited_path"] for row in rows)
