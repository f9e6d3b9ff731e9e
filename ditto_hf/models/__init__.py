"""Architectures the chain needs that no installable library ships, written here from their papers.

- :mod:`~ditto_hf.models.video_depth_anything`: Video Depth Anything (DINOv2 encoder from
  transformers, DPT head with temporal attention) and its long-video inference scheme;
- :mod:`~ditto_hf.models.cotracker`: CoTracker3 point tracking (offline and online);
- :mod:`~ditto_hf.models.weights`: the one-time ``.pth`` → safetensors conversion of official
  checkpoints, the conversion cache and the shared ``from_pretrained`` / ``save_pretrained``.

Convert an official checkpoint once with ``python -m ditto_hf.models.convert`` (see its ``--help``),
or let ``from_pretrained`` do it on first use. Nothing here imports ``ditto_hf.generate``.
"""
