"""The seams of ARCHITECTURE.md, checked: which parts may import which, what stays free of
``datasets``, and that registering ``ditto_1m`` changes nothing for any other dataset."""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from ditto_hf.generate.stages import STAGES, stage_class

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = [ROOT / "ditto_1m.py", *sorted((ROOT / "builders").glob("*.py")), *sorted((ROOT / "cards").glob("*.py"))]
PRODUCT += [path for path in sorted((ROOT / "ditto_hf").rglob("*.py")) if "testing" not in path.relative_to(ROOT / "ditto_hf").parts]
TEST_MODULES = ("ditto_hf.testing", "tests", "conftest", "engine_fixtures", "hub_fixtures")

#: part -> parts it must never import (ARCHITECTURE.md, "Imports that must never exist").
FORBIDDEN = {
    "ditto_hf.video": ("ditto_hf.generate", "ditto_hf.hub", "ditto_hf.builders", "ditto_1m", "datasets"),
    "ditto_hf.errors": ("ditto_hf.",),
    "ditto_hf.tiny": (
        "ditto_hf.generate.stages",
        "ditto_hf.generate.engines",
        "ditto_hf.generate.run",
        "ditto_hf.hub",
        "ditto_hf.builders",
    ),
    "ditto_hf.builders": ("ditto_hf.generate", "ditto_hf.hub", "ditto_hf.mirror", "ditto_hf.commands"),
    "ditto_hf.hub": (
        "ditto_hf.generate",
        "ditto_hf.commands",
        "ditto_hf.tiny",
        "ditto_hf.mirror",
        "ditto_hf.builders",
        "ditto_1m",
        "ditto_hf.evaluate",
    ),
    "ditto_hf.mirror": ("ditto_hf.generate", "ditto_hf.commands", "ditto_hf.tiny"),
    "ditto_hf.models": ("ditto_hf.generate", "ditto_hf.hub", "ditto_hf.commands", "ditto_hf.tiny", "ditto_hf.builders", "datasets"),
    "ditto_hf.generate.contract": (
        "ditto_hf.generate.stages",
        "ditto_hf.generate.helpers",
        "ditto_hf.generate.engines",
        "ditto_hf.generate.run",
    ),
    "ditto_hf.generate.helpers": ("ditto_hf.generate.stages", "ditto_hf.generate.engines", "ditto_hf.generate.run"),
    "ditto_hf.generate.stages": ("ditto_hf.generate.engines", "ditto_hf.generate.run", "ditto_hf.hub", "ditto_hf.tiny", "ditto_hf.edit"),
    "ditto_hf.generate.engines": (
        "ditto_hf.generate.stages",
        "ditto_hf.generate.helpers",
        "ditto_hf.generate.run.driver",
        "ditto_hf.hub",
    ),
    "ditto_hf.lora": (
        "ditto_hf.generate",
        "ditto_hf.edit",
        "ditto_hf.hub",
        "ditto_hf.commands",
        "ditto_hf.tiny",
        "ditto_hf.builders",
        "datasets",
    ),
    "ditto_hf.edit": (
        "ditto_hf.generate.stages",
        "ditto_hf.generate.engines",
        "ditto_hf.generate.run",
        "ditto_hf.hub",
        "ditto_hf.commands",
        "ditto_hf.tiny",
        "ditto_hf.builders",
        "datasets",
    ),
    "ditto_hf.generate": ("ditto_hf.evaluate",),
    "ditto_hf.evaluate": (
        "ditto_hf.generate.stages",
        "ditto_hf.generate.engines",
        "ditto_hf.generate.run.driver",
        "ditto_hf.generate.run.recipe",
        "ditto_hf.hub",
        "ditto_hf.tiny",
        "ditto_hf.commands",
        "ditto_hf.builders",
    ),
    "ditto_hf.sources": ("ditto_hf.generate", "ditto_hf.hub", "ditto_hf.evaluate", "ditto_hf.export", "ditto_hf.commands", "ditto_1m"),
    "ditto_hf.training": ("ditto_hf.generate", "ditto_hf.hub", "ditto_hf.export", "ditto_hf.commands", "ditto_hf.builders", "datasets"),
    "ditto_hf.export": (
        "ditto_hf.generate.stages",
        "ditto_hf.generate.engines",
        "ditto_hf.generate.run.driver",
        "ditto_hf.hub",
        "ditto_hf.commands",
        "ditto_hf.tiny",
        "ditto_hf.mirror",
        "ditto_hf.evaluate",
    ),
    "ditto_hf.view": (
        "ditto_hf.generate.stages",
        "ditto_hf.generate.engines",
        "ditto_hf.generate.run.driver",
        "ditto_hf.hub",
        "ditto_hf.mirror",
        "ditto_hf.commands",
        "ditto_hf.tiny",
        "ditto_hf.evaluate",
        "ditto_hf.edit",
        "ditto_hf.models",
    ),
}


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[0] in ("builders", "cards"):
        parts = ["ditto_hf", *parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` / ``from … import`` anywhere in the file names (also inside functions),
    and every dotted ``ditto_hf.…`` string constant (``importlib.import_module``, stage registries)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("ditto_hf."):
            names.add(node.value.split(":")[0].split()[0])
    return names


def matches(name: str, prefix: str) -> bool:
    return name == prefix.rstrip(".") or name.startswith(prefix if prefix.endswith(".") else prefix + ".")


def test_no_product_module_imports_test_code():
    offenders = {
        module_name(path): sorted(name for name in imported_modules(path) if any(matches(name, test) for test in TEST_MODULES))
        for path in PRODUCT
    }
    assert len(PRODUCT) > 50
    assert {module: names for module, names in offenders.items() if names} == {}


def test_parts_import_only_in_the_allowed_directions():
    violations = []
    for path in PRODUCT:
        module = module_name(path)
        for part, forbidden in FORBIDDEN.items():
            if matches(module, part):
                violations += [(module, name) for name in imported_modules(path) if any(matches(name, bad) for bad in forbidden)]
    assert violations == []


def test_pickled_weights_are_read_in_one_place_only():
    """``torch.load`` (the one-time ``.pth`` conversion) appears once in the product, weights-only."""
    calls = []
    for path in PRODUCT:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
                if isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                    keywords = {keyword.arg: getattr(keyword.value, "value", None) for keyword in node.keywords}
                    calls.append((module_name(path), keywords.get("weights_only")))
    assert calls == [("ditto_hf.models.weights", True)]


def test_every_registered_stage_has_the_name_it_is_registered_under():
    assert list(STAGES) == ["standardise", "dedup", "motion", "caption", "instruct", "keyframe", "depth", "vace", "curate", "refine"]
    assert {name: stage_class(name).name for name in STAGES} == {name: name for name in STAGES}


@pytest.mark.parametrize(
    "modules",
    [
        ["ditto_hf", "ditto_hf.video", "ditto_hf.cli"],
        # the editing pipeline and the LoRA converter (datasets is no dependency of inference)
        ["ditto_hf.edit", "ditto_hf.lora", "ditto_hf.commands.edit", "ditto_hf.commands.lora"],
        # the evaluation API and command (datasets only once a datasets source is opened)
        ["ditto_hf.evaluate", "ditto_hf.commands.evaluate"],
        # the curriculum and the training transform (any training loop), and the export command
        ["ditto_hf.training", "ditto_hf.export", "ditto_hf.commands.export"],
        # what a Ray worker imports to run any stage of the chain
        ["ditto_hf.generate.engines.base", *(path.split(":")[0] for path in STAGES.values())],
    ],
    ids=["video", "edit", "evaluate", "training", "stage-worker"],
)
def test_video_io_and_stage_workers_do_not_import_datasets(modules):
    code = f"import importlib, sys\nfor name in {modules!r}: importlib.import_module(name)\nprint('datasets' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


OTHER_DATASETS = """
import hashlib, json, sys
if sys.argv[1] == "with":
    import ditto_hf  # noqa: F401
from datasets import load_dataset

def digest(dataset):
    rows = [json.dumps(row, sort_keys=True, default=str) for row in dataset]
    return {"rows": len(rows), "sha": hashlib.sha256("\\n".join(rows).encode()).hexdigest(), "features": repr(dataset.features)}

folder, tar, repo = sys.argv[2:5]
out = {
    "parquet": digest(load_dataset("parquet", data_dir=folder, split="train")),
    "parquet-folder": digest(load_dataset(folder, split="train")),
    "webdataset": digest(load_dataset("webdataset", data_files={"train": tar}, split="train", streaming=True)),
    "hub": digest(load_dataset(repo, split="train")),
    "hub-streaming": digest(load_dataset(repo, split="train", streaming=True)),
}
print(json.dumps(out, sort_keys=True))
"""


def write_other_datasets(tmp_path: Path) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "parquet"
    folder.mkdir()
    table = pa.table({"text": ["Añadir un gato", "Remove the car", "None", ""], "label": [0, 1, 2, 3]})
    pq.write_table(table, folder / "train-00000.parquet")
    tar_path = tmp_path / "shard-000000.tar"
    with tarfile.open(tar_path, "w") as tar:
        for index in range(3):
            for suffix, payload in ((".json", json.dumps({"id": index}).encode()), (".txt", f"caption {index}".encode())):
                info = tarfile.TarInfo(f"{index:06d}{suffix}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return folder, tar_path


def test_other_datasets_load_the_same_with_and_without_ditto_hf(tmp_path, hub_server):
    from huggingface_hub import HfApi

    folder, tar = write_other_datasets(tmp_path)
    repo = "loopback/plain-parquet"
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    api.create_repo(repo, repo_type="dataset")
    api.upload_folder(repo_id=repo, repo_type="dataset", folder_path=folder, path_in_repo="data")
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_TOKEN": hub_server.token}
    outputs = {}
    for mode in ("without", "with"):
        env["HF_DATASETS_CACHE"] = str(tmp_path / f"cache-{mode}")
        command = [sys.executable, "-c", textwrap.dedent(OTHER_DATASETS), mode, str(folder), str(tar), repo]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[mode] = json.loads(result.stdout.strip().splitlines()[-1])
    assert outputs["without"]["hub"]["rows"] == 4 and outputs["without"]["webdataset"]["rows"] == 3
    assert outputs["with"] == outputs["without"]
