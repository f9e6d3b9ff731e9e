"""dedup: DINOv2 embeddings of sampled frames, in-order duplicate rejection, the blockwise bank on
disk, resume, and banks of earlier runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import StageContext
from ditto_hf.generate.helpers.embedding_bank import EmbeddingBank, block_metadata
from ditto_hf.generate.stages.dedup import DedupStage
from ditto_hf.tiny.vision import save_tiny_dinov2


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory):
    return save_tiny_dinov2(tmp_path_factory.mktemp("checkpoints") / "dinov2")


def make_stage(work_dir, model_dir, **overrides) -> DedupStage:
    # mean pooling separates the clips well even with random weights; a copy still scores 1.0
    config = {"model": ModelSpec(str(model_dir), device="cpu", dtype="float32"), "pooling": "mean", "threshold": 0.995, **overrides}
    stage = DedupStage(config, StageContext(work_dir))
    stage.setup()
    return stage


def clip_samples(sample_clips, *extra: tuple[str, int]) -> list[Sample]:
    """One sample per bundled clip, plus (id, clip index) copies; videos are the clips themselves."""
    samples = [Sample(clip.stem, str(clip), video=str(clip)) for clip in sample_clips]
    return samples + [Sample(name, str(sample_clips[index]), video=str(sample_clips[index])) for name, index in extra]


def bank_ids(work_dir) -> list[str]:
    ids = []
    for path in sorted((work_dir / "dedup" / "bank").glob("block-*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            ids += block_metadata(handle.metadata())["ids"]
    return ids


def test_copy_is_rejected_as_duplicate_of_the_first_kept_clip(tmp_path, tiny_dinov2, sample_clips):
    stage = make_stage(tmp_path, tiny_dinov2)
    samples = clip_samples(sample_clips, ("orbit-copy", 0))
    stage.process(samples)
    assert [s.status for s in samples] == ["ok"] * 4 + ["rejected"]
    copy = samples[-1]
    assert copy.rejected_by == "dedup" and copy.extra["duplicate_of"] == "orbit"
    assert copy.reasons["dedup"].startswith("near-duplicate of orbit (cosine 1.0000")
    assert copy.scores["dedup_similarity"] == pytest.approx(1.0, abs=1e-3)
    assert all(s.scores["dedup_similarity"] < 0.995 for s in samples[1:4])
    assert "dedup_similarity" not in samples[0].scores  # first clip: nothing to compare with
    assert bank_ids(tmp_path) == ["orbit", "portrait", "static", "zoom"]


def test_order_decides_which_copy_is_kept_across_batches(tmp_path, tiny_dinov2, sample_clips):
    stage = make_stage(tmp_path, tiny_dinov2)
    first, second = Sample("zoom-a", "", video=str(sample_clips[3])), Sample("zoom-b", "", video=str(sample_clips[3]))
    stage.process([first])
    stage.process([second])
    assert first.ok and second.status == "rejected" and second.extra["duplicate_of"] == "zoom-a"


def test_embeddings_are_unit_norm_frame_averages(tmp_path, tiny_dinov2, sample_clips):
    stage = make_stage(tmp_path, tiny_dinov2, num_frames=3)
    frames = stage.sample_frames(Sample("orbit", "", video=str(sample_clips[0])))
    assert frames.shape == (3, 3, 192, 320)
    clip = stage.embed([frames])[0]
    per_frame = torch.cat([stage.embed([frame[None]]) for frame in frames])
    assert clip.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(clip, F.normalize(per_frame.mean(dim=0), dim=0), atol=1e-5)


def test_failing_sample_does_not_sink_the_batch_or_enter_the_bank(tmp_path, tiny_dinov2, sample_clips):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    samples = clip_samples(sample_clips[:2]) + [Sample("broken", str(broken), video=str(broken)), Sample("unstandardised", "x.mp4")]
    make_stage(tmp_path / "run", tiny_dinov2).process(samples)
    assert [s.status for s in samples] == ["ok", "ok", "failed", "failed"]
    assert samples[2].error.startswith("VideoError: ") and "broken.mp4" in samples[2].error
    assert "run the standardise stage first" in samples[3].error
    assert bank_ids(tmp_path / "run") == ["orbit", "portrait"]


def test_resumed_run_keeps_its_own_bank_and_does_not_self_reject(tmp_path, tiny_dinov2, sample_clips):
    make_stage(tmp_path, tiny_dinov2).process(clip_samples(sample_clips[:2]))
    again = clip_samples(sample_clips[:3])  # orbit, portrait re-processed after a crash, static is new
    resumed = make_stage(tmp_path, tiny_dinov2)
    assert len(resumed.bank) == 2
    resumed.process(again)
    assert [s.status for s in again] == ["ok", "ok", "ok"]
    assert bank_ids(tmp_path) == ["orbit", "portrait", "static"]


def test_later_run_loads_earlier_banks(tmp_path, tiny_dinov2, sample_clips):
    make_stage(tmp_path / "run1", tiny_dinov2).process(clip_samples(sample_clips[:2]))
    later = make_stage(tmp_path / "run2", tiny_dinov2, previous_banks=[str(tmp_path / "run1")])
    samples = [Sample("portrait-again", "", video=str(sample_clips[1])), Sample("zoom", "", video=str(sample_clips[3]))]
    later.process(samples)
    assert samples[0].status == "rejected" and samples[1].ok
    assert samples[0].reasons["dedup"].startswith("near-duplicate of portrait in ")
    assert str(tmp_path / "run1" / "dedup" / "bank") in samples[0].reasons["dedup"]
    assert bank_ids(tmp_path / "run2") == ["zoom"]  # earlier banks are read, never written
    assert bank_ids(tmp_path / "run1") == ["orbit", "portrait"]


def test_missing_previous_bank_is_a_user_error(tmp_path, tiny_dinov2):
    with pytest.raises(DittoError, match="holds no embedding bank"):
        make_stage(tmp_path, tiny_dinov2, previous_banks=[str(tmp_path / "nowhere")])


@pytest.mark.parametrize("max_resident_gb", [4.0, 0.0])
def test_bank_search_is_blockwise_and_matches_brute_force(tmp_path, max_resident_gb):
    generator = torch.Generator().manual_seed(0)
    stored = F.normalize(torch.randn(11, 8, generator=generator), dim=-1)
    queries = F.normalize(torch.randn(6, 8, generator=generator), dim=-1)
    ids = [f"clip-{i}" for i in range(11)]
    bank = EmbeddingBank(tmp_path / "bank", block_size=3, dtype=torch.float32)
    bank.add(ids[:5], stored[:5])
    bank.add(ids[5:], stored[5:])
    bank.flush()
    assert sorted(p.name for p in (tmp_path / "bank").glob("block-*")) == [f"block-0000{i}.safetensors" for i in range(4)]
    reopened = EmbeddingBank(tmp_path / "bank", block_size=3, dtype=torch.float32, max_resident_gb=max_resident_gb)
    assert len(reopened) == 11 and "clip-10" in reopened
    expected_similarity, expected_row = (queries @ stored.T).max(dim=1)
    for search in (bank, reopened):
        matches = search.nearest(queries)
        assert [m.id for m in matches] == [ids[row] for row in expected_row.tolist()]
        assert torch.allclose(torch.tensor([m.similarity for m in matches]), expected_similarity, atol=1e-6)


def test_reopened_partial_block_keeps_growing_beside_an_attached_bank(tmp_path):
    rows = torch.eye(7)  # orthogonal: each row's nearest entry is itself
    earlier = EmbeddingBank(tmp_path / "earlier", block_size=1)
    earlier.add(["old-1", "old-2"], rows[5:])
    bank = EmbeddingBank(tmp_path / "own", block_size=4)
    bank.add(["a", "b"], rows[:2])
    bank.flush()
    reopened = EmbeddingBank(tmp_path / "own", block_size=4)
    assert reopened.attach(tmp_path / "earlier") == 2
    reopened.add(["c", "d", "e"], rows[2:5])
    reopened.flush()
    assert sorted(p.name for p in (tmp_path / "own").iterdir()) == ["block-00000.safetensors", "block-00001.safetensors"]
    with safe_open(str(tmp_path / "own" / "block-00000.safetensors"), framework="pt") as handle:
        assert block_metadata(handle.metadata())["ids"] == ["a", "b", "c", "d"]
        assert handle.get_tensor("embeddings").dtype == torch.float16
    matches = reopened.nearest(rows[[4, 0, 6]])
    assert [(m.id, m.bank) for m in matches] == [
        ("e", str(tmp_path / "own")),
        ("a", str(tmp_path / "own")),
        ("old-2", str(tmp_path / "earlier")),
    ]
    assert "old-2" not in reopened and "e" in reopened
