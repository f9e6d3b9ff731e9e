"""Checks that a member's bytes are a whole mp4 before it is yielded.

The default is the container check (walk the top-level ISO-BMFF boxes: microseconds per video, it
catches truncated and foreign files); ``full`` also opens the video with the decoder.
"""

from __future__ import annotations

import struct

from ditto_hf.errors import VideoError


def mp4_box_problem(data: bytes) -> str | None:
    """Walk the top-level ISO-BMFF boxes; a box running past the end means the file was cut short."""
    if len(data) < 8:
        return f"only {len(data)} bytes, not an mp4 file"
    offset, boxes = 0, []
    while offset < len(data):
        if offset + 8 > len(data):
            return f"ends inside a box header at byte {offset}: the file is truncated"
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            if offset + 16 > len(data):
                return f"ends inside a box header at byte {offset}: the file is truncated"
            size, header = struct.unpack(">Q", data[offset + 8 : offset + 16])[0], 16
        elif size == 0:
            size = len(data) - offset
        if size < header:
            return f"invalid box size {size} at byte {offset}: the file is corrupt"
        boxes.append(kind)
        if offset + size > len(data):
            return (
                f"box {kind.decode('latin-1')!r} at byte {offset} needs {size} bytes, {len(data) - offset} present: the file is truncated"
            )
        offset += size
    if b"ftyp" not in boxes or b"moov" not in boxes:
        return "no ftyp/moov box: not an mp4 file or the file is corrupt"
    return None


#: ``verify_videos`` values: no check, the container check, the container check plus a decoder probe.
VERIFY_LEVELS = ("none", "container", "full")


def verify_level(value) -> str:
    """``verify_videos`` as one of :data:`VERIFY_LEVELS` (``True`` is ``container``, ``False`` ``none``)."""
    level = {True: "container", False: "none"}.get(value, value) if isinstance(value, bool) else value
    if level not in VERIFY_LEVELS:
        raise VideoError(f"verify_videos must be true, false or one of {', '.join(VERIFY_LEVELS)}; got {value!r}")
    return level


def check_video(data: bytes, shown_as: str, level: str = "full") -> None:
    """Raise :class:`VideoError` naming ``shown_as`` unless ``data`` is a whole mp4 (``container``)
    that torchcodec can open (``full``)."""
    if level == "none":
        return
    problem = mp4_box_problem(data)
    if problem:
        raise VideoError(f"{shown_as}: {problem}")
    if level != "full":
        return
    from ditto_hf.video import probe

    probe({"bytes": data, "path": shown_as})
