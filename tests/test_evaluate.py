"""CLIP-T, CLIP-F and the VLM judge of ``ditto_hf.evaluate`` with tiny random CLIP and Qwen2.5-VL models.

Known answers: a video whose frames are all the same has CLIP-F exactly 100; CLIP-T and CLIP-F
equal a hand computation from the model's own embeddings (``get_image_features`` one frame at a
time, ``get_text_features``); the judge's answers are parsed strictly; scores are bit-identical
whatever the batch size, the grouping and the order of the edits.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from evaluate_fixtures import moving_bar, write_bench, write_short_judge_prompt

from ditto_hf.evaluate import EvalSettings, JudgeConfig, evaluate
from ditto_hf.evaluate.clip_scores import ClipScorer
from ditto_hf.evaluate.judge import CRITERIA, Judge
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.helpers.vlm import Prompt, VLMAnswerError, parse_answer
from ditto_hf.tiny.clip import save_tiny_clip
from ditto_hf.tiny.qwen import save_tiny_qwen_vl


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> ModelSpec:
    return ModelSpec(str(save_tiny_clip(tmp_path_factory.mktemp("models") / "clip")), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory) -> ModelSpec:
    return ModelSpec(str(save_tiny_qwen_vl(tmp_path_factory.mktemp("models") / "qwen-vl")), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def scorer(tiny_clip) -> ClipScorer:
    return ClipScorer.load(tiny_clip)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_bench(tmp_path_factory.mktemp("bench"))


def judge_config(spec: ModelSpec, folder, **options) -> JudgeConfig:
    options = {"max_frames": 4, "max_new_tokens": 160, **options}
    return JudgeConfig(model=spec, prompt=str(write_short_judge_prompt(folder)), **options)


def test_tiny_clip_loads_back_with_the_real_preprocessing(tiny_clip, scorer):
    from transformers import AutoProcessor, CLIPModel

    processor = AutoProcessor.from_pretrained(tiny_clip.id)
    model = CLIPModel.from_pretrained(tiny_clip.id, use_safetensors=True)
    tokenizer = processor.tokenizer
    ids = tokenizer("Turn the café into Winter!")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "turn the café into winter !"  # lowercased, words split as CLIP does
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id == model.config.text_config.eos_token_id
    assert model.config.vision_config.patch_size == 14 and model.config.vision_config.image_size == 224
    assert scorer.settings()["resize"] == "CLIPImageProcessor: shortest edge 224 (bicubic), centre crop 224x224"
    assert scorer.max_text_tokens == 77


def test_identical_frames_score_clip_f_exactly_100(scorer):
    still = moving_bar(1).expand(12, -1, -1, -1).permute(0, 3, 1, 2).contiguous()
    moving = moving_bar(12).permute(0, 3, 1, 2).contiguous()
    (still_scores, moving_scores) = scorer.score([(still, "Make it snow."), (moving, "Make it snow.")])
    assert still_scores.clip_f == 100.0 and still_scores.clip_f_all_pairs == 100.0
    assert moving_scores.clip_f < 100.0 and moving_scores.clip_f_all_pairs < 100.0
    assert still_scores.frames == moving_scores.frames == 12


def hand_scores(model, processor, frames: torch.Tensor, text: str) -> tuple[float, float, float]:
    """CLIP-T / CLIP-F / all pairs straight from the model's API, one frame per call, cosines in numpy."""
    with torch.no_grad():
        pixels = processor(images=list(frames), return_tensors="pt")["pixel_values"]
        images = np.stack([model.get_image_features(pixel_values=pixel[None]).pooler_output[0].numpy() for pixel in pixels])
        tokens = processor.tokenizer([text], return_tensors="pt")
        words = model.get_text_features(**tokens).pooler_output[0].numpy()
    images = images.astype(np.float64) / np.linalg.norm(images.astype(np.float64), axis=1, keepdims=True)
    words = words.astype(np.float64) / np.linalg.norm(words.astype(np.float64))

    def cos(a, b) -> float:
        return float(np.float32(np.dot(a, b)))  # accumulated in float64, rounded to float32

    def mean(values: list[float]) -> float:
        return math.fsum(values) / len(values)

    count = len(images)
    clip_t = 100 * mean([cos(image, words) for image in images])
    clip_f = 100 * mean([cos(images[i], images[i + 1]) for i in range(count - 1)])
    return clip_t, clip_f, 100 * mean([cos(images[i], images[j]) for i in range(count) for j in range(i + 1, count)])


