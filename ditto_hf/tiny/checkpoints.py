"""All tiny random checkpoints of the generation chain in one cached folder.

``build_tiny_checkpoints(root)`` saves every model the ``tiny`` recipe names (``{tiny}/<name>``)
under ``root`` and returns ``{name: path}``. Each checkpoint is built in a temporary folder and
renamed into place, so concurrent or interrupted builds never leave half a model; existing ones are
reused. The default root is keyed by a hash of the builder sources, so a changed builder gets a
fresh folder instead of a stale model.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path

#: name -> "module:function(directory) -> Path" of every tiny checkpoint.
BUILDERS: dict[str, str] = {
    "dinov2": "ditto_hf.tiny.vision:save_tiny_dinov2",
    "raft": "ditto_hf.tiny.vision:save_tiny_raft",
    "cotracker3": "ditto_hf.tiny.paper_filters:save_tiny_cotracker3",
    "qwen_vl": "ditto_hf.tiny.qwen:save_tiny_qwen_vl",
    "qwen_image_edit": "ditto_hf.tiny.qwen:save_tiny_qwen_image_edit",
    "depth_anything": "ditto_hf.tiny.depth:save_tiny_depth_anything",
    "video_depth_anything": "ditto_hf.tiny.paper_filters:save_tiny_video_depth_anything",
    "wan_vace": "ditto_hf.tiny.wan:save_tiny_wan_vace",
    "wan_refiner": "ditto_hf.tiny.wan:save_tiny_wan_refiner",
}


def default_tiny_root() -> Path:
    """``$DITTO_HF_TINY_ROOT`` or ``~/.cache/ditto_hf/tiny-<hash of the builder sources>``."""
    if os.environ.get("DITTO_HF_TINY_ROOT"):
        return Path(os.environ["DITTO_HF_TINY_ROOT"])
    digest = hashlib.sha1()
    for module_name in sorted({path.split(":")[0] for path in BUILDERS.values()} | {__name__}):
        digest.update(Path(find_spec(module_name).origin).read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "ditto_hf" / f"tiny-{digest.hexdigest()[:12]}"


def build_tiny_checkpoints(root: str | os.PathLike | None = None) -> dict[str, Path]:
    """Build (or reuse) every tiny checkpoint under ``root``; return ``{name: folder}``."""
    root = Path(root) if root is not None else default_tiny_root()
    root.mkdir(parents=True, exist_ok=True)
    return {name: _build_once(root / name, _builder(path)) for name, path in BUILDERS.items()}


def _builder(path: str) -> Callable[[Path], Path]:
    module_name, _, function = path.partition(":")
    return getattr(import_module(module_name), function)


def _build_once(target: Path, build: Callable[[Path], Path]) -> Path:
    if target.is_dir():
        return target
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(scratch / "model")
        os.replace(scratch / "model", target)
    except OSError:
        if not target.is_dir():  # another process may have won the race; otherwise a real error
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
