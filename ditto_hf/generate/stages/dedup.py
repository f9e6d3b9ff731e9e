"""Stage 2: drop near-duplicate clips by DINOv2 embedding similarity.

Each clip is embedded as the average of its sampled frames' DINOv2 features (CLS token or mean of
the patch tokens, L2-normalised). Clips are taken in order; one whose cosine similarity to an
already kept clip — of this run, or of the banks of earlier runs — exceeds ``threshold`` is
rejected with that similarity and the kept clip's id. The kept embeddings go to an
:class:`~ditto_hf.generate.embedding_bank.EmbeddingBank` in ``<run>/dedup/bank``, searched
blockwise, so the stage scales past memory and later runs can load it (``previous_banks``).
The bank is global state: one worker only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import Resources, Stage, StageConfig
from ditto_hf.generate.helpers.embedding_bank import EmbeddingBank, Match, cosine
from ditto_hf.video import read_evenly_spaced

BANK_DIR = "dedup/bank"


class DedupStage(Stage):
    """Reject clips too similar to a clip kept before (in this run or an earlier one)."""

    name = "dedup"
    resources = Resources(gpus=1, memory_gb=4, max_workers=1)

    @dataclass
    class Config(StageConfig):
        """Embedding model, frame sampling, threshold and bank settings."""

        model: ModelSpec = field(default_factory=lambda: ModelSpec("facebook/dinov2-base"))
        """DINOv2 checkpoint (``transformers.Dinov2Model`` + its image processor)."""
        threshold: float = 0.95
        """Cosine similarity above which a clip counts as a duplicate of a kept one (not published)."""
        num_frames: int = 4
        """Frames sampled evenly over the clip (first to last) and averaged into one embedding."""
        pooling: Literal["cls", "mean"] = "cls"
        """``cls``: the CLS token after the final layer norm; ``mean``: the mean of the patch tokens."""
        batch_size: int = 16
        """Clips embedded per model call."""
        previous_banks: list[str] = field(default_factory=list)
        """Banks of earlier runs to check against: a bank directory or a run directory holding one."""
        block_size: int = 8192
        """Rows per stored bank block (and per similarity matrix product)."""
        bank_dtype: Literal["float16", "float32"] = "float16"
        """Precision of the stored embeddings."""
        max_resident_gb: float = 4.0
        """Bank blocks kept in memory; larger banks are streamed from disk block by block."""

        def __post_init__(self) -> None:
            if self.num_frames < 1 or self.block_size < 1:
                raise DittoError("dedup.num_frames and dedup.block_size must be at least 1")
            if self.pooling not in ("cls", "mean"):
                raise DittoError(f"dedup.pooling must be 'cls' or 'mean', got {self.pooling!r}")

    def setup(self) -> None:
        from transformers import AutoImageProcessor, Dinov2Model

        self.model = self.context.registry.load(Dinov2Model, self.config.model)
        self.processor = self.context.registry.load(AutoImageProcessor, self.config.model)
        self.bank = EmbeddingBank(
            self.context.work_dir / BANK_DIR,
            block_size=self.config.block_size,
            dtype=getattr(torch, self.config.bank_dtype),
            max_resident_gb=self.config.max_resident_gb,
            metadata={"model": self.config.model.id, "pooling": self.config.pooling},
        )
        for location in self.config.previous_banks:
            self.bank.attach(find_bank(location))

    def teardown(self) -> None:
        if hasattr(self, "bank"):
            self.bank.flush()

    def process_batch(self, samples: list[Sample]) -> None:
        embeddings = self.embed([self.sample_frames(sample) for sample in samples])  # may raise: no state touched yet
        bank_matches = self.bank.nearest(embeddings)
        # compare with the batch's clips as the bank will store them, so batching cannot change a score
        within_batch = cosine(embeddings, embeddings.to(self.bank.dtype)).clamp(max=1.0)
        kept: list[int] = []
        for index, sample in enumerate(samples):
            if sample.sample_id in self.bank:  # kept by an interrupted earlier attempt of this run
                continue
            if self.judge(sample, self.best_match(bank_matches[index], within_batch[index], samples, kept)):
                kept.append(index)
        if kept:
            self.bank.add([samples[index].sample_id for index in kept], embeddings[kept])
        self.bank.flush()

    def judge(self, sample: Sample, match: Match) -> bool:
        """Record the closest kept clip's similarity; reject ``sample`` as its duplicate above the threshold."""
        if match.id is None:
            return True
        sample.scores["dedup_similarity"] = match.similarity
        if match.similarity <= self.config.threshold:
            return True
        origin = "" if match.bank == str(self.bank.directory) else f" in {match.bank}"
        reason = f"near-duplicate of {match.id}{origin} (cosine {match.similarity:.4f} > {self.config.threshold:g})"
        sample.reject(self.name, reason, dedup_similarity=match.similarity)
        sample.extra["duplicate_of"] = match.id
        return False

    def best_match(self, from_bank: Match, similarities: torch.Tensor, samples: list[Sample], kept: list[int]) -> Match:
        """The closest kept clip: the bank's best or an earlier clip kept in this batch."""
        best = from_bank
        for index in kept:
            value = float(similarities[index])
            if best.id is None or value > best.similarity:
                best = Match(value, samples[index].sample_id, str(self.bank.directory))
        return best

    def sample_frames(self, sample: Sample) -> torch.Tensor:
        """``num_frames`` frames ``(k, C, H, W)`` spread evenly from the first to the last frame."""
        if not sample.video:
            raise DittoError(f"{sample.sample_id}: no standardised video; run the standardise stage first")
        return read_evenly_spaced(self.context.resolve(sample.video), self.config.num_frames, layout="TCHW")

    @torch.inference_mode()
    def embed(self, clips: list[torch.Tensor]) -> torch.Tensor:
        """One L2-normalised embedding per clip ``(B, D)``: the normalised mean of its frames' features."""
        frames = [frame for clip in clips for frame in clip]  # clips may differ in size (orientation)
        inputs = self.processor(images=frames, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.model.device, self.model.dtype)
        hidden = self.model(pixel_values=pixels).last_hidden_state
        features = hidden[:, 0] if self.config.pooling == "cls" else hidden[:, 1:].mean(dim=1)
        features = F.normalize(features.float(), dim=-1)
        per_clip = torch.split(features, [clip.shape[0] for clip in clips])
        return F.normalize(torch.stack([clip.mean(dim=0) for clip in per_clip]), dim=-1)


def find_bank(location: str) -> Path:
    """The bank directory for ``location``: a bank directory itself or a run directory holding one."""
    path = Path(location).expanduser()
    for candidate in (path, path / BANK_DIR):
        if candidate.is_dir() and any(candidate.glob("block-*.safetensors")):
            return candidate
    raise DittoError(f"dedup.previous_banks: {location} holds no embedding bank (looked in it and in {BANK_DIR}/)")