def test_clip_t_and_clip_f_equal_a_hand_computation_from_the_model_embeddings(scorer, tiny_clip):
    from transformers import CLIPModel, CLIPProcessor

    generator = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (20, 3, 40, 72), dtype=torch.uint8, generator=generator)  # 20 frames: two vision calls
    model = CLIPModel.from_pretrained(tiny_clip.id, use_safetensors=True).eval()
    processor = CLIPProcessor.from_pretrained(tiny_clip.id)
    text = "Replace the dog with a small red fox."
    (scores,) = scorer.score([(frames, text)])
    assert (scores.clip_t, scores.clip_f, scores.clip_f_all_pairs) == hand_scores(model, processor, frames, text)
    assert -100 <= scores.clip_t <= 100 and scores.clip_f < 100


def test_long_instructions_are_truncated_to_the_context_and_flagged(scorer):
    frames = moving_bar(4).permute(0, 3, 1, 2).contiguous()
    short, long = scorer.score([(frames, "Make it snow."), (frames, "Make it snow. " + "Then more snow. " * 20)])
    assert not short.instruction_truncated and long.instruction_truncated


def test_evenly_spaced_frames_are_stated_and_used(tiny_clip, bench):
    spaced = ClipScorer.load(tiny_clip, num_frames=3)
    assert spaced.settings()["frames"] == "3 spread evenly, first to last"
    assert len(spaced.read(bench.edits / "bar0.mp4")) == 3
    with pytest.raises(Exception, match="at least 2"):
        ClipScorer.load(tiny_clip, num_frames=1)


def systems(report) -> list[dict]:
    return report.to_dict()["systems"]


def test_scores_are_bit_identical_whatever_the_batch_size_grouping_and_order(tiny_clip, bench, tmp_path):
    def run(instructions, batch_size: int) -> dict:
        settings = EvalSettings(clip=tiny_clip, judge=None, batch_size=batch_size)
        return systems(evaluate([bench.edits], settings, instructions=instructions, source=bench.sources))[0]

    one_by_one, together = run(bench.instructions, 1), run(bench.instructions, 3)
    assert json.dumps(one_by_one) == json.dumps(together)
    reversed_file = tmp_path / "reversed.jsonl"
    reversed_file.write_text("".join(reversed(bench.instructions.read_text().splitlines(keepends=True))))
    backwards = run(reversed_file, 2)
    assert backwards["scores"] == together["scores"]  # exact sums: the order of the edits changes nothing
    assert sorted(backwards["edits"], key=lambda edit: edit["id"]) == sorted(together["edits"], key=lambda edit: edit["id"])
    by_id = {edit["id"]: edit for edit in together["edits"]}
    assert by_id["still.mp4"]["clip_f"] == 100.0 and by_id["bar0.mp4"]["clip_f"] < 100.0
    assert together["scores"]["clip_t"] == math.fsum(edit["clip_t"] for edit in together["edits"]) / 4  # mean over edits
    assert set(together["categories"]) == {"local_replace", "global_style", "global_freeform"}
    assert together["categories"]["global_style"]["edits"] == 2


