"""CLIP-T and CLIP-F, the convention of the LOVEU-TGVE evaluation scripts and the paper's Table 1.

For an edited video with frames ``f_1 … f_T`` and its instruction ``t`` (CLIP image / text
embeddings, L2-normalised):

- CLIP-T = 100 × mean_i cos(f_i, t)
- CLIP-F = 100 × mean_i cos(f_i, f_{i+1}) (consecutive frames; the paper's "average inter-frame
  CLIP similarity")
- CLIP-F all pairs = 100 × mean_{i<j} cos(f_i, f_j) (reported beside it, labelled)

Every frame of the video is scored, or ``num_frames`` spread evenly from the first to the last;
the processor resizes them (for ``openai/clip-vit-large-patch14``: shortest edge 224, bicubic,
centre crop 224×224). Identical frames are embedded once, so a still video scores CLIP-F exactly 100.

Reproducible bits: the vision tower always runs on exactly ``frames_per_call`` frames (the last
call padded with copies), and the projection head on one frame at a time, so a frame's embedding
never depends on which other frames or videos share its call; each instruction is embedded alone
(no padding). Cosines are accumulated in float64 and rounded to float32, means are exact sums
(``math.fsum``), so order, grouping and batch size do not change a score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ditto_hf.errors import DittoError, VideoError
from ditto_hf.generate.contract.models import ModelRegistry, ModelSpec
from ditto_hf.generate.helpers.embedding_bank import cosine
from ditto_hf.video import VideoSource, describe, read_evenly_spaced, read_frames

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
#: Frames per call of the vision tower: fixed, because a model call's shape is part of its arithmetic.
FRAMES_PER_CALL = 16
#: Instruction embeddings kept for reuse (benchmarks give each video several instructions, and reuse them).
TEXT_CACHE_SIZE = 4096


@dataclass(frozen=True)
class ClipScores:
    """CLIP scores of one edited video (0-100)."""

    clip_t: float
    clip_f: float
    clip_f_all_pairs: float
    frames: int
    instruction_truncated: bool = False


@dataclass
class EmbeddedVideo:
    """One video's frames as the model sees them: its distinct frames, and which one each frame is."""

    pixel_values: torch.Tensor  # (U, C, H, W), the distinct frames after preprocessing
    frame_index: torch.Tensor  # (T,) long: frame t of the video is distinct frame frame_index[t]
    embeddings: torch.Tensor | None = None  # (U, D) float32, filled by ClipScorer.embed


def describe_preprocessing(image_processor) -> str:
    """How a transformers image processor resizes a frame, e.g. ``shortest edge 224 (bicubic), centre crop 224x224``."""
    from PIL import Image

    def field(value, key):
        return value.get(key) if isinstance(value, dict) else getattr(value, key, None)

    size, crop = image_processor.size, getattr(image_processor, "crop_size", None)
    if field(size, "shortest_edge"):
        text = f"shortest edge {field(size, 'shortest_edge')}"
    else:
        text = f"{field(size, 'width')}x{field(size, 'height')}"
    resample = getattr(image_processor, "resample", None)
    if resample is not None:
        text += f" ({Image.Resampling(int(resample)).name.lower()})"
    if getattr(image_processor, "do_center_crop", False) and crop is not None:
        text += f", centre crop {field(crop, 'width')}x{field(crop, 'height')}"
    return f"{type(image_processor).__name__}: {text}"


def mean(values: torch.Tensor) -> float:
    """The exact mean of float32 values (correctly rounded sum), whatever their order."""
    return math.fsum(values.tolist()) / values.numel()


def frame_scores(embedded: EmbeddedVideo, text_embedding: torch.Tensor) -> tuple[float, float, float]:
    """(CLIP-T, CLIP-F consecutive, CLIP-F all pairs) of one video from its embeddings."""
    frames = F.normalize(embedded.embeddings.double(), dim=-1)
    text = F.normalize(text_embedding.double().reshape(1, -1), dim=-1)
    to_text = cosine(frames, text)[:, 0]  # (U,) float32
    between = cosine(frames, frames).clamp(max=1.0)  # (U, U) float32; a frame with itself is exactly 1
    index = embedded.frame_index
    first, second = torch.triu_indices(len(index), len(index), offset=1)
    return (
        100 * mean(to_text[index]),
        100 * mean(between[index[:-1], index[1:]]),
        100 * mean(between[index[first], index[second]]),
    )


