"""The extracted layout: ``videos/<category>/<dir>/<hash>.mp4``.

Extracting the release tarballs as the dataset card says adds one level
(``videos/<category>/<category>/<dir>/…``); both shapes are accepted.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from ditto_hf.builders.members import Member
from ditto_hf.builders.release import VIDEOS_DIR, ReleaseRoot


class ExtractedCategory:
    """Reads the mp4 files of one extracted category folder, listing it once."""

    layout = "extracted"

    def __init__(self, root: ReleaseRoot, category: str) -> None:
        self.root, self.category = root, category
        folder = root.join(VIDEOS_DIR, category)
        nested = posixpath.join(folder, category)
        self._fs = root.fs
        self.base = nested if self._fs.isdir(nested) else folder
        self._sizes: dict[str, int] | None = None

    @staticmethod
    def present(root: ReleaseRoot, category: str) -> bool:
        """True when ``videos/<category>`` holds sub-folders (extracted videos)."""
        fs, folder = root.fs, root.join(VIDEOS_DIR, category)
        return fs.isdir(folder) and any(entry["type"] == "directory" for entry in fs.ls(folder, detail=True))

    def _listing(self) -> dict[str, int]:
        if self._sizes is None:
            found = self._fs.find(self.base, detail=True)
            self._sizes = {posixpath.relpath(path, self.base): info["size"] for path, info in found.items() if info["type"] == "file"}
        return self._sizes

    def locate(self, release_path: str) -> Member | None:
        inside = release_path.split("/", 1)[1]
        size = self._listing().get(inside)
        if size is None:
            return None
        return Member(self.category, 0, size, posixpath.join(self.base, inside))

    def member_table(self):
        import pyarrow as pa

        listing = self._listing()
        return pa.table(
            {
                "path": pa.array([f"{self.category}/{inside}" for inside in listing], pa.string()),
                "offset": pa.array([0] * len(listing), pa.int64()),
                "size": pa.array(list(listing.values()), pa.int64()),
            }
        )

    def read(self, member: Member, then: Sequence[Member] = ()) -> bytes:
        return self._fs.cat_file(member.path)

    def close(self) -> None:
        self._sizes = None
