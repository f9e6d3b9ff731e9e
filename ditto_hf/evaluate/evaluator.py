"""Score the edits of one or more systems: :func:`evaluate`.

Edits are read a few at a time (``batch_size``), so a streamed dataset is never held in memory:
each edit is checked (its problem, an instruction, readable videos, the source's frame count, a
source for the judge), its frames decoded, then the step's edits are scored by CLIP together and
rated by the judge. A bad edit raises a :class:`~ditto_hf.errors.DittoError` naming it, or with
``skip_bad`` is logged, counted and listed in the report.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ditto_hf.errors import DittoError, VideoError
from ditto_hf.evaluate.clip_scores import DEFAULT_CLIP, ClipScorer
from ditto_hf.evaluate.judge import Judge, JudgeConfig
from ditto_hf.evaluate.report import EditResult, EvalReport, SkippedEdit, SystemResult
from ditto_hf.evaluate.sources import Edit, EditedSource, FolderSource, open_edited
from ditto_hf.generate.contract.models import ModelRegistry, ModelSpec
from ditto_hf.generate.helpers.vlm import Request
from ditto_hf.generate.run.rundir import package_versions
from ditto_hf.video import probe

logger = logging.getLogger(__name__)


class BadEdit(DittoError):
    """An edit that cannot be scored; the message says why."""


@dataclass
class EvalSettings:
    """How edits are scored."""

    clip: ModelSpec = field(default_factory=lambda: ModelSpec(DEFAULT_CLIP, dtype="float32"))
    """CLIP checkpoint (Hub id or local folder) for CLIP-T / CLIP-F; float32 unless told otherwise."""
    num_frames: int | None = None
    """Frames scored per video, spread evenly from the first to the last; ``None``: every frame."""
    judge: JudgeConfig | None = field(default_factory=JudgeConfig)
    """The VLM judge; ``None`` skips the VLM score."""
    batch_size: int = 4
    """Edits decoded and scored per step (memory); it never changes a score."""
    skip_bad: bool = False
    """Log, count and list bad edits instead of stopping at the first."""
    limit: int | None = None
    """Score at most this many edits per system."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or (self.limit is not None and self.limit < 1):
            raise DittoError("batch_size and limit must be at least 1")


def evaluate(
    edited: Sequence[str | os.PathLike | EditedSource],
    settings: EvalSettings | None = None,
    *,
    instructions: str | os.PathLike | None = None,
    source: str | os.PathLike | None = None,
    console: Console | None = None,
) -> EvalReport:
    """Score each EDITED (a folder of videos, a run directory, a datasets source) and return the report.

    ``instructions`` / ``source`` apply to folders of videos (see :mod:`ditto_hf.evaluate.sources`).
    With a ``console``, a progress bar per system is shown on it.
    """
    settings = settings or EvalSettings()
    systems = [item if isinstance(item, EditedSource) else open_edited(item, instructions=instructions, sources=source) for item in edited]
    if not systems:
        raise DittoError("nothing to evaluate: give at least one EDITED")
    if (instructions is not None or source is not None) and not any(isinstance(system, FolderSource) for system in systems):
        raise DittoError("--instructions and --source apply to a folder of videos; run directories and datasets carry their own")
    _name_uniquely(systems)
    registry = ModelRegistry()
    scorer = _load_model("--clip", settings.clip.id, lambda: ClipScorer.load(settings.clip, registry, num_frames=settings.num_frames))
    judge = (
        _load_model("--vlm", settings.judge.model.id, lambda: Judge.load(settings.judge, registry)) if settings.judge is not None else None
    )
    recorded = {
        "clip": scorer.settings(),
        "judge": judge.settings() if judge else None,
        "skip_bad": settings.skip_bad,
        "limit": settings.limit,
        "versions": package_versions(),
    }
    results = []
    with _progress(console) as progress:
        for system in systems:
            task = progress.add_task(system.name, total=min(filter(None, (system.count(), settings.limit)), default=None))
            results.append(score_system(system, scorer, judge, settings, advance=lambda count, task=task: progress.advance(task, count)))
    return EvalReport(recorded, results)


