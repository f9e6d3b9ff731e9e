"""The dataset card (README.md) of a published repo, rendered from ``cards/README.md.j2``.

A config is a list of data folders (``<folder>/<split>-*.parquet``, one ``<folder>/manifest.json``
each): a config published on its own has one folder named after it; a composed config (the
release mirror) lists the disjoint parts it is made of. The YAML header carries ``configs:`` (with
``data_files`` per config) and ``dataset_info:`` for every config (entries published before are
kept as they are); the body lists each config's row counts and parts, how it was made, the layout
of a composed repo (from ``composition.json``) and every folder's per-shard SHA-256 manifest.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from datasets import DatasetInfo, Features, SplitDict, SplitInfo
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

LICENSE = "cc-by-nc-sa-4.0"
TEMPLATE = "README.md.j2"
MANIFEST_NAME = "manifest.json"
COMPOSITION_PATH = "composition.json"
#: Licence identifier of configs whose licence nobody stated (data that does not derive from Ditto-1M).
UNKNOWN_LICENSE = "unknown"
TASK_CATEGORIES = ("video-to-video", "text-to-video")
LANGUAGES = ("en",)
TAGS = ("video", "video-editing", "ditto-1m")
#: ``size_categories`` buckets of the Hub: (upper bound on rows, label).
SIZE_CATEGORIES = tuple(
    (10**exponent, label)
    for exponent, label in enumerate(
        ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B", "1B<n<10B", "10B<n<100B", "100B<n<1T"), 3
    )
)
CITATION = """@article{bai2025ditto,
  title   = {Scaling Instruction-Based Video Editing with a High-Quality Synthetic Dataset},
  author  = {Bai, Qingyan and Wang, Qiuyu and Ouyang, Hao and Yu, Yue and Wang, Hanlin and Wang, Wen and Cheng, Ka Leong and
             Ma, Shuailei and Zeng, Yanhong and Liu, Zichen and Xu, Yinghao and Shen, Yujun and Chen, Qifeng},
  journal = {arXiv preprint arXiv:2510.15742},
  year    = {2025}
}"""

ReadText = Callable[[str], "str | None"]  # repo path -> text, or None when the repo has no such file


@dataclass(frozen=True)
class CardConfig:
    """A config as the card declares it: the data folders it reads, in order."""

    name: str
    folders: tuple[str, ...]
    split: str = "train"
    default: bool = False

    def entry(self) -> dict:
        """The config's ``configs:`` entry (without its name)."""
        patterns = [data_files_pattern(folder, self.split) for folder in self.folders]
        entry = {"data_files": [{"split": self.split, "path": patterns[0] if len(patterns) == 1 else patterns}]}
        if self.default:
            entry["default"] = True
        return entry


def manifest_path(folder: str) -> str:
    return f"{folder}/{MANIFEST_NAME}"


def data_files_pattern(folder: str, split: str) -> str:
    return f"{folder}/{split}-*"


def declared_configs(card_data: DatasetCardData | None) -> list[CardConfig]:
    """The configs a card declares, each with the folders its ``data_files`` patterns point into."""
    if card_data is None:
        return []
    configs = []
    for name, config in MetadataConfigs.from_dataset_card_data(card_data).items():
        data_files = config.get("data_files") or []
        entries = [data_files] if isinstance(data_files, (str, dict)) else data_files
        split, patterns = "train", []
        for entry in entries:
            if isinstance(entry, dict):
                split = entry.get("split", split)
                entry = entry["path"]
            patterns.extend([entry] if isinstance(entry, str) else entry)
        folders = tuple(dict.fromkeys(posixpath.dirname(pattern) for pattern in patterns))
        configs.append(CardConfig(name, folders, split, bool(config.get("default"))))
    return configs


def dataset_info_of(manifests: list[dict]) -> DatasetInfo:
    """The ``dataset_info:`` entry of a config made of the folders these manifests describe."""
    splits = SplitDict()
    split = manifests[0]["split"]
    num_bytes = sum(manifest["num_bytes"] for manifest in manifests)
    splits.add(SplitInfo(name=split, num_bytes=num_bytes, num_examples=sum(manifest["num_rows"] for manifest in manifests)))
    return DatasetInfo(
        features=Features.from_dict(manifests[0]["features"]),
        splits=splits,
        download_size=sum(shard["size"] for manifest in manifests for shard in manifest["shards"]),
        dataset_size=num_bytes,
    )


