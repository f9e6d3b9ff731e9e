"""The local and Ray engines on real test stages (clip -> brightness filter -> mirror edit)."""

from __future__ import annotations

import json

import pytest
import torch
from engine_fixtures import calls, table_rows, write_fixture_recipe

from ditto_hf.generate.run.driver import execute, prepare
from ditto_hf.generate.run.inputs import sample_id_for
from ditto_hf.generate.run.rundir import RunDir
from ditto_hf.video import read_frames


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """One uninterrupted local run on the four sample clips; the darkest clip (zoom) is rejected."""
    folder = tmp_path_factory.mktemp("local")
    recipe_path, log = write_fixture_recipe(folder)
    recipe, run, samples = prepare(recipe_path, folder / "run")
    return execute(recipe, run, samples, engine="local"), log


def test_local_run_keeps_rejects_and_writes_tables(local_run):
    result, log = local_run
    root = result.run.root
    assert [sample.sample_id.split("-")[0] for sample in result.kept] == ["orbit", "portrait", "static"]
    (rejected,) = result.rejected
    assert rejected.sample_id.startswith("zoom") and rejected.rejected_by == "brightness"
    assert rejected.scores["brightness"] < 115 and "mean brightness" in rejected.reasons["brightness"]
    (row,) = table_rows(root / "rejected.parquet")
    assert (row["status"], row["stage"], row["sample_id"]) == ("rejected", "brightness", rejected.sample_id)
    assert row["scores"]["brightness"] == pytest.approx(rejected.scores["brightness"])
    # every stage ran exactly once per sample that reached it; the rejected one never reached mirror
    assert set(calls(log).values()) == {1}
    assert ("mirror", rejected.sample_id) not in calls(log) and len(calls(log)) == 4 + 4 + 3
    assert (root / "recipe.yaml").read_text().startswith("name: fixture")
    assert json.loads((root / "run.json").read_text())["versions"]["datasets"]


def test_manifest_decodes_and_edited_is_the_mirrored_source(local_run):
    result, _ = local_run
    dataset = RunDir(result.run.root).dataset()
    assert len(dataset) == 3 and dataset.column_names[:7] == [
        "source",
        "edited",
        "instruction",
        "category",
        "source_path",
        "edited_path",
        "caption",
    ]
    row = dataset[0]
    assert row["source_path"].startswith("video/") and row["edited_path"].startswith("generated/")
    assert row["category"] == row["edit_type"] == "global_freeform" and row["instruction"]
    source = row["source"].get_frames_in_range(0, 9).data.float()
    edited = row["edited"].get_frames_in_range(0, 9).data.float()
    assert source.shape == edited.shape == (9, 3, 64, 64)
    # lossy H.264 twice: the edit matches the flipped source far better than the source itself
    assert (edited - source.flip(-1)).abs().mean() < 0.25 * (edited - source).abs().mean()


def test_failing_sample_is_recorded_then_retried(tmp_path, sample_clips):
    fault = tmp_path / "fault-present"
    fault.touch()
    victim = sample_id_for(sample_clips[0].name, str(sample_clips[0].absolute()))
    recipe_path, log = write_fixture_recipe(tmp_path, fail_sample=victim, fail_while_exists=str(fault), min_brightness=0)
    recipe, run, samples = prepare(recipe_path, tmp_path / "run")
    result = execute(recipe, run, samples)
    (failed,) = result.failed
    assert failed.sample_id == victim and failed.rejected_by == "mirror" and "injected fault" in failed.error
    assert len(result.kept) == 3  # the failure did not sink its batch
    (row,) = table_rows(run.root / "rejected.parquet")
    assert (row["status"], row["stage"]) == ("failed", "mirror") and "injected fault" in row["error"]

    fault.unlink()  # the cause is gone, but a plain rerun does not retry failures
    again = execute(*prepare(recipe_path, tmp_path / "run")[:3])
    assert [sample.sample_id for sample in again.failed] == [victim]
    assert sum(calls(log).values()) == 4 + 4 + 4

    retried = execute(*prepare(recipe_path, tmp_path / "run")[:3], retry_failed=True)
    assert not retried.failed and len(retried.kept) == 4
    counts = calls(log)
    assert counts[("mirror", victim)] == 2 and counts[("clip", victim)] == 1
    assert len(RunDir(run.root).dataset()) == 4


def test_recipe_change_is_refused_on_resume(local_run, tmp_path):
    from ditto_hf.errors import DittoError

    result, _ = local_run
    other, _ = write_fixture_recipe(tmp_path, min_brightness=10)
    with pytest.raises(DittoError, match="different recipe"):
        prepare(other, result.run.root)


def test_ray_engine_matches_local(local_run, tmp_path):
    ray = pytest.importorskip("ray")
    result, _ = local_run
    recipe_path, log = write_fixture_recipe(tmp_path)
    recipe, run, samples = prepare(recipe_path, tmp_path / "run")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20)
    try:
        ray_result = execute(recipe, run, samples, engine="ray")
    finally:
        ray.shutdown()
    assert table_rows(run.root / "manifest.parquet") == table_rows(result.run.root / "manifest.parquet")
    assert table_rows(run.root / "rejected.parquet") == table_rows(result.run.root / "rejected.parquet")
    assert set(calls(log).values()) == {1} and len(calls(log)) == 11
    for sample in ray_result.kept:
        assert set(sample.timings) == {"clip", "brightness", "mirror"}
        assert torch.equal(read_frames(run.root / sample.video), read_frames(result.run.root / sample.video))


