"""Caption, instruct and curate stages on the sample clips with a tiny random Qwen2.5-VL.

The model is random, so its words are noise; what is checked is the wiring: the video frames and
prompt reach the processor, answers are produced under the schema and validated, edit types follow
the configured mix deterministically, curate scores and reasons land on the sample and drive
keep / reject, and a bad answer or a broken input fails only its own sample.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
import torch

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelRegistry, ModelSpec
from ditto_hf.generate.contract.sample import EDIT_TYPES, Sample
from ditto_hf.generate.contract.stage import StageContext
from ditto_hf.generate.helpers.vlm import Prompt, VLMAnswerError, check_text, parse_answer
from ditto_hf.generate.stages.caption import CaptionStage
from ditto_hf.generate.stages.curate import CRITERIA, CurateStage
from ditto_hf.generate.stages.instruct import InstructStage, draw_edit_type
from ditto_hf.tiny.qwen import save_tiny_qwen_vl

ANSWER_CHARS = 24


@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory) -> ModelSpec:
    directory = save_tiny_qwen_vl(tmp_path_factory.mktemp("models") / "qwen-vl")
    return ModelSpec(id=str(directory), device="cpu", dtype="float32")


#: One registry for the module, so the tiny model loads once.
REGISTRY = ModelRegistry()


@pytest.fixture
def context(tmp_path) -> StageContext:
    return StageContext(work_dir=tmp_path, registry=REGISTRY, seed=7)


def make_stage(cls, spec: ModelSpec, context: StageContext, **options):
    options = {"model": spec, "max_answer_chars": ANSWER_CHARS, "max_new_tokens": 160, "batch_size": 4, **options}
    stage = cls(cls.Config.from_dict(options), context)
    stage.setup()
    return stage


def clip_samples(sample_clips: list[Path], **fields) -> list[Sample]:
    return [Sample(sample_id=clip.stem, input_path=str(clip), video=str(clip), **fields) for clip in sample_clips]


def test_tiny_qwen_vl_loads_back_and_tokenizer_round_trips(tiny_vl):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_vl.id)
    model = AutoModelForImageTextToText.from_pretrained(tiny_vl.id)
    text = 'Turn the café into "winter" — ❄️ 2024'
    ids = processor.tokenizer(text)["input_ids"]
    assert processor.tokenizer.decode(ids) == text
    assert model.config.video_token_id == processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert model.config.get_text_config().vocab_size == len(processor.tokenizer)


def test_caption_sends_sampled_frames_and_stores_a_valid_caption(tiny_vl, context, sample_clips):
    stage = make_stage(CaptionStage, tiny_vl, context)
    samples = clip_samples(sample_clips)
    request = stage.request(samples[0])
    frames = request.content[0]
    assert frames.dtype == torch.uint8 and frames.shape == (4, 3, 192, 320)  # 2 s clip sampled at 2 fps
    assert "<|vision_start|><|video_pad|><|vision_end|>" in stage.vlm.chat_text(request)
    assert request.schema["properties"]["caption"]["maxLength"] == ANSWER_CHARS
    inputs = stage.vlm.encode([request])
    grid = inputs["video_grid_thw"]
    assert grid[0, 0].item() == 2  # 4 frames in temporal patches of 2
    video_token = stage.vlm.processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert (inputs["input_ids"] == video_token).sum().item() == grid.prod().item() // 4  # 2x2 spatial merge
    assert inputs["pixel_values_videos"].shape[0] == grid.prod().item()

    stage.process(samples)
    for sample in samples:
        assert sample.status == "ok", sample.error
        assert 0 < len(sample.caption) <= ANSWER_CHARS
        assert sample.timings["caption"] > 0
        assert sample.extra["caption_prompt"] == "caption_v1"


def test_instruct_follows_the_mix_deterministically(tiny_vl, context, sample_clips):
    first = clip_samples(sample_clips, caption="A red ball rolls across a table.")
    make_stage(InstructStage, tiny_vl, context).process(first)
    for sample in first:
        assert sample.status == "ok", sample.error
        assert sample.edit_type in EDIT_TYPES
        assert sample.edit_type == draw_edit_type(InstructStage.Config().edit_mix, context.seed, sample.sample_id)
        assert 0 < len(sample.instruction) <= ANSWER_CHARS and sample.extra["edit_target"]

    again = clip_samples(sample_clips, caption="A red ball rolls across a table.")
    make_stage(InstructStage, tiny_vl, context).process(again)
    assert [(s.edit_type, s.instruction) for s in again] == [(s.edit_type, s.instruction) for s in first]

    only_add = clip_samples(sample_clips, caption="A red ball rolls across a table.")
    stage = make_stage(InstructStage, tiny_vl, context, edit_mix={"local_add": 1.0, "global_style": 0.0})
    assert stage.request(only_add[0]).schema["properties"]["edit_type"] == {"type": "string", "enum": ["local_add"]}
    stage.process(only_add)
    assert {sample.edit_type for sample in only_add} == {"local_add"}


def test_edit_type_draw_matches_the_weights():
    mix = {"global_style": 0.5, "local_add": 0.3, "local_remove": 0.2, "local_replace": 0.0}
    counts = collections.Counter(draw_edit_type(mix, 0, f"clip-{index}") for index in range(4000))
    assert counts["local_replace"] == 0
    for name, weight in mix.items():
        assert abs(counts[name] / 4000 - weight) < 0.03
    assert draw_edit_type(mix, 0, "clip-1") == draw_edit_type(mix, 0, "clip-1")


def test_instruct_needs_a_caption_and_a_known_mix(tiny_vl, context, sample_clips):
    stage = make_stage(InstructStage, tiny_vl, context)
    uncaptioned, captioned = clip_samples(sample_clips[:2])
    captioned.caption = "A person walks."
    stage.process([uncaptioned, captioned])
    assert uncaptioned.status == "failed" and "no caption" in uncaptioned.error
    assert captioned.status == "ok", captioned.error
    with pytest.raises(Exception, match="unknown edit type"):
        InstructStage.Config.from_dict({"edit_mix": {"global_stlye": 1.0}})


def test_answers_are_validated_strictly():
    schema = Prompt.load("curate_v1").schema
    good = {"instruction_fidelity": 7, "source_fidelity": 8, "visual_quality": 9, "safety": 10, "reason": "ok"}
    assert parse_answer(json.dumps(good), schema) == good
    with pytest.raises(VLMAnswerError, match="schema"):
        parse_answer(json.dumps({**good, "safety": 11}), schema)
    with pytest.raises(VLMAnswerError, match="schema"):
        parse_answer(json.dumps({key: value for key, value in good.items() if key != "reason"}), schema)
    with pytest.raises(VLMAnswerError, match="not JSON"):
        parse_answer(json.dumps(good)[:30], schema)
    instruct = Prompt.load("instruct_v1").schema
    with pytest.raises(VLMAnswerError, match="schema"):
        parse_answer(json.dumps({"instruction": "x", "edit_type": "recolour", "target": "y"}), instruct)
    with pytest.raises(VLMAnswerError, match="blank"):
        check_text("   ", "instruction")
    with pytest.raises(VLMAnswerError, match="control"):
        check_text("a\x00b", "caption")


def test_prompts_are_versioned_files(tmp_path):
    packaged = Prompt.load("instruct_v1")
    assert "$caption" in packaged.template.template
    assert packaged.schema["required"] == ["instruction", "edit_type", "target"]
    assert packaged.with_text_limit(10)["properties"]["instruction"]["maxLength"] == 10
    assert packaged.schema["properties"]["instruction"]["maxLength"] == 300  # the file's limit is untouched
    custom = tmp_path / "caption_v2.txt"
    custom.write_text("Describe the video in one line.")
    with pytest.raises(DittoError, match="caption_v2.json"):
        Prompt.load(str(custom))
    custom.with_suffix(".json").write_text(json.dumps(Prompt.load("caption_v1").schema))
    assert Prompt.load(str(custom)).render() == "Describe the video in one line."


def test_an_answer_cut_by_max_new_tokens_is_a_recorded_failure(tiny_vl, context, sample_clips):
    samples = clip_samples(sample_clips[:2])
    make_stage(CaptionStage, tiny_vl, context, max_new_tokens=6).process(samples)
    for sample in samples:
        assert sample.status == "failed" and sample.rejected_by == "caption"
        assert "not JSON" in sample.error and not sample.caption


def test_curate_scores_keep_and_reject_by_threshold(tiny_vl, context, sample_clips):
    def judged(**options) -> list[Sample]:
        samples = clip_samples(sample_clips, instruction="Make it look like a watercolour painting.")
        for sample, edit in zip(samples, reversed(sample_clips), strict=False):
            sample.generated = str(edit)
        make_stage(CurateStage, tiny_vl, context, **options).process(samples)
        return samples

    stage = make_stage(CurateStage, tiny_vl, context)
    sample = clip_samples(sample_clips[:1], instruction="Add a hat.", generated=str(sample_clips[3]))[0]
    request = stage.request(sample)
    assert stage.vlm.encode([request])["video_grid_thw"].shape[0] == 2  # source and edit both reach the judge
    (raw,) = stage.vlm.answer([request])
    assert list(json.loads(raw)) == [*CRITERIA, "reason"]  # fields come in the schema's (the prompt's) order

    kept = judged(thresholds={})
    for sample in kept:
        assert sample.status == "ok", sample.error
        assert set(CRITERIA) <= set(sample.scores)
        assert all(score == int(score) and 0 <= score <= 10 for score in sample.scores.values())
        assert sample.reasons["curate"]

    bar = min(10, int(kept[0].scores["visual_quality"]) + 1)
    filtered = judged(thresholds={"visual_quality": bar})
    assert filtered[0].status == "rejected"
    for before, after in zip(kept, filtered, strict=False):
        assert after.scores == before.scores  # same inputs, greedy decoding
        expected = "rejected" if before.scores["visual_quality"] < bar else "ok"
        assert after.status == expected
        if expected == "rejected":
            assert after.rejected_by == "curate"
            assert f"visual_quality {before.scores['visual_quality']:g} < {bar}" in after.reasons["curate"]


def test_curate_failure_of_one_sample_spares_the_batch(tiny_vl, context, sample_clips):
    samples = clip_samples(sample_clips, instruction="Remove the ball.")
    for sample in samples:
        sample.generated = sample.video
    samples[1].generated = "generated/missing.mp4"
    make_stage(CurateStage, tiny_vl, context, thresholds={}).process(samples)
    assert samples[1].status == "failed" and "missing.mp4" in samples[1].error
    assert [sample.status for index, sample in enumerate(samples) if index != 1] == ["ok"] * 3