class ClipScorer:
    """A CLIP model + processor that scores edited videos against their instructions."""

    def __init__(self, model, processor, *, num_frames: int | None = None, frames_per_call: int = FRAMES_PER_CALL, name: str = ""):
        if num_frames is not None and num_frames < 2:
            raise DittoError(f"CLIP-F compares frames: num_frames must be at least 2, got {num_frames}")
        self.model, self.processor = model, processor
        self.num_frames, self.frames_per_call, self.name = num_frames, frames_per_call, name
        self.max_text_tokens = model.config.text_config.max_position_embeddings
        self._texts: dict[str, tuple[torch.Tensor, bool]] = {}

    @classmethod
    def load(cls, spec: ModelSpec | str, registry: ModelRegistry | None = None, **options) -> ClipScorer:
        """Load ``CLIPModel`` + ``CLIPProcessor`` (safetensors only) from a Hub id or a local folder."""
        from transformers import CLIPModel, CLIPProcessor

        registry = registry or ModelRegistry()
        spec = ModelSpec.coerce(spec)
        return cls(registry.load(CLIPModel, spec), registry.load(CLIPProcessor, spec), name=spec.id, **options)

    # -- what is scored ----------------------------------------------------------------------------
    def settings(self) -> dict:
        """The model, frame sampling and resize, as stated in the output."""
        return {
            "model": self.name,
            "frames": "every frame" if self.num_frames is None else f"{self.num_frames} spread evenly, first to last",
            "resize": describe_preprocessing(self.processor.image_processor),
            "frames_per_call": self.frames_per_call,
            "max_text_tokens": self.max_text_tokens,
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "device": str(self.model.device),
        }

    def read(self, video: VideoSource) -> torch.Tensor:
        """The frames of ``video`` that are scored (``TCHW`` uint8, at least 2)."""
        if self.num_frames is None:
            return read_frames(video, layout="TCHW", min_frames=2)
        frames = read_evenly_spaced(video, self.num_frames, layout="TCHW")
        if len(frames) < 2:
            raise VideoError(f"{describe(video)}: 1 frame; CLIP-F compares frames and needs at least 2")
        return frames

    def prepare(self, frames: torch.Tensor) -> EmbeddedVideo:
        """Preprocess each distinct frame of a ``TCHW`` uint8 video once."""
        seen: dict[int, list[int]] = {}  # hash of the frame bytes -> positions in `keep`
        keep: list[int] = []  # the first frame of each distinct frame
        index = []
        for position, frame in enumerate(frames):
            candidates = seen.setdefault(hash(frame.contiguous().numpy().tobytes()), [])
            match = next((known for known in candidates if torch.equal(frames[keep[known]], frame)), None)
            if match is None:
                match = len(keep)
                candidates.append(match)
                keep.append(position)
            index.append(match)
        pixels = self.processor.image_processor(images=list(frames[keep]), return_tensors="pt")["pixel_values"]
        return EmbeddedVideo(pixels, torch.tensor(index, dtype=torch.long))

    # -- model calls -------------------------------------------------------------------------------
    @torch.inference_mode()
    def embed(self, videos: list[EmbeddedVideo]) -> None:
        """Fill ``embeddings`` of ``videos``: their distinct frames in fixed-size calls of the vision tower."""
        pixels = torch.cat([video.pixel_values for video in videos])
        rows = []
        for start in range(0, len(pixels), self.frames_per_call):
            chunk = pixels[start : start + self.frames_per_call]
            real = len(chunk)
            padded = torch.cat([chunk, chunk[-1:].expand(self.frames_per_call - real, *chunk.shape[1:])])
            inputs = padded.to(self.model.device, self.model.dtype)
            pooled = self.model.vision_model(pixel_values=inputs).pooler_output[:real]
            rows += [self.model.visual_projection(row[None]) for row in pooled]
        embeddings = torch.cat(rows).float().cpu()
        for video, part in zip(videos, torch.split(embeddings, [len(video.pixel_values) for video in videos]), strict=True):
            video.embeddings = part

    @torch.inference_mode()
    def text_embedding(self, text: str) -> tuple[torch.Tensor, bool]:
        """The embedding of ``text`` (alone, truncated to the model's context) and whether it was truncated."""
        if text not in self._texts:
            tokenizer = self.processor.tokenizer
            truncated = len(tokenizer(text)["input_ids"]) > self.max_text_tokens
            inputs = tokenizer([text], truncation=True, max_length=self.max_text_tokens, return_tensors="pt").to(self.model.device)
            pooled = self.model.text_model(**inputs).pooler_output
            if len(self._texts) >= TEXT_CACHE_SIZE:  # a long stream of distinct instructions: forget the oldest
                self._texts.pop(next(iter(self._texts)))
            self._texts[text] = (self.model.text_projection(pooled)[0].float().cpu(), truncated)
        return self._texts[text]

    def score(self, videos: list[tuple[torch.Tensor, str]]) -> list[ClipScores]:
        """CLIP scores of each ``(frames, instruction)``; frames ``TCHW`` uint8 (at least 2)."""
        if not videos:
            return []
        prepared = [self.prepare(frames) for frames, _ in videos]
        self.embed(prepared)
        results = []
        for embedded, (frames, instruction) in zip(prepared, videos, strict=True):
            text, truncated = self.text_embedding(instruction)
            clip_t, clip_f, all_pairs = frame_scores(embedded, text)
            results.append(ClipScores(clip_t, clip_f, all_pairs, len(frames), truncated))
        return results
