"""A miniature replica of the Ditto-1M release, in both layouts, for tests and benchmarks.

``make_release(dest)`` writes real tiny mp4s (distinct content per clip) into
``videos/<category>/<dir>/<hash>[_<n>].mp4``, the ``training_metadata/*.json`` arrays, the
``source_video_captions/*.json`` array and returns a :class:`MiniRelease` describing what was put
in. ``pack_release(extracted, dest)`` turns an extracted tree into the packed layout: one
``<category>.tar.gz`` per category (members ``<category>/<dir>/<file>``, in a shuffled order inside
each folder, as ``tar`` would store them) split into ``.tar.gz.01``, ``.02`` … parts.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ditto_hf.video import write_video

GLOBAL_CATEGORIES = ("global_style1", "global_freeform1")
EDIT_INSTRUCTIONS = {
    "local": "Replace the {thing} with a red balloon.",
    "global_style1": "Make it look like a watercolor painting of the {thing}.",
    "global_freeform1": "Turn the {thing} scene into a snowy night.",
}
SIM2REAL_INSTRUCTION = "Turn it into the real domain."


@dataclass
class MiniRelease:
    """What a fixture release holds: ``rows[config]`` are the metadata rows, ``files`` every video."""

    root: Path
    rows: dict[str, list[dict]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # release path -> extracted mp4 on disk
    captions: dict[str, str] = field(default_factory=dict)  # source release path -> caption

    @property
    def configs(self) -> list[str]:
        return sorted(self.rows)

    def caption_of(self, source_path: str) -> str:
        return self.captions.get(source_path, "")


def clip_frames(name: str, *, frames: int, size: int, noise: int = 0) -> torch.Tensor:
    """Distinct content per clip name: a seeded colour field with a square moving across it, plus
    ``±noise`` of seeded per-pixel noise (noise makes the mp4 realistically incompressible)."""
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    generator = torch.Generator().manual_seed(seed)
    base = torch.randint(30, 220, (1, size // 8, size // 8, 3), generator=generator, dtype=torch.uint8)
    video = base.repeat_interleave(8, dim=1).repeat_interleave(8, dim=2).repeat(frames, 1, 1, 1)
    side = max(4, size // 4)
    for index in range(frames):
        left = (index * 3 + seed % 7) % (size - side)
        video[index, side : 2 * side, left : left + side] = torch.tensor([250, 250, 250], dtype=torch.uint8)
    if noise:
        jitter = torch.randint(-noise, noise + 1, video.shape, generator=generator, dtype=torch.int16)
        video = (video.to(torch.int16) + jitter).clamp(0, 255).to(torch.uint8)
    return video


def _hash(*parts) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def make_release(
    dest: Path,
    *,
    dirs: int = 3,
    sources_per_dir: int = 2,
    frames: int = 8,
    size: int = 32,
    nested: tuple[str, ...] = ("source",),
    noise: int = 0,
) -> MiniRelease:
    """Write an extracted release under ``dest``. Categories listed in ``nested`` get the extra
    ``videos/<category>/<category>/`` level that extracting the tarballs produces."""
    release = MiniRelease(Path(dest))
    all_rows, sim2real = [], []
    for folder_index in range(dirs):
        folder = f"{folder_index:04d}"
        for source_number in range(sources_per_dir):
            digest = _hash(folder, source_number)
            source = f"source/{folder}/{digest}.mp4"
            _write_clip(release, source, frames=frames, size=size, nested=nested, noise=noise)
            thing = f"object {folder}-{source_number}"
            if (folder_index * sources_per_dir + source_number) % 4 != 3:  # some sources have no caption
                release.captions[source] = f"A short clip of {thing}."
            edits = [("local", 1), ("local", 2), (GLOBAL_CATEGORIES[source_number % 2], 1)]
            for category, variant in edits:
                edited = f"{category}/{folder}/{digest}_{variant}.mp4"
                _write_clip(release, edited, frames=frames, size=size, nested=nested, noise=noise)
                all_rows.append(
                    {"source_path": source, "instruction": EDIT_INSTRUCTIONS[category].format(thing=thing), "edited_path": edited}
                )
            if GLOBAL_CATEGORIES[source_number % 2] == "global_style1":
                stylised = f"global_style1/{folder}/{digest}_1.mp4"
                sim2real.append({"source_path": stylised, "instruction": SIM2REAL_INSTRUCTION, "edited_path": source})
    release.rows = {
        "all": all_rows,
        "global": [row for row in all_rows if row["edited_path"].startswith("global_")],
        "global_style": [row for row in all_rows if row["edited_path"].startswith("global_style")],
        "local": [row for row in all_rows if row["edited_path"].startswith("local/")],
        "local_replace": [row for row in all_rows if row["edited_path"].endswith("_1.mp4") and row["edited_path"].startswith("local/")],
        "sim2real": sim2real,
    }
    for config, rows in release.rows.items():
        write_json(release.root / "training_metadata" / f"{'global+local' if config == 'all' else config}.json", rows)
    write_json(
        release.root / "source_video_captions" / "captions.json",
        [{"path": path.split("/", 1)[1], "caption": caption} for path, caption in release.captions.items()],
    )
    return release


def _write_clip(release: MiniRelease, release_path: str, *, frames: int, size: int, nested: tuple[str, ...], noise: int) -> None:
    category = release_path.split("/", 1)[0]
    folder = release.root / "videos" / category / (category if category in nested else "")
    target = folder / release_path.split("/", 1)[1]
    write_video(target, clip_frames(release_path, frames=frames, size=size, noise=noise), fps=8, preset="ultrafast")
    release.files[release_path] = target


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1), encoding="utf-8")


def pack_release(
    extracted: MiniRelease, dest: Path, *, part_size: int = 64 * 1024, extra_members: dict[str, dict[str, bytes]] | None = None
) -> MiniRelease:
    """Copy metadata and captions, and pack each category into split ``.tar.gz.NN`` parts.

    ``extra_members`` adds raw members (category -> member name -> bytes), e.g. unsafe names.
    """
    dest = Path(dest)
    for folder in ("training_metadata", "source_video_captions"):
        shutil.copytree(extracted.root / folder, dest / folder)
    by_category: dict[str, list[str]] = {}
    for release_path in extracted.files:
        by_category.setdefault(release_path.split("/", 1)[0], []).append(release_path)
    for category, paths in by_category.items():
        archive = _tar_bytes(extracted, category, paths, (extra_members or {}).get(category, {}))
        write_parts(gzip.compress(archive, compresslevel=6, mtime=0), dest / "videos" / category, f"{category}.tar.gz", part_size)
    return MiniRelease(dest, extracted.rows, extracted.files, extracted.captions)


def _tar_bytes(extracted: MiniRelease, category: str, paths: list[str], extra: dict[str, bytes]) -> bytes:
    shuffler = random.Random(category)
    folders: dict[str, list[str]] = {}
    for path in sorted(paths):
        folders.setdefault(path.split("/")[1], []).append(path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for folder in sorted(folders):
            members = folders[folder]
            shuffler.shuffle(members)
            for path in members:
                archive.add(extracted.files[path], arcname=path)
        for name, data in extra.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_parts(data: bytes, folder: Path, stem: str, part_size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for number, start in enumerate(range(0, len(data), part_size), start=1):
        part = folder / f"{stem}.{number:02d}"
        part.write_bytes(data[start : start + part_size])
        parts.append(part)
    return parts


def copy_release(release: MiniRelease, dest: Path) -> MiniRelease:
    """A copy to damage in a test without touching the shared fixture."""
    shutil.copytree(release.root, dest)
    return MiniRelease(Path(dest), release.rows, release.files, release.captions)
