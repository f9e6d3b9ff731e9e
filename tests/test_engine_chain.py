"""The whole Ditto chain with the tiny recipe through ``ditto-hf generate``, then pushed and streamed back."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from engine_fixtures import write_fixture_recipe
from huggingface_hub import hf_hub_download

from ditto_hf.cli import main
from ditto_hf.generate.run.recipe import load_recipe
from ditto_hf.generate.run.rundir import RunDir
from ditto_hf.generate.stages import DEFAULT_CHAIN
from ditto_hf.video import probe

REPO = "loopback/ditto-generated"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tiny models are latency-bound: one thread avoids oversubscribing the shared cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def generate(*args: str) -> None:
    try:
        main(["generate", *args])
    except SystemExit as exit:
        assert exit.code == 0


def test_tiny_recipe_names_every_stage_and_only_known_options():
    recipe = load_recipe("tiny")
    assert [spec.name for spec in recipe.stages] == list(DEFAULT_CHAIN)
    recipe.validate()  # every config field exists on its stage
    for name in ("paper", "fast"):
        assert [spec.name for spec in load_recipe(name).stages] == list(DEFAULT_CHAIN)
        load_recipe(name).validate()


@pytest.mark.slow
def test_tiny_chain_runs_end_to_end_and_pushes_as_a_second_config(tmp_path, hub_server, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    # a first config of the repo, from the quick test stages
    recipe, _ = write_fixture_recipe(tmp_path, min_brightness=0)
    generate(
        "--output",
        str(tmp_path / "mirror-run"),
        "--recipe",
        str(recipe),
        "--limit",
        "1",
        "--push-to-hub",
        REPO,
        "--config-name",
        "mirrored",
    )

    run = tmp_path / "tiny-run"
    generate("--output", str(run), "--limit", "2", "--push-to-hub", REPO, "--config-name", "tiny_chain")

    kept = RunDir(run).dataset()
    assert len(kept) == 2  # the tiny recipe's filters keep everything
    for row in kept:
        scores, timings = row["scores"], row["timings"]  # structs: no JSON to parse
        assert set(timings) == set(DEFAULT_CHAIN)
        assert {"instruction_fidelity", "source_fidelity", "visual_quality", "safety"} <= set(scores)
        assert row["category"] in ("global_style", "global_freeform", "local_replace", "local_add", "local_remove")
        assert row["instruction"] and row["caption"]
        for column in ("keyframe_path", "edited_keyframe_path", "depth_path", "generated_path"):
            assert (run / row[column]).is_file(), column
        source, edited = probe(run / row["source_path"]), probe(run / row["edited_path"])
        assert (source.num_frames, source.fps) == (9, 8.0)
        assert edited.num_frames == 9 and (edited.width, edited.height) == (source.width, source.height)
        assert row["edited_path"] != row["generated_path"]  # the refined video is the edit
    assert {(probe(run / path).width, probe(run / path).height) for path in kept["source_path"]} == {(64, 32), (32, 64)}

    streamed = list(datasets.load_dataset(REPO, "tiny_chain", split="train", streaming=True))
    assert sorted(row["instruction"] for row in streamed) == sorted(kept["instruction"])
    assert all(len(row["edited"]) == 9 for row in streamed)
    first = list(datasets.load_dataset(REPO, "mirrored", split="train", streaming=True))
    assert len(first) == 1 and first[0]["instruction"] == "Mirror the video from left to right."
    card = Path(hf_hub_download(REPO, "README.md", repo_type="dataset")).read_text()
    from ditto_hf.tiny import default_tiny_root

    recorded = (run / "recipe.yaml").read_text()
    assert recorded.replace(str(default_tiny_root()), "{tiny}") in card and '"transformers":' in card  # recipe and versions
    assert str(default_tiny_root()) not in card and str(run) not in card  # no path of this machine
