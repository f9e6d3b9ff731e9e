"""The release's metadata files as disjoint parts: every row once, every config a union of parts.

The metadata files overlap (``local_replace`` ⊂ ``local`` ⊂ ``global+local``, ``global_style`` ⊂
``global`` …). A row belongs to the set of files that contain it, and rows with the same set form
one part (a cell of the files' overlap). The parts are disjoint, and the rows of each file are
exactly the union of the parts whose set contains it.

- A row is identified by ``(source_path, edited_path, instruction)``. A row repeated inside one
  file is counted by occurrence: its k-th copy belongs to the files that hold it at least k times,
  so every file keeps its repeats.
- A part is named after the smallest config it belongs to (fewest rows, then name): by that name
  alone when it holds all of that config (``local_replace``, ``global_style``, ``sim2real``),
  otherwise ``<config>_other`` (``local_other``: the ``local`` rows outside ``local_replace``);
  clashing names get ``_2``, ``_3`` … in the order of their sets.
- Order: parts are listed by name; inside a part rows are sorted by ``(source_path, edited_path,
  instruction, occurrence)``, so a source video and all its edits are neighbours and each 4-digit
  folder of the release is read in one stretch. A config's rows are its parts' rows, part by part.
- A part's rows keep the row number of its smallest config's file (``local_replace.json row 3``),
  which messages about bad rows cite.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from dataclasses import dataclass, field

from ditto_hf.builders.plan import BadRows
from ditto_hf.builders.release import METADATA_DIR, MetadataRow, ReleaseRoot, parse_row, read_json_array
from ditto_hf.errors import BadRowError

RowKey = tuple[str, str, str]  # (source_path, edited_path, instruction)


def row_key(row: MetadataRow) -> RowKey:
    return (row.source_path, row.edited_path, row.instruction)


@dataclass(frozen=True)
class MetadataFile:
    """One ``training_metadata/*.json`` file: its config name, where it is, how many entries it has."""

    config: str
    shown_as: str
    entries: int  # JSON array length
    rows: tuple[MetadataRow, ...]  # the entries that parse, in file order

    @property
    def bad_entries(self) -> int:
        return self.entries - len(self.rows)


@dataclass(frozen=True)
class Part:
    """Rows that belong to exactly the same configs."""

    name: str
    configs: tuple[str, ...]  # sorted
    home: str  # the smallest config: rows are numbered as in its file
    rows: tuple[MetadataRow, ...]

    @property
    def sources(self) -> list[str]:
        """The distinct source videos, in row order."""
        return list(dict.fromkeys(row.source_path for row in self.rows))


@dataclass(frozen=True)
class Composition:
    """Every metadata file of a release, split into disjoint parts."""

    files: dict[str, MetadataFile]  # config -> file
    parts: tuple[Part, ...]  # by name
    configs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # config -> its part names, in part order

    def part(self, name: str) -> Part:
        return next(part for part in self.parts if part.name == name)

    def parts_of(self, configs) -> list[Part]:
        """The parts the given configs are made of, in part order."""
        wanted = {name for config in configs for name in self.configs[config]}
        return [part for part in self.parts if part.name in wanted]

    @property
    def shared_keys(self) -> int:
        """Row keys held by more than one part: zero unless a metadata file repeats a row."""
        holders = Counter(key for part in self.parts for key in {row_key(row) for row in part.rows})
        return sum(1 for count in holders.values() if count > 1)


def compose(files: dict[str, MetadataFile]) -> Composition:
    """Split the rows of ``files`` (config -> file) into disjoint parts; see the module docstring."""
    sizes = {config: len(file.rows) for config, file in files.items()}
    members: dict[tuple[RowKey, int], dict[str, MetadataRow]] = {}
    for config, file in files.items():
        seen: Counter = Counter()
        for row in file.rows:
            key = row_key(row)
            seen[key] += 1
            members.setdefault((key, seen[key]), {})[config] = row
    cells: dict[tuple[str, ...], list[tuple[RowKey, int]]] = {}
    for identity, holders in members.items():
        cells.setdefault(tuple(sorted(holders)), []).append(identity)

    def smallest(configs: tuple[str, ...]) -> str:
        return min(configs, key=lambda config: (sizes[config], config))

    named: dict[tuple[str, ...], str] = {}
    for configs in sorted(cells):
        home = smallest(configs)
        named[configs] = home if len(cells[configs]) == sizes[home] else f"{home}_other"
    clashes = Counter(named.values())
    numbering: Counter = Counter()
    for configs in sorted(cells):
        name = named[configs]
        if clashes[name] > 1:
            numbering[name] += 1
            named[configs] = name if numbering[name] == 1 else f"{name}_{numbering[name]}"

    parts = []
    for configs, identities in cells.items():
        home = smallest(configs)
        ordered = sorted(identities)
        parts.append(
            Part(
                name=named[configs],
                configs=configs,
                home=home,
                rows=tuple(members[identity][home] for identity in ordered),
            )
        )
    parts.sort(key=lambda part: part.name)
    configs_of = {config: tuple(part.name for part in parts if config in part.configs) for config in files}
    return Composition(files=dict(files), parts=tuple(parts), configs=configs_of)


def read_metadata(root: ReleaseRoot, bad_rows: BadRows) -> dict[str, MetadataFile]:
    """Every metadata file of the release, parsed; entries that do not parse go to ``bad_rows``."""
    files = {}
    for config, path in root.metadata_files().items():
        shown_as = root.display(METADATA_DIR, posixpath.basename(path))
        entries = read_json_array(root.fs, path, shown_as)
        rows = []
        for index, entry in enumerate(entries):
            try:
                rows.append(parse_row(index, entry, shown_as))
            except BadRowError as error:
                bad_rows.handle(error)
        files[config] = MetadataFile(config, shown_as, len(entries), tuple(rows))
    return files


def release_composition(root: ReleaseRoot, bad_rows: BadRows) -> Composition:
    """:func:`compose` over every metadata file under ``root``."""
    return compose(read_metadata(root, bad_rows))
