"""The Ditto-1M release tree: where things are, the metadata files and the source captions.

A release root is any local folder or fsspec URL (``hf://datasets/QingyanBai/Ditto-1M``) holding
``training_metadata/*.json``, ``source_video_captions/*.json`` and ``videos/<category>/``.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import time
from dataclasses import dataclass, field

import fsspec

from ditto_hf.errors import BadRowError, DittoError

logger = logging.getLogger("ditto_hf.builders")

DEFAULT_ROOT = "hf://datasets/QingyanBai/Ditto-1M"
METADATA_DIR = "training_metadata"
CAPTIONS_DIR = "source_video_captions"
VIDEOS_DIR = "videos"
#: Config name -> metadata file stem, where they differ. Every other file ``X.json`` is config ``X``.
CONFIG_ALIASES = {"all": "global+local"}
ROW_KEYS = ("source_path", "instruction", "edited_path")
#: Tries and first backoff (seconds, doubled each time) of the listing that finds a release root.
LISTING_ATTEMPTS, LISTING_BACKOFF = 5, 0.5
_CONFIG_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


def config_name_of(metadata_stem: str) -> str:
    """``global+local`` -> ``all``; any other metadata file stem is its own config name."""
    for name, stem in CONFIG_ALIASES.items():
        if stem == metadata_stem:
            return name
    return metadata_stem


def metadata_stem_of(config_name: str) -> str:
    """``all`` -> ``global+local``; any other config name is the stem of its metadata file."""
    return CONFIG_ALIASES.get(config_name, config_name)


@dataclass(frozen=True, slots=True)
class MetadataRow:
    """One entry of a metadata file. ``index`` is its position in the JSON array (the row id)."""

    index: int
    source_path: str
    edited_path: str
    instruction: str

    @property
    def category(self) -> str:
        return self.edited_path.split("/", 1)[0]

    @property
    def group(self) -> str:
        """The 4-digit folder shared by the source and its edits: the unit of read locality."""
        return self.source_path.split("/")[1]


@dataclass(frozen=True)
class ReleaseRoot:
    """A release tree reached through fsspec; picklable (the filesystem is opened on demand)."""

    url: str = DEFAULT_ROOT
    storage_options: dict = field(default_factory=dict, compare=False)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return fsspec.core.url_to_fs(self.url, **self.storage_options)[0]

    @property
    def path(self) -> str:
        """The root as a path of :attr:`fs` (no protocol)."""
        return fsspec.core.url_to_fs(self.url, **self.storage_options)[1].rstrip("/")

    @property
    def is_local(self) -> bool:
        protocol = self.fs.protocol
        return "file" in (protocol if isinstance(protocol, (tuple, list)) else (protocol,))

    def join(self, *parts: str) -> str:
        return posixpath.join(self.path, *parts)

    def display(self, *parts: str) -> str:
        """A path under the root as the user wrote it, for messages."""
        return posixpath.join(self.url.rstrip("/"), *parts)

    def is_folder(self, path: str, shown_as: str) -> bool:
        """Whether ``path`` is a folder. Only "not found" answers no: server errors and dropped
        connections are retried with backoff, then reported as such (not as a missing folder)."""
        for attempt in range(LISTING_ATTEMPTS):
            try:
                return self.fs.info(path)["type"] == "directory"
            except FileNotFoundError:
                return False
            except OSError as error:
                if attempt == LISTING_ATTEMPTS - 1:
                    raise DittoError(f"{shown_as}: cannot be listed ({' '.join(str(error).split())[:200]}); try again later") from error
                logger.warning("%s: listing failed (%s); retrying (%d/%d)", shown_as, error, attempt + 1, LISTING_ATTEMPTS - 1)
                time.sleep(LISTING_BACKOFF * 2**attempt)
        raise AssertionError("unreachable")

    def metadata_files(self) -> dict[str, str]:
        """Config name -> metadata file path, for every ``training_metadata/*.json`` present."""
        folder = self.join(METADATA_DIR)
        fs = self.fs
        if not self.is_folder(folder, self.display(METADATA_DIR)):
            if not self.is_folder(self.path, self.url):
                raise DittoError(f"{self.url}: not found (no such folder, or no such dataset repo: check the name, or pass a token)")
            raise DittoError(f"{self.display(METADATA_DIR)} not found: {self.url} does not look like a Ditto-1M release root")
        found = {}
        for path in sorted(fs.ls(folder, detail=False)):
            stem, ext = posixpath.splitext(posixpath.basename(path))
            if ext == ".json" and _CONFIG_NAME.match(stem):
                found[config_name_of(stem)] = path
        if not found:
            raise DittoError(f"{self.display(METADATA_DIR)} holds no <config>.json metadata file")
        return found

    def metadata_file(self, config_name: str) -> str:
        files = self.metadata_files()
        if config_name not in files:
            raise DittoError(
                f"no metadata file for config {config_name!r} under {self.display(METADATA_DIR)} "
                f"(expected {metadata_stem_of(config_name)}.json); configs present: {', '.join(files) or 'none'}"
            )
        return files[config_name]


def read_json_array(fs: fsspec.AbstractFileSystem, path: str, shown_as: str) -> list:
    """Parse a JSON array file; a syntax error or a non-array names the file and the position."""
    with fs.open(path, "rb") as handle:
        text = handle.read()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DittoError(f"{shown_as}: malformed JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); re-download the file") from exc
    except UnicodeDecodeError as exc:
        raise DittoError(f"{shown_as}: not UTF-8 text ({exc.reason}); re-download the file") from exc
    if not isinstance(value, list):
        raise DittoError(f"{shown_as}: expected a JSON array of rows, found a JSON {type(value).__name__}")
    return value


def check_release_path(value, key: str) -> str:
    """A metadata path must be relative to ``videos/``, inside it, and name ``<category>/<dir>/<file>``."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string, got {value!r}")
    path = value.replace("\\", "/")
    if "://" in path:
        raise ValueError(f"{key} {value!r} is a URL; paths must be relative to videos/")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise ValueError(f"{key} {value!r} is an absolute path; paths must be relative to videos/")
    parts = path.split("/")
    if ".." in parts:
        raise ValueError(f"{key} {value!r} contains '..'; paths must stay inside videos/")
    parts = [part for part in parts if part not in ("", ".")]
    if len(parts) < 3:
        raise ValueError(f"{key} {value!r} is not of the form <category>/<4-digit dir>/<file>.mp4")
    return "/".join(parts)


def parse_row(index: int, entry, shown_as: str) -> MetadataRow:
    """Validate one metadata entry; raises :class:`BadRowError` naming the file and the row."""

    def bad(reason: str) -> BadRowError:
        return BadRowError(f"{shown_as} row {index}: {reason}")

    if not isinstance(entry, dict):
        raise bad(f"expected an object with keys {', '.join(ROW_KEYS)}, got {type(entry).__name__}")
    missing = [key for key in ROW_KEYS if key not in entry]
    if missing:
        raise bad(f"missing key(s) {', '.join(missing)}")
    instruction = entry["instruction"]
    if not isinstance(instruction, str):
        raise bad(f"instruction must be a string, got {instruction!r}")
    if not instruction.strip():
        raise bad(f"instruction is empty{' (only whitespace)' if instruction else ''}; give the row an instruction or remove it")
    try:
        instruction.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise bad(f"instruction is not valid Unicode ({exc.reason} at character {exc.start}); fix the text or remove the row") from None
    try:
        source_path = check_release_path(entry["source_path"], "source_path")
        edited_path = check_release_path(entry["edited_path"], "edited_path")
    except ValueError as exc:
        raise bad(str(exc)) from None
    return MetadataRow(index=index, source_path=source_path, edited_path=edited_path, instruction=entry["instruction"])


def load_captions(root: ReleaseRoot) -> dict[str, str]:
    """``source/<dir>/<hash>.mp4`` -> caption, from every ``source_video_captions/*.json`` present.

    Caption entries name sources relative to ``videos/source/`` (``0000/<hash>.mp4``); entries that are
    not ``{"path", "caption"}`` objects are reported by a warning and ignored (captions are optional).
    """
    fs, folder = root.fs, root.join(CAPTIONS_DIR)
    if not fs.isdir(folder):
        return {}
    captions: dict[str, str] = {}
    for path in sorted(fs.ls(folder, detail=False)):
        if not path.endswith(".json"):
            continue
        shown_as = root.display(CAPTIONS_DIR, posixpath.basename(path))
        ignored = 0
        for entry in read_json_array(fs, path, shown_as):
            if isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("caption"), str):
                key = entry["path"].replace("\\", "/").lstrip("./")
                captions[key if key.startswith("source/") else f"source/{key}"] = entry["caption"]
            else:
                ignored += 1
        if ignored:
            logger.warning(
                "%s: ignored %d caption entr%s that are not {path, caption} objects", shown_as, ignored, "y" if ignored == 1 else "ies"
            )
    return captions
