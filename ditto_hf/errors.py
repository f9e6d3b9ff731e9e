"""Error types shared by the library. The CLI turns every ``USER_ERRORS`` into a one-line message."""

from __future__ import annotations


class VideoError(Exception):
    """A video could not be probed, decoded or written. The message names the file and the problem."""


class DittoError(Exception):
    """Bad input or configuration the user can fix; the message says what and how."""


class BadRowError(DittoError):
    """A dataset row (metadata entry, sample) cannot be used; the message names the row."""


USER_ERRORS: tuple[type[BaseException], ...] = (DittoError, VideoError, FileNotFoundError, NotADirectoryError, PermissionError)
