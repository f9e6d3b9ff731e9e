"""Where a video of the release lives: a file of an extracted tree or a member of a packed archive."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True, order=True)
class Member:
    """A located video. For packed categories ``offset`` is the data offset in the uncompressed tar
    stream; for extracted ones ``path`` is the file path on the release filesystem."""

    category: str
    offset: int
    size: int
    path: str


class CategoryReader(Protocol):
    """The videos of one category (``source``, ``local``, ``global_style1`` ...), in either layout."""

    category: str
    layout: str

    def locate(self, release_path: str) -> Member | None:
        """The member for ``<category>/<dir>/<file>.mp4``, or ``None`` when it is not in the release."""

    def member_table(self):
        """Every member as a ``pyarrow.Table`` of ``path`` (the release path), ``offset``, ``size``;
        where a path occurs twice, the one :meth:`locate` returns comes first."""

    def read(self, member: Member, then: Sequence[Member] = ()) -> bytes:
        """The bytes of a located member; ``then`` are the members of this category read after it, in
        order, as far as the caller knows them (a packed reader fetches ahead the archive bytes that
        the ones read on from this member's end are sure to need, and no further)."""

    def close(self) -> None:
        """Release open files."""
