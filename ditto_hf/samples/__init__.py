"""Bundled sample source clips (rendered by ``python -m ditto_hf.samples.render``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_dir() -> Path:
    """Folder holding the bundled sample clips."""
    return Path(str(resources.files(__name__)))


def sample_clips() -> list[Path]:
    """Paths of the bundled sample clips, sorted by name."""
    return sorted(sample_dir().glob("*.mp4"))
