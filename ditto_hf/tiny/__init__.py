"""Tiny random checkpoints of every model the chain uses, built from configs (nothing downloaded).

They keep the real checkpoints' layout (Hub folder structure, scheduler configs, layer patterns)
and load back through the same ``from_pretrained`` calls as the real models, so the ``tiny``
recipe runs the whole chain on a CPU in seconds. Their weights are random: outputs are noise.
"""

from ditto_hf.tiny.checkpoints import build_tiny_checkpoints, default_tiny_root

__all__ = ["build_tiny_checkpoints", "default_tiny_root"]