def test_cost_table_counts_gpu_seconds_per_kept_sample():
    from rich.console import Console

    from ditto_hf.generate.contract.sample import Sample
    from ditto_hf.generate.run.recipe import Recipe
    from ditto_hf.generate.run.report import cost_table

    recipe = Recipe.from_mapping(
        {"stages": {"clip": {"class": "ditto_hf.testing.stages:ClipStage"}, "mirror": {"class": "ditto_hf.testing.stages:MirrorStage"}}},
        "inline",
    )
    kept = [Sample(f"k{i}", "x", timings={"clip": 1.0, "mirror": 3.0}) for i in range(2)]
    rejected = Sample("r", "x", timings={"clip": 2.0}).reject("clip", "too dark")
    failed = Sample("f", "x", timings={"clip": 1.0}).fail("mirror", RuntimeError("boom"))
    console = Console(record=True, width=200)
    console.print(cost_table([*kept, rejected, failed], recipe))
    text = console.export_text()
    # mirror: 2 samples x 3 s x 1 GPU over 2 kept = 3 GPU-s per kept; clip declares no GPU
    assert "GPU-seconds per kept sample: 3.00" in text
    rows = {
        cells[0]: cells[1:]
        for cells in ([cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│"))
    }
    # samples, s / sample, GPUs, GPU-s / kept, rejected, failed, acceptance
    assert rows["clip"] == ["4", "1.250", "0", "0.000", "1", "0", "75%"]
    assert rows["mirror"] == ["3", "3.000", "1", "3.000", "0", "1", "67%"]


def test_ray_actor_pools_follow_declared_resources():
    from ditto_hf.errors import DittoError
    from ditto_hf.generate.engines.ray import actor_shape
    from ditto_hf.generate.run.recipe import StageSpec

    mirror = StageSpec("mirror", {}, class_path="ditto_hf.testing.stages:MirrorStage")  # 1 GPU
    clip = StageSpec("clip", {}, class_path="ditto_hf.testing.stages:ClipStage")  # CPU only
    gpu_cluster = {"GPU": 8.0, "CPU": 64.0}
    assert actor_shape(mirror, gpu_cluster, stages_in_flight=3) == (1, 1.0, 8)  # one actor per GPU
    assert actor_shape(StageSpec("mirror", {}, class_path=mirror.class_path, workers=2), gpu_cluster, 3)[2] == 2  # recipe cap
    gpus, cpus, workers = actor_shape(clip, {"CPU": 2.0}, stages_in_flight=3)
    assert gpus == 0 and cpus == pytest.approx(1 / 3) and workers == 2  # every stage fits, at most one actor per CPU
    assert actor_shape(mirror, {"CPU": 2.0}, stages_in_flight=3)[0] == 0  # no GPU in the cluster: runs on CPU
    with pytest.raises(DittoError, match="needs 1 GPU"):
        actor_shape(mirror, {"GPU": 0.5, "CPU": 8.0}, stages_in_flight=1)


def test_waves_take_each_group_through_every_stage_first(tmp_path, local_run):
    """With wave_size=2 the first two samples finish the whole chain before the next two start,
    and the tables equal those of the all-at-once run."""
    recipe_path, log = write_fixture_recipe(tmp_path)
    recipe, run, samples = prepare(recipe_path, tmp_path / "run")
    result = execute(recipe, run, samples, engine="local", wave_size=2)
    order = [tuple(line.split()) for line in log.read_text().splitlines()]
    first_wave = {sample_id for _, sample_id in order[:2]}
    assert len(first_wave) == 2
    last_of_first_wave = max(index for index, (_, sample_id) in enumerate(order) if sample_id in first_wave)
    first_of_second_wave = min(index for index, (_, sample_id) in enumerate(order) if sample_id not in first_wave)
    assert last_of_first_wave < first_of_second_wave, order
    assert set(calls(log).values()) == {1}
    reference, _ = local_run
    for table in ("manifest.parquet", "rejected.parquet"):
        assert table_rows(result.run.root / table) == table_rows(reference.run.root / table)


def test_a_stage_has_one_name_the_recipe_key_its_class_declares(tmp_path):
    import yaml

    from ditto_hf.errors import DittoError
    from ditto_hf.generate.run.recipe import load_recipe

    path, _ = write_fixture_recipe(tmp_path)
    recipe = yaml.safe_load(path.read_text())
    recipe["stages"] = {"blur" if name == "mirror" else name: entry for name, entry in recipe["stages"].items()}
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    with pytest.raises(DittoError, match="is the stage 'mirror'; use 'mirror' as its recipe key"):
        load_recipe(path).validate()


def test_batch_size_comes_from_the_typed_config(tmp_path):
    from ditto_hf.generate.run.recipe import load_recipe

    path, _ = write_fixture_recipe(tmp_path, batch_size=3)
    assert [spec.batch_size for spec in load_recipe(path).stages] == [3, 1, 1]