def test_judge_answers_are_parsed_strictly():
    schema = Prompt.load("judge_v1", package="ditto_hf.evaluate").schema
    good = {"instruction_fidelity": 7, "source_fidelity": 8, "visual_quality": 6, "overall": 7, "reason": "The fox replaces the dog."}
    assert parse_answer(json.dumps(good), schema) == good
    malformed = {
        "out of range": {**good, "overall": 11},
        "negative": {**good, "visual_quality": -1},
        "not an integer": {**good, "overall": 7.5},
        "a string score": {**good, "overall": "7"},
        "missing overall": {key: value for key, value in good.items() if key != "overall"},
        "an extra field": {**good, "safety": 10},
        "an empty reason": {**good, "reason": ""},
    }
    for case, answer in malformed.items():
        with pytest.raises(VLMAnswerError, match="schema"):
            parse_answer(json.dumps(answer), schema)
        assert Judge._judgement(_parsed_or_error(json.dumps(answer), schema)).error, case
    for text in ('{"instruction_fidelity": 7, "source_fi', "7/10", ""):
        with pytest.raises(VLMAnswerError, match="not JSON"):
            parse_answer(text, schema)
    blank_reason = Judge._judgement({**good, "reason": "   "})
    assert not blank_reason.scores and "blank" in blank_reason.error
    assert Judge._judgement(good).scores == {criterion: float(good[criterion]) for criterion in CRITERIA}


def _parsed_or_error(text: str, schema: dict):
    try:
        return parse_answer(text, schema)
    except VLMAnswerError as exc:
        return exc


def test_judge_prompt_must_ask_for_every_criterion(tmp_path, tiny_vl):
    prompt = write_short_judge_prompt(tmp_path)
    schema = json.loads(prompt.with_suffix(".json").read_text())
    schema["required"].remove("overall")
    prompt.with_suffix(".json").write_text(json.dumps(schema))
    with pytest.raises(Exception, match=r"must require \['overall'\]"):
        Judge(None, JudgeConfig(model=tiny_vl, prompt=str(prompt)))


def test_tiny_judge_rates_every_edit_and_batching_changes_no_score(tiny_clip, tiny_vl, bench, tmp_path):
    def run(vlm_batch_size: int) -> dict:
        settings = EvalSettings(clip=tiny_clip, judge=judge_config(tiny_vl, tmp_path, batch_size=vlm_batch_size))
        return evaluate([bench.edits], settings, instructions=bench.instructions, source=bench.sources)

    report = run(1)
    assert report.settings["judge"]["prompt"].endswith("judge_short.txt") and report.settings["judge"]["batch_size"] == 1
    system = systems(report)[0]
    for edit in system["edits"]:
        judged = edit["judge"]
        assert "error" not in judged, judged
        assert set(judged) == {*CRITERIA, "reason"} and 0 < len(judged["reason"]) <= 24
        assert all(judged[criterion] == int(judged[criterion]) and 0 <= judged[criterion] <= 10 for criterion in CRITERIA)
        assert edit["vlm"] == judged["overall"]
    assert system["scores"]["vlm"] == math.fsum(edit["vlm"] for edit in system["edits"]) / 4
    assert system["scores"]["vlm_unusable"] == 0
    assert systems(run(3))[0]["edits"] == system["edits"]


def test_the_judge_sees_the_source_then_the_edit(tiny_vl, bench, tmp_path):
    judge = Judge.load(judge_config(tiny_vl, tmp_path))
    request = judge.request(bench.sources / "bar0.mp4", bench.edits / "bar0.mp4", "Make it snow.")
    assert [part for part in request.content if isinstance(part, str)][:2] == ["Source video:", "Edited video:"]
    assert "Make it snow." in request.content[-1]
    assert judge.vlm.encode([request])["video_grid_thw"].shape[0] == 2


def test_unusable_judge_answers_are_counted_and_left_out_of_the_vlm_mean(tiny_clip, tiny_vl, bench, tmp_path):
    settings = EvalSettings(clip=tiny_clip, judge=judge_config(tiny_vl, tmp_path, max_new_tokens=6))  # every answer cut short
    report = evaluate([bench.edits], settings, instructions=bench.instructions, source=bench.sources)
    (system,) = systems(report)
    assert system["scores"]["vlm_unusable"] == 4 and system["scores"]["vlm"] is None
    assert system["scores"]["clip_t"] is not None  # CLIP scores are kept
    assert all("not JSON" in edit["judge"]["error"] and edit["vlm"] is None for edit in system["edits"])
    assert "edits: 4 judge answer(s) unusable, left out of its VLM means (reasons in --json)." in report.notes()