def card_data_with(
    existing: DatasetCardData | None,
    configs: list[CardConfig],
    manifests: dict[str, dict],
    removed: tuple[str, ...] = (),
    license: str = LICENSE,  # noqa: A002 - the card field's name
) -> DatasetCardData:
    """``existing`` card metadata with entries for ``configs`` added or refreshed (their folders'
    manifests in ``manifests``) and the ``removed`` configs dropped. Exactly one config is the
    default (the first declared one unless one is marked), so ``load_dataset(repo)`` works."""
    card_data = DatasetCardData(**(existing.to_dict() if existing is not None else {}))
    card_data.license = license
    card_data["tags"] = sorted(set(card_data.get("tags") or []) | set(TAGS))
    card_data["task_categories"] = sorted(set(card_data.get("task_categories") or []) | set(TASK_CATEGORIES))
    card_data["language"] = card_data.get("language") or list(LANGUAGES)
    if any(config.default for config in configs):
        for entry in card_data.get("configs") or []:
            entry.pop("default", None)
    MetadataConfigs({config.name: config.entry() for config in configs}).to_dataset_card_data(card_data)
    infos = {config.name: dataset_info_of([manifests[folder] for folder in config.folders]) for config in configs}
    DatasetInfosDict(infos).to_dataset_card_data(card_data)
    if removed:
        card_data["configs"] = [entry for entry in card_data.get("configs") or [] if entry["config_name"] not in removed]
        info = card_data.get("dataset_info")
        if isinstance(info, list):
            card_data["dataset_info"] = [entry for entry in info if entry.get("config_name") not in removed]
    entries = card_data.get("configs") or []
    if entries and not any(entry.get("default") for entry in entries):
        entries[0]["default"] = True
    return card_data


def size_category(num_rows: int) -> str:
    """The Hub's ``size_categories`` label for a dataset of ``num_rows`` rows."""
    return next((label for bound, label in SIZE_CATEGORIES if num_rows < bound), "n>1T")


def updated_card(
    repo_id: str,
    read_text: ReadText,
    configs: list[CardConfig],
    manifests: dict[str, dict],
    *,
    extra_columns: list[str],
    composition: dict | None = None,
    removed: tuple[str, ...] = (),
    license: str = LICENSE,  # noqa: A002 - the card field's name
) -> str:
    """README.md text after publishing ``configs``: the repo's card (read with ``read_text``) with
    their entries refreshed; other configs' manifests and ``composition.json`` are read from the repo
    unless given."""
    text = read_text("README.md")
    existing = DatasetCard(text) if text is not None else None
    card_data = card_data_with(existing.data if existing else None, configs, manifests, removed, license)
    every = declared_configs(card_data)
    known = dict(manifests)
    for folder in dict.fromkeys(folder for config in every for folder in config.folders):
        if folder not in known and (found := read_text(manifest_path(folder))) is not None:
            known[folder] = json.loads(found)
    if composition is None and (found := read_text(COMPOSITION_PATH)) is not None:
        composition = json.loads(found)
    copies = set((composition or {}).get("copies", []))
    stored = {folder for config in every for folder in config.folders if folder in known and folder not in copies}
    card_data["size_categories"] = [size_category(sum(known[folder]["num_rows"] for folder in stored))]
    card_data.pretty_name = card_data.pretty_name or repo_id.split("/")[-1]
    return render_card(repo_id, card_data, every, known, extra_columns, composition)


def render_card(
    repo_id: str,
    card_data: DatasetCardData,
    configs: list[CardConfig],
    manifests: dict[str, dict],
    extra_columns: list[str],
    composition: dict | None = None,
) -> str:
    """README.md text: ``card_data`` as YAML, then the body from the template."""
    template = resources.files("ditto_hf.cards").joinpath(TEMPLATE).read_text(encoding="utf-8")
    views = [_config_view(config, manifests) for config in sorted(configs, key=lambda c: (not c.default, c.name))]
    folders = [manifests[folder] | {"folder": folder} for folder in sorted({f for c in configs for f in c.folders} & set(manifests))]
    card = DatasetCard.from_template(
        card_data,
        template_str=template,
        pretty_name=card_data.pretty_name or repo_id.split("/")[-1],
        repo_id=repo_id,
        configs=views,
        provenance=_provenance_groups(views),
        folders=folders,
        layout=(composition or {}).get("layout"),
        extra_columns=[f"`{name}`" for name in extra_columns],
        ditto_license=LICENSE,
        unknown_license=UNKNOWN_LICENSE,
        citation=CITATION,
    )
    return str(card)


def _config_view(config: CardConfig, manifests: dict[str, dict]) -> dict:
    found = [manifests[folder] for folder in config.folders if folder in manifests]
    complete = len(found) == len(config.folders)
    size = sum(shard["size"] for manifest in found for shard in manifest["shards"])
    return {
        "name": config.name,
        "default": config.default,
        "folders": config.folders,
        "num_rows": sum(manifest["num_rows"] for manifest in found) if complete else "?",
        "num_shards": sum(len(manifest["shards"]) for manifest in found) if complete else "?",
        "size_text": _human_size(size) if complete else "?",
        "provenance": found[0].get("provenance", "").strip() if found else "",
    }


def _provenance_groups(views: list[dict]) -> list[dict]:
    """Configs made the same way share one "How it was made" entry."""
    groups: dict[str, list[str]] = {}
    for view in views:
        groups.setdefault(view["provenance"], []).append(view["name"])
    return [{"names": names, "text": text} for text, names in groups.items()]


def _human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
