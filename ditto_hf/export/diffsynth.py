"""``ditto-hf export diffsynth``: a folder DiffSynth-Studio's VACE training reads as it is.

Layout of ``DIR``::

    metadata.jsonl          one JSON object per triplet (recommended: read exactly as written)
    metadata.csv            the same rows; pandas misreads some prompts (counted, see below)
    videos/<name>.mp4       every source and edited video, once each, at the asked frame count and size
    keyframes/<name>.png    with ``keyframes``: the edited keyframe of each triplet
    export.json             the settings and progress of the export (the resume record)

Rows carry ``video`` (the edited video), ``vace_video`` (its source), ``prompt`` (the
instruction), ``vace_reference_image`` (with ``keyframes``) and ``sample_id``; every path is
relative to ``DIR``. Videos keep DiffSynth's first ``num_frames`` frames (fewer: the largest
``4k+1`` that fits) and are resized and centre-cropped exactly as its loader does
(:func:`ditto_hf.training.diffsynth_crop_resize`), so it reads them unchanged.

Every file appears atomically and its presence is the progress record: a rerun with the same
settings skips the videos already written and rewrites the metadata (it is renamed into place only
when complete). Memory is bounded by one triplet's frames. pandas (DiffSynth's CSV reader) turns
prompts such as ``NA``, ``null``, ``None`` or an empty one into NaN, and a column of bare numbers
into numbers: those rows are counted and the report warns; ``metadata.jsonl`` has no such problem.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ditto_hf.errors import DittoError, VideoError
from ditto_hf.export.sources import TrainingSource, Triplet
from ditto_hf.generate.run.rundir import atomic_write
from ditto_hf.training.frames import diffsynth_crop_resize, diffsynth_frames, image_pixels
from ditto_hf.video import probe, write_video

METADATA_CSV = "metadata.csv"
METADATA_JSONL = "metadata.jsonl"
STATE = "export.json"
VIDEOS = "videos"
KEYFRAMES = "keyframes"
COLUMNS = ("video", "vace_video", "prompt")
KEYFRAME_COLUMN = "vace_reference_image"
#: How often (rows) the progress record is refreshed.
STATE_EVERY = 64
#: What pandas' CSV reader turns into NaN (its default ``na_values``).
PANDAS_NA_STRINGS = frozenset(
    ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN"]
    + ["None", "n/a", "nan", "null"]
)


@dataclass(frozen=True)
class ExportSettings:
    """What decides the bytes of an export (a rerun must use the same to resume)."""

    source: str
    num_frames: int = 73
    width: int = 832
    height: int = 480
    keyframes: bool = False

    def check(self) -> None:
        if self.num_frames < 1 or self.num_frames % 4 != 1:
            raise DittoError(f"--num-frames {self.num_frames}: Wan/VACE needs 4k+1 frames (e.g. 73 or 81)")
        if self.width <= 0 or self.height <= 0 or self.width % 16 or self.height % 16:
            raise DittoError(f"--width {self.width} --height {self.height}: Wan/VACE needs sides that are multiples of 16 (e.g. 832x480)")

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    @property
    def columns(self) -> tuple[str, ...]:
        return (*COLUMNS, *((KEYFRAME_COLUMN,) if self.keyframes else ()), "sample_id")


@dataclass
class ExportReport:
    """What an export did: rows written, videos encoded or found in place, keyframe origins, warnings."""

    out: Path
    rows: int = 0
    videos_written: int = 0
    videos_present: int = 0  # a shared source written for an earlier row, or a file of an interrupted run
    keyframes_from_source: int = 0
    keyframes_from_first_frame: int = 0
    keyframes_present: int = 0
    short_videos: int = 0  # written with fewer frames than asked (the clip is shorter)
    csv_misread: int = 0  # prompts pandas reads back as NaN or as numbers from metadata.csv
    csv_misread_examples: list[str] = field(default_factory=list)  # the first few of those rows' sample ids

    def to_dict(self) -> dict:
        return {**asdict(self), "out": str(self.out)}


@dataclass
class Tally:
    """A count and its first few examples (bounded memory over any number of rows)."""

    EXAMPLES = 5
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, example: str) -> None:
        self.count += 1
        if len(self.examples) < self.EXAMPLES:
            self.examples.append(example)


def is_number(text: str) -> bool:
    """Whether pandas' CSV reader takes ``text`` for a number (Python's ``1_000`` it does not)."""
    try:
        float(text)
    except ValueError:
        return False
    return "_" not in text


def export_diffsynth(
    source: TrainingSource,
    out: str | os.PathLike,
    settings: ExportSettings,
    *,
    on_row: Callable[[ExportReport], None] | None = None,
) -> ExportReport:
    """Export every triplet of ``source`` into ``out`` (see the module docstring); resumable."""
    settings.check()
    out = Path(out)
    begin(out, settings)
    report = ExportReport(out)
    work = out / ".partial"
    work.mkdir(parents=True, exist_ok=True)
    na_like, numeric = Tally(), Tally()  # prompts pandas reads as NaN; prompts that are bare numbers
    with (
        open(work / METADATA_CSV, "w", encoding="utf-8", newline="") as csv_file,
        open(work / METADATA_JSONL, "w", encoding="utf-8") as jsonl_file,
    ):
        writer = csv.writer(csv_file, lineterminator="\n")
        writer.writerow(settings.columns)
        for triplet in source.triplets():
            row = export_triplet(triplet, out, settings, report)
            writer.writerow([row[column] for column in settings.columns])
            jsonl_file.write(json.dumps(row, ensure_ascii=True) + "\n")  # ASCII: DiffSynth opens it in the locale's encoding
            if row["prompt"] in PANDAS_NA_STRINGS:
                na_like.add(row["sample_id"])
            elif is_number(row["prompt"]):
                numeric.add(row["sample_id"])
            report.rows += 1
            if report.rows % STATE_EVERY == 0:
                write_state(out, settings, report, complete=False)
            if on_row is not None:
                on_row(report)
    if report.rows == 0:
        raise DittoError(f"SOURCE {settings.source}: no triplets to export")
    # pandas makes NA-like fields NaN always, and numbers of numbers only when the whole column is numbers
    misread = [na_like, *([numeric] if numeric.count == report.rows - na_like.count else [])]
    report.csv_misread = sum(tally.count for tally in misread)
    report.csv_misread_examples = [key for tally in misread for key in tally.examples][: Tally.EXAMPLES]
    for name in (METADATA_CSV, METADATA_JSONL):
        os.replace(work / name, out / name)
    work.rmdir()
    write_state(out, settings, report, complete=True)
    return report


def begin(out: Path, settings: ExportSettings) -> None:
    """Record the settings, or check they match those of the export already in ``out``."""
    state = out / STATE
    if state.is_file():
        recorded = json.loads(state.read_text(encoding="utf-8")).get("settings")
        if recorded != asdict(settings):
            raise DittoError(
                f"{out} holds an export made with other settings ({recorded}); rerun with those to resume, or choose a new --out"
            )
        for folder in (out / VIDEOS, out / KEYFRAMES):  # temporary files of an interrupted run (one export per folder at a time)
            for stale in folder.rglob(".*") if folder.is_dir() else ():
                stale.unlink()
    elif out.is_dir() and any(out.iterdir()):
        raise DittoError(f"--out {out}: the folder is not empty and holds no export; choose an empty or new folder")
    write_state(out, settings, ExportReport(out), complete=False)


def write_state(out: Path, settings: ExportSettings, report: ExportReport, *, complete: bool) -> None:
    progress = {key: value for key, value in report.to_dict().items() if key != "out"}
    atomic_write(out / STATE, json.dumps({"settings": asdict(settings), "complete": complete, "progress": progress}, indent=2))


def export_triplet(triplet: Triplet, out: Path, settings: ExportSettings, report: ExportReport) -> dict:
    """Write the videos (and keyframe) of one triplet that are not there yet; its metadata row."""
    if not isinstance(triplet.instruction, str):
        raise DittoError(f"{triplet.where}: the instruction is not a string ({type(triplet.instruction).__name__})")
    video, vace_video = f"{VIDEOS}/{triplet.edited_name}", f"{VIDEOS}/{triplet.source_name}"
    edited_frames = write_clip(triplet.edited, out / video, settings, report, triplet.where)
    write_clip(triplet.source, out / vace_video, settings, report, triplet.where)
    row = {"video": video, "vace_video": vace_video, "prompt": triplet.instruction}
    if settings.keyframes:
        row[KEYFRAME_COLUMN] = write_keyframe(triplet, edited_frames, out, settings, report)
    row["sample_id"] = triplet.key
    return row


def write_clip(video, path: Path, settings: ExportSettings, report: ExportReport, where: str) -> torch.Tensor | None:
    """Encode ``video`` at the export's frame count and size into ``path`` unless it is there;
    the frames written (None when the file was already there)."""
    if path.is_file():
        report.videos_present += 1
        return None
    frames = read_clip(video, settings, where)
    report.short_videos += len(frames) < settings.num_frames
    write_video(path, frames, probe(video).fps, layout="TCHW")
    report.videos_written += 1
    return frames


def read_clip(video, settings: ExportSettings, where: str) -> torch.Tensor:
    try:
        return diffsynth_frames(video, num_frames=settings.num_frames, size=settings.size)
    except VideoError as exc:
        raise VideoError(f"{where}: {exc}") from exc


def write_keyframe(triplet: Triplet, edited_frames: torch.Tensor | None, out: Path, settings: ExportSettings, report: ExportReport) -> str:
    """The triplet's edited keyframe (or the first frame of its edited video) as a PNG at the export size."""
    relative = f"{KEYFRAMES}/{Path(triplet.edited_name).with_suffix('.png').as_posix()}"
    path = out / relative
    if path.is_file():
        report.keyframes_present += 1
        return relative
    if triplet.keyframe is not None:
        pixels = diffsynth_crop_resize(image_pixels(triplet.keyframe, f"{triplet.where}: edited keyframe")[None], settings.size)[0]
        report.keyframes_from_source += 1
    else:
        frames = edited_frames if edited_frames is not None else read_clip(triplet.edited, settings, triplet.where)
        pixels = frames[0]
        report.keyframes_from_first_frame += 1
    write_png(path, pixels)
    return relative


def write_png(path: Path, pixels: torch.Tensor) -> None:
    """Write uint8 ``(C, H, W)`` pixels as a PNG, atomically."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy()).save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())
