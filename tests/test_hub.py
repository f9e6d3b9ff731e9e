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
from hub_fixtures import card_text, commits, read_back, repo_state

from ditto_hf.errors import DittoError
from ditto_hf.generate.run.rundir import RunDir

REPO = "loopback/ditto-mirror"
TINY = {"max_shard_size": 7000, "row_group_bytes": 5000}  # tiny clips (~3.7 KB a row): one row per row group, two per shard


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

    from ditto_hf.schema import PROVENANCE_FEATURES, run_features

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
            scores={"vlm": 0.5 + number},
            reasons=None,
            timings={"vace": 2.0},
        )
        rows.append(row)
    features = run_features({"scores": ["vlm"], "timings": ["vace"]})
    pq.write_table(datasets.Dataset.from_list(rows, features=features).data.table, folder / "manifest.parquet")
    return folder


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
    assert streamed["beta"][1]["scores"] == {"vlm": 1.5}  # provenance columns travel along, as structs


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
    while len(commits(api, REPO)) < 2:  # the repo's initial commit + the child's first batch
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
    assert card_text(api, REPO, "X") == card_text(api, "loopback/reference", "X")

    made_commits = len(commits(api, REPO))
    again = publish(triplets(tiny_clips, pairs, "kill"), REPO, "main_cfg", commit_every=2, **TINY)
    assert again.uploaded == 0 and again.commits == [] and again.reused == len(again.shards)
    assert repo_state(api, REPO) == final and len(commits(api, REPO)) == made_commits
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