def score_system(system: EditedSource, scorer: ClipScorer, judge: Judge | None, settings: EvalSettings, advance=None) -> SystemResult:
    """Score the edits of one system, ``settings.batch_size`` at a time."""
    result = SystemResult(system.name, system.location, system.kind)
    for step in _steps(islice(system.edits(), settings.limit), settings.batch_size):
        ready = []
        for edit in step:
            try:
                check(edit, needs_source=judge is not None)
                frames = scorer.read(edit.edited)
                request = judge.request(edit.source, edit.edited, edit.instruction) if judge is not None else None
            except (BadEdit, VideoError) as exc:
                _skip(result, edit, exc, settings.skip_bad)
                continue
            ready.append((edit, frames, request))
        if ready:
            result.edits += _score(ready, scorer, judge)
        if advance is not None:
            advance(len(step))
    if not result.edits:
        raise DittoError(
            f"{system.location}: no edit could be scored" + (f" ({len(result.skipped)} skipped as bad input)" if result.skipped else "")
        )
    return result


def _score(ready: list[tuple[Edit, torch.Tensor, Request | None]], scorer: ClipScorer, judge: Judge | None) -> list[EditResult]:
    """CLIP scores (together) and judgements (``judge.config.batch_size`` per call) of a step's checked edits."""
    clip_scores = scorer.score([(frames, edit.instruction) for edit, frames, _ in ready])
    judgements = judge.rate([request for _, _, request in ready]) if judge is not None else [None] * len(ready)
    return [
        EditResult(edit.edit_id, edit.instruction, edit.category, clip, judgement)
        for (edit, _, _), clip, judgement in zip(ready, clip_scores, judgements, strict=True)
    ]


def check(edit: Edit, *, needs_source: bool) -> None:
    """Raise :class:`BadEdit` / :class:`VideoError` if ``edit`` cannot be scored."""
    if edit.problem:
        raise BadEdit(edit.problem)
    if not edit.instruction:
        raise BadEdit("no instruction")
    edited = probe(edit.edited)
    if edit.source is not None:
        source = probe(edit.source)
        if source.num_frames != edited.num_frames:
            raise BadEdit(
                f"the edit has {edited.num_frames} frames, its source {source.num_frames}: "
                "give the source clip the edit was made from (same frames)"
            )
    elif needs_source:
        raise BadEdit('no source video for the judge: give --source or "source" in the instruction file, or --vlm none')


def _load_model(option: str, model_id: str, load):
    """``load()``; a checkpoint that cannot be found or read is a one-line error naming the option."""
    try:
        return load()
    except (OSError, ValueError) as exc:
        lines = str(exc).strip().splitlines()
        raise DittoError(
            f"{option} {model_id}: cannot load it ({lines[0] if lines else type(exc).__name__}); "
            "give a Hub id that is downloaded or reachable, or a folder with its config, processor and safetensors weights"
        ) from exc


def _skip(result: SystemResult, edit: Edit, exc: Exception, skip_bad: bool) -> None:
    message = f"{edit.where}: {exc}"
    if not skip_bad:
        raise DittoError(f"{message} (fix it, or pass --skip-bad to skip and count such edits)") from exc
    logger.warning("skipped %s", message)
    result.skipped.append(SkippedEdit(edit.edit_id, edit.where, str(exc)))


def _name_uniquely(systems: list[EditedSource]) -> None:
    """Rows are named by folder name; where two share one, they are named by the argument as given."""
    names = [system.name for system in systems]
    for system in systems:
        if names.count(system.name) > 1:
            system.name = system.location
    if len({system.name for system in systems}) < len(systems):
        raise DittoError(f"EDITED lists the same system twice: {[system.location for system in systems]}")


def _progress(console: Console | None) -> Progress:
    columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console, transient=False, disable=console is None)


def _steps(edits: Iterator[Edit], size: int) -> Iterator[list[Edit]]:
    while step := list(islice(edits, size)):
        yield step
