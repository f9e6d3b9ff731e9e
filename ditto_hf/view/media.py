"""Media bytes as stored: where they live (bytes in a table or a file), their type, HTTP ranges and checks."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ditto_hf.errors import DittoError, VideoError

IMAGE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
VIDEO_SUFFIXES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm", ".mkv": "video/x-matroska"}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(Exception):
    """A ``Range`` header that selects no byte of the media (answered with 416)."""


@dataclass(frozen=True)
class Blob:
    """One stored media file: ``data`` when a table embeds it, else ``path`` on local disk."""

    name: str  # shown in error messages
    data: bytes | None = None
    path: Path | None = None

    @classmethod
    def from_cell(cls, cell: dict | None, base: Path | None, name: str) -> Blob:
        """A ``datasets.Video`` / ``Image`` storage cell ``{"bytes", "path"}``.

        A cell with a path only is read from local disk (relative paths under ``base``) when the
        source is local; ``base=None`` (a remote source) never reads a path it names.
        """
        if not cell or not (cell.get("bytes") or cell.get("path")):
            raise DittoError(f"{name}: the row has no media here (empty cell)")
        if cell.get("bytes"):
            return cls(name, data=cell["bytes"])
        if base is None:
            raise DittoError(f"{name}: the row stores only a path ({cell['path']}), not the bytes; a remote source's paths are not read")
        return cls.from_path(cell["path"], base, name)

    @classmethod
    def from_path(cls, path: str, base: Path, name: str) -> Blob:
        """A file on local disk (relative paths under ``base``)."""
        if not path:
            raise DittoError(f"{name}: the row has no media here (empty path)")
        resolved = Path(path) if os.path.isabs(path) else base / path
        if not resolved.is_file():
            raise DittoError(f"{name}: {resolved} does not exist")
        return cls(name, path=resolved)

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size

    def read(self, start: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes from ``start`` (to the end when ``length`` is None)."""
        if self.data is not None:
            return self.data[start : None if length is None else start + length]
        with open(self.path, "rb") as stream:
            stream.seek(start)
            return stream.read() if length is None else stream.read(length)

    @property
    def content_type(self) -> str:
        return sniff_type(self.read(0, 16), self.path.suffix if self.path else "")

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


def sniff_type(head: bytes, suffix: str = "") -> str:
    """The MIME type from the first bytes (falling back to the file suffix)."""
    if head[4:8] == b"ftyp":
        return "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    suffix = suffix.lower()
    return VIDEO_SUFFIXES.get(suffix) or IMAGE_SUFFIXES.get(suffix) or "application/octet-stream"


def media_kind(path: str) -> str:
    """``image`` or ``video`` for a media path column, from its suffix."""
    return "image" if Path(path).suffix.lower() in IMAGE_SUFFIXES else "video"


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The ``(start, end)`` (inclusive) a ``Range`` header asks for; None for the whole file.

    A header this server does not serve partially (several ranges, other units) is answered whole,
    as RFC 9110 allows; a range past the end raises :class:`RangeNotSatisfiable`.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix range: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(header)
    return start, end


def check(blob: Blob) -> dict:
    """Whether the media can be shown: ``{"ok": True, ...properties}`` or ``{"ok": False, "reason": ...}``."""
    kind = blob.content_type
    if kind == "application/octet-stream":
        return {"ok": False, "reason": f"{blob.name}: not a video or image file (unknown format, {blob.size} bytes)"}
    if kind.startswith("image/"):
        return {"ok": True, "type": kind}
    from ditto_hf.video import probe

    try:
        info = probe(blob.data if blob.data is not None else blob.path)
    except VideoError as exc:
        return {"ok": False, "reason": f"{blob.name}: {str(exc).split(': ', 1)[-1]}"}
    return {"ok": True, "type": kind, "codec": info.codec, "width": info.width, "height": info.height, "frames": info.num_frames}
