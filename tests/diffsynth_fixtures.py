"""DiffSynth-Studio's own dataset code (the ``diffsynth`` package), loaded without the rest of it.

``import diffsynth`` loads every model and pipeline module; the training loader lives in
``diffsynth/core/data`` and needs only torch, torchvision, imageio, PIL, einops and pandas, so
that folder is loaded as a package of its own.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

NAME = "diffsynth_core_data"


@functools.cache
def diffsynth_data():
    """The package ``diffsynth.core.data`` (``UnifiedDataset``)."""
    spec = importlib.util.find_spec("diffsynth")
    assert spec is not None, "the test dependency diffsynth is missing: pip install -e '.[test]'"
    folder = Path(spec.submodule_search_locations[0]) / "core" / "data"
    package = importlib.util.spec_from_file_location(NAME, folder / "__init__.py", submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(package)
    sys.modules[NAME] = module
    package.loader.exec_module(module)
    return module


def operators():
    """``diffsynth.core.data.operators`` (``ImageCropAndResize``, ``LoadVideo``, ...)."""
    diffsynth_data()
    return sys.modules[f"{NAME}.operators"]


def unified_dataset(base: Path, metadata: Path, *, data_file_keys: str, num_frames: int, height: int, width: int):
    """``UnifiedDataset`` built exactly as DiffSynth's ``examples/wanvideo/model_training/train.py``
    builds it from ``--dataset_base_path --dataset_metadata_path --data_file_keys --num_frames
    --height --width`` (``--max_pixels`` at its default)."""
    data = diffsynth_data()
    return data.UnifiedDataset(
        base_path=str(base),
        metadata_path=str(metadata),
        repeat=1,
        data_file_keys=data_file_keys.split(","),
        main_data_operator=data.UnifiedDataset.default_video_operator(
            base_path=str(base),
            max_pixels=1024 * 1024,
            height=height,
            width=width,
            height_division_factor=16,
            width_division_factor=16,
            num_frames=num_frames,
            time_division_factor=4,
            time_division_remainder=1,
        ),
    )
