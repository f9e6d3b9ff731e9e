"""The training part: DiffSynth's crop, the modality curriculum's schedule and draws, the VACE transform on real rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from diffsynth_fixtures import operators
from PIL import Image

from ditto_hf.testing.release import make_release
from ditto_hf.training import ModalityCurriculum, VaceTrainingTransform, diffsynth_crop_resize
from ditto_hf.video import read_frames


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("release") / "extracted", dirs=1, frames=12, size=48)


def stream(release, config: str):
    import ditto_1m

    return ditto_1m.Ditto1M(config_name=config, data_dir=str(release.root)).as_streaming_dataset("train")


@pytest.mark.parametrize(("shape", "size"), [((2, 3, 48, 64), (32, 48)), ((1, 3, 37, 50), (16, 32)), ((1, 3, 720, 1280), (832, 480))])
def test_crop_resize_is_diffsynths_own(shape, size):
    frames = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    operator = operators().ImageCropAndResize(height=size[1], width=size[0], max_pixels=None)
    expected = [np.array(operator(Image.fromarray(frame.permute(1, 2, 0).numpy()))) for frame in frames]
    ours = diffsynth_crop_resize(frames, size)
    assert ours.shape == (shape[0], 3, size[1], size[0])
    assert all(np.array_equal(ours[index].permute(1, 2, 0).numpy(), expected[index]) for index in range(shape[0]))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("final", [0.0, 0.25])
def test_probability_is_one_in_warmup_then_falls_monotonically_to_the_final_value(schedule, final):
    curriculum = ModalityCurriculum(warmup_steps=100, anneal_steps=300, final_probability=final, schedule=schedule)
    assert all(curriculum.probability(step) == 1.0 for step in range(100))
    values = [curriculum.probability(step) for step in range(100, 500)]
    assert all(later <= earlier for earlier, later in zip(values, values[1:], strict=False))
    assert values[0] == 1.0 and values[1] < 1.0
    assert curriculum.probability(400) == curriculum.probability(10**6) == final
    assert values[150] == pytest.approx(final + (1 - final) * 0.5)  # half-way through the anneal, for both schedules


def test_no_anneal_is_a_step_and_bad_settings_are_refused():
    step = ModalityCurriculum(warmup_steps=10, anneal_steps=0)
    assert [step.probability(s) for s in (9, 10, 11)] == [1.0, 0.0, 0.0]
    for bad in ({"warmup_steps": -1}, {"final_probability": 1.5}, {"schedule": "exp"}):
        with pytest.raises(ValueError):
            ModalityCurriculum(**bad)


def test_keyframe_frequency_at_a_step_matches_the_probability():
    curriculum = ModalityCurriculum(warmup_steps=5000, anneal_steps=11000, schedule="cosine", seed=3)
    step = 9000
    probability = curriculum.probability(step)
    draws = 20000
    frequency = sum(curriculum.use_keyframe(step, f"local/{index:06d}_1.mp4") for index in range(draws)) / draws
    assert 0.2 < probability < 0.8
    assert abs(frequency - probability) < 4 * (probability * (1 - probability) / draws) ** 0.5
    assert all(curriculum.use_keyframe(10, f"k{index}") for index in range(1000))  # warm-up: always
    assert not any(curriculum.use_keyframe(16000, f"k{index}") for index in range(1000))  # the end: never


RANK = """
import json, random, sys
import torch
random.seed(int(sys.argv[1])); torch.manual_seed(int(sys.argv[1]))
from ditto_hf.training import ModalityCurriculum
curriculum = ModalityCurriculum(warmup_steps=50, anneal_steps=100, seed=int(sys.argv[2]))
print(json.dumps([curriculum.use_keyframe(step, f"sample-{key}") for step in range(40, 160, 7) for key in range(25)]))
"""


def test_two_ranks_with_the_same_seed_agree():
    """Each "rank" is its own process with its own global random state and hash seed."""

    def rank(global_seed: int, curriculum_seed: int, hash_seed: str) -> list[bool]:
        env = {"PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(RANK), str(global_seed), str(curriculum_seed)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **env},
        )
        return json.loads(result.stdout)

    first, second = rank(0, 7, "1"), rank(123, 7, "2")
    assert first == second
    assert True in first and False in first
    assert rank(0, 8, "1") != first  # another seed, other draws


def test_transform_on_a_real_row_gives_the_keyframe_in_warmup_and_not_at_the_end(release):
    row = next(iter(stream(release, "local")))
    curriculum = ModalityCurriculum(warmup_steps=10, anneal_steps=10)
    transform = VaceTrainingTransform(curriculum, num_frames=9, size=(32, 48))
    early, late = transform(row, 3), transform(row, 25)
    assert early["prompt"] == late["prompt"] == row["instruction"]
    assert early["sample_key"] == row["edited_path"]
    assert early["video"].shape == early["vace_video"].shape == (9, 3, 48, 32) and early["video"].dtype == torch.uint8
    expected_edit = diffsynth_crop_resize(read_frames(release.files[row["edited_path"]], num_frames=9, layout="TCHW"), (32, 48))
    expected_source = diffsynth_crop_resize(read_frames(release.files[row["source_path"]], num_frames=9, layout="TCHW"), (32, 48))
    assert torch.equal(early["video"], expected_edit) and torch.equal(early["vace_video"], expected_source)
    assert early["use_keyframe"] and early["keyframe_from"] == "first_frame"
    assert torch.equal(early["vace_reference_image"], expected_edit[0])
    assert not late["use_keyframe"] and "vace_reference_image" not in late
    padded = VaceTrainingTransform(curriculum, num_frames=9, size=(32, 48), pad_absent=True)(row, 25)
    assert torch.equal(padded["vace_reference_image"], torch.zeros(3, 48, 32, dtype=torch.uint8))


def test_transform_uses_the_rows_edited_keyframe(release, tmp_path):
    row = dict(next(iter(stream(release, "local"))))
    keyframe = torch.randint(0, 256, (3, 60, 40), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    path = tmp_path / "keyframe.png"
    Image.fromarray(keyframe.permute(1, 2, 0).numpy()).save(path)
    transform = VaceTrainingTransform(ModalityCurriculum(warmup_steps=10), num_frames=5, size=(32, 48))
    for value in (str(path), {"bytes": path.read_bytes(), "path": None}, Image.open(path)):
        out = transform({**row, "edited_keyframe": value}, 0)
        assert out["keyframe_from"] == "row"
        assert torch.equal(out["vace_reference_image"], diffsynth_crop_resize(keyframe[None], (32, 48))[0])


def test_map_function_follows_the_step_of_each_row(release):
    curriculum = ModalityCurriculum(warmup_steps=1, anneal_steps=2, seed=5)
    transform = VaceTrainingTransform(curriculum, num_frames=5, size=(32, 32))
    rows = list(stream(release, "all").map(transform.map_function(rows_per_step=1), with_indices=True))
    assert len(rows) == len(release.rows["all"])
    expected = [curriculum.use_keyframe(index, row["edited_path"]) for index, row in enumerate(rows)]
    assert [row["use_keyframe"] for row in rows] == expected and True in expected and False in expected
    assert all(("vace_reference_image" in row) == row["use_keyframe"] for row in rows)
