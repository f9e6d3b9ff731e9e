"""The dataset card (README.md) of a published repo, rendered from ``cards/README.md.j2``.

The YAML header carries ``configs:`` and ``dataset_info:`` for every config (entries of configs
published before are kept as they are); the body lists every config's row counts, how it was
made and its per-shard SHA-256 manifest, read from the ``<config>/manifest.json`` files.
"""

from __future__ import annotations

from importlib import resources

from datasets import DatasetInfo, Features, SplitDict, SplitInfo
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

LICENSE = "cc-by-nc-sa-4.0"
TEMPLATE = "README.md.j2"
MANIFEST_NAME = "manifest.json"
CITATION = """@article{bai2025ditto,
  title   = {Scaling Instruction-Based Video Editing with a High-Quality Synthetic Dataset},
  author  = {Bai, Qingyan and others},
  journal = {arXiv preprint arXiv:2510.15742},
  year    = {2025}
}"""


def manifest_path(config_name: str) -> str:
    return f"{config_name}/{MANIFEST_NAME}"


def data_files_pattern(config_name: str, split: str) -> str:
    return f"{config_name}/{split}-*"


def dataset_info_of(manifest: dict, features: Features) -> DatasetInfo:
    """The ``dataset_info:`` entry of one config, from its manifest."""
    splits = SplitDict()
    splits.add(SplitInfo(name=manifest["split"], num_bytes=manifest["num_bytes"], num_examples=manifest["num_rows"]))
    download_size = sum(shard["size"] for shard in manifest["shards"])
    return DatasetInfo(
        features=features,
        splits=splits,
        download_size=download_size,
        dataset_size=manifest["num_bytes"],
    )


def card_data_with(existing: DatasetCardData | None, manifest: dict, features: Features) -> DatasetCardData:
    """``existing`` card metadata plus (or with a refreshed) entry for the manifest's config."""
    card_data = DatasetCardData(**(existing.to_dict() if existing is not None else {}))
    card_data.license = LICENSE
    card_data["tags"] = sorted(set(card_data.get("tags") or []) | {"video", "video-editing", "ditto-1m"})
    name = manifest["config_name"]
    MetadataConfigs(
        {name: {"data_files": [{"split": manifest["split"], "path": data_files_pattern(name, manifest["split"])}]}}
    ).to_dataset_card_data(card_data)
    DatasetInfosDict({name: dataset_info_of(manifest, features)}).to_dataset_card_data(card_data)
    return card_data


def render_card(repo_id: str, card_data: DatasetCardData, manifests: list[dict], extra_columns: list[str]) -> str:
    """README.md text: ``card_data`` as YAML, then the body from the template."""
    template = resources.files("ditto_hf.cards").joinpath(TEMPLATE).read_text(encoding="utf-8")
    card = DatasetCard.from_template(
        card_data,
        template_str=template,
        pretty_name=card_data.pretty_name or repo_id.split("/")[-1],
        repo_id=repo_id,
        configs=[_config_view(manifest) for manifest in sorted(manifests, key=lambda m: m["config_name"])],
        extra_columns=[f"`{name}`" for name in extra_columns],
        citation=CITATION,
    )
    return str(card)


def _config_view(manifest: dict) -> dict:
    size = sum(shard["size"] for shard in manifest["shards"])
    return {
        "name": manifest["config_name"],
        "num_rows": manifest["num_rows"],
        "num_shards": len(manifest["shards"]),
        "size_text": _human_size(size),
        "provenance": manifest.get("provenance", "").strip(),
        "shards": manifest["shards"],
    }


def _human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
