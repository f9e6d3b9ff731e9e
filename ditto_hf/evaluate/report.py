"""The results of ``ditto-hf eval``: per-edit scores, aggregates, the rich table and the JSON file.

Aggregates are means over a system's scored edits (exact sums, so the order of the edits does not
change them); the VLM mean leaves out edits whose judge answer was unusable, and says how many.
The paper's Table 1 is printed beside the results as the reference, with what makes a number
comparable to it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ditto_hf.evaluate.clip_scores import DEFAULT_CLIP, ClipScores
from ditto_hf.evaluate.judge import CRITERIA, Judgement

#: arXiv 2510.15742, Table 1 (250 cases: 50 videos x 5 instructions): (method, CLIP-T, CLIP-F, VLM score).
PAPER_TABLE_1 = (
    ("TokenFlow", 23.63, 98.43, 7.10),
    ("InsV2V", 22.49, 97.99, 6.55),
    ("InsViE", 23.56, 98.78, 7.35),
    ("Editto", 25.54, 99.03, 8.10),
)
METRICS = {
    "clip_t": "100 x mean over frames of cos(CLIP image embedding of the frame, CLIP text embedding of the instruction)",
    "clip_f": "100 x mean over consecutive frame pairs of cos(CLIP image embeddings)",
    "clip_f_all_pairs": "100 x mean over all frame pairs of cos(CLIP image embeddings)",
    "vlm": "mean of the judge's 0-10 'overall' rating",
}
UNCATEGORISED = "(no category)"


@dataclass(frozen=True)
class EditResult:
    """The scores of one edit."""

    edit_id: str
    instruction: str
    category: str
    clip: ClipScores
    judgement: Judgement | None = None

    def to_dict(self) -> dict:
        row = {"id": self.edit_id, "instruction": self.instruction, "category": self.category, **asdict(self.clip)}
        if self.judgement is not None:
            judged = self.judgement
            row["vlm"] = judged.scores.get("overall")
            row["judge"] = {**judged.scores, "reason": judged.reason} if not judged.error else {"error": judged.error}
        return row


@dataclass(frozen=True)
class SkippedEdit:
    """An edit left out as bad input (``--skip-bad``)."""

    edit_id: str
    where: str
    reason: str


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return math.fsum(values) / len(values) if values else None


def aggregate(results: list[EditResult]) -> dict:
    """Mean scores of ``results``: CLIP over all of them, the judge over its usable answers."""
    scores = {
        "edits": len(results),
        "clip_t": mean(result.clip.clip_t for result in results),
        "clip_f": mean(result.clip.clip_f for result in results),
        "clip_f_all_pairs": mean(result.clip.clip_f_all_pairs for result in results),
    }
    judged = [result.judgement for result in results if result.judgement is not None]
    if judged:
        usable = [judgement for judgement in judged if not judgement.error]
        scores["vlm"] = mean(judgement.scores["overall"] for judgement in usable)
        scores.update({f"vlm_{criterion}": mean(judgement.scores[criterion] for judgement in usable) for criterion in CRITERIA})
        scores["vlm_unusable"] = len(judged) - len(usable)
    return scores


@dataclass
class SystemResult:
    """Everything scored for one EDITED argument."""

    name: str
    location: str
    kind: str
    edits: list[EditResult] = field(default_factory=list)
    skipped: list[SkippedEdit] = field(default_factory=list)

    def categories(self) -> dict[str, dict]:
        """Aggregates per category, when any edit has one."""
        if not any(result.category for result in self.edits):
            return {}
        names = sorted({result.category or UNCATEGORISED for result in self.edits})
        return {name: aggregate([result for result in self.edits if (result.category or UNCATEGORISED) == name]) for name in names}

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "edited": self.location,
            "kind": self.kind,
            "scores": aggregate(self.edits),
            "categories": self.categories(),
            "skipped": [asdict(skipped) for skipped in self.skipped],
            "edits": [result.to_dict() for result in self.edits],
        }


@dataclass
class EvalReport:
    """The outcome of :func:`ditto_hf.evaluate.evaluate`: settings, one :class:`SystemResult` per EDITED."""

    settings: dict
    systems: list[SystemResult]

    def notes(self) -> list[str]:
        """What the numbers mean and how far they compare with the paper's."""
        clip = self.settings["clip"]
        notes = [
            f"CLIP-T / CLIP-F: {clip['model']}; frames: {clip['frames']}; resize: {clip['resize']}. "
            "CLIP-F is over consecutive frames; 'all pairs' averages every pair of frames.",
        ]
        if clip["model"] == DEFAULT_CLIP:
            notes.append(
                f"CLIP scores use {DEFAULT_CLIP}, the usual convention; they compare with the paper's rows only on the paper's "
                "250 cases (50 videos x 5 instructions), whose exact frame sampling is not published."
            )
        else:
            notes.append(f"CLIP scores use {clip['model']}, not {DEFAULT_CLIP}: they are NOT comparable to the paper's CLIP-T / CLIP-F.")
        judge = self.settings.get("judge")
        if judge:
            notes.append(
                f"VLM: {judge['model']} with prompt {judge['prompt']} ({judge['frames']}), score = its 'overall' rating. "
                "The paper's VLM judge and prompt are not published: VLM scores compare between the rows above, NOT with the paper's."
            )
        else:
            notes.append("VLM score not computed (--vlm none).")
        for system in self.systems:
            if system.skipped:
                notes.append(f"{system.name}: {len(system.skipped)} edit(s) skipped as bad input (listed with their reasons in --json).")
            unusable = aggregate(system.edits).get("vlm_unusable")
            if unusable:
                notes.append(f"{system.name}: {unusable} judge answer(s) unusable, left out of its VLM means (reasons in --json).")
            truncated = sum(result.clip.instruction_truncated for result in system.edits)
            if truncated:
                notes.append(
                    f"{system.name}: {truncated} instruction(s) longer than CLIP's {clip['max_text_tokens']} tokens were truncated."
                )
        return notes

    def to_dict(self) -> dict:
        return {
            "settings": self.settings,
            "metrics": METRICS,
            "systems": [system.to_dict() for system in self.systems],
            "paper_table_1": [{"method": method, "clip_t": t, "clip_f": f, "vlm": v} for method, t, f, v in PAPER_TABLE_1],
            "notes": self.notes(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def write_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_json` to ``path`` atomically."""
        from ditto_hf.generate.run.rundir import atomic_write

        return atomic_write(Path(path), self.to_json())

    def table(self) -> Table:
        """A Table 1-style table: one row per system (and per category), then the paper's rows."""
        judged = self.settings.get("judge") is not None
        table = Table(title="Edit quality (arXiv 2510.15742, Table 1 metrics)")
        table.add_column("system", overflow="fold")
        table.add_column("edits", justify="right")
        for column in ("CLIP-T ↑", "CLIP-F ↑", "CLIP-F all pairs ↑", "VLM ↑"):
            table.add_column(column, justify="right")
        if judged:
            table.add_column("judge: instruction / source / quality", justify="right")
        for system in self.systems:
            skipped = f" (+{len(system.skipped)} skipped)" if system.skipped else ""
            table.add_row(*_cells(system.name, aggregate(system.edits), judged, skipped), style="bold")
            for category, scores in system.categories().items():
                table.add_row(*_cells(f"  {category}", scores, judged), style="dim")
        table.add_section()
        for method, clip_t, clip_f, vlm in PAPER_TABLE_1:
            table.add_row(
                f"paper: {method}", "250", f"{clip_t:.2f}", f"{clip_f:.2f}", "—", f"{vlm:.2f}", *(["—"] if judged else []), style="italic"
            )
        return table

    def print(self, console: Console) -> None:
        """The table, then the notes on what the numbers mean and compare with."""
        console.print(self.table())
        for note in self.notes():
            console.print(Text(f"- {note}"))


def _cells(name: str, scores: dict, judged: bool, suffix: str = "") -> list[str]:
    def number(key: str) -> str:
        value = scores.get(key)
        return "—" if value is None else f"{value:.2f}"

    cells = [name, f"{scores['edits']}{suffix}", number("clip_t"), number("clip_f"), number("clip_f_all_pairs"), number("vlm")]
    if judged:
        cells.append(" / ".join(number(f"vlm_{criterion}") for criterion in CRITERIA[:3]))
    return cells
