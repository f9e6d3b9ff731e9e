"""Tiny random Video Depth Anything and CoTracker3, saved like converted official checkpoints.

Same layer pattern, tensor names, scheme constants (32-frame windows, 60/16-frame time
embeddings, 7×7 correlation patches over 4 levels) and ``config.json`` as the real ones; only the
widths are small. Every parameter is random, the temporal output projections included (a fresh
model zeroes them), so the temporal paths do real work.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def tiny_video_depth_anything_config():
    from ditto_hf.models.video_depth_anything import VideoDepthAnythingConfig

    return VideoDepthAnythingConfig(
        encoder="tiny",
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        out_indices=(1, 2, 3, 4),
        features=32,
        out_channels=(8, 16, 32, 32),
        image_size=28,
    )


def tiny_cotracker3_config(mode: str = "offline"):
    from ditto_hf.models.cotracker import CoTracker3Config

    return CoTracker3Config(
        mode=mode,
        window_len=60 if mode == "offline" else 16,
        latent_dim=16,
        hidden_size=32,
        num_heads=2,
        time_depth=1,
        space_depth=1,
        num_virtual_tracks=4,
        corr_hidden_size=16,
        corr_embed_dim=16,
        model_resolution=(32, 48),
    )


def randomise(model: nn.Module, seed: int = 0, std: float = 0.2) -> nn.Module:
    """Draw every floating parameter from N(0, std²) (norm weights around 1) with a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator) * std
            parameter.copy_(noise + 1 if ("norm" in name or "layernorm" in name) and name.endswith("weight") else noise)
    return model.eval()


def tiny_video_depth_anything(seed: int = 0):
    from ditto_hf.models.video_depth_anything import VideoDepthAnything

    return randomise(VideoDepthAnything(tiny_video_depth_anything_config()), seed)


def tiny_cotracker3(mode: str = "offline", seed: int = 0):
    from ditto_hf.models.cotracker import CoTracker3

    return randomise(CoTracker3(tiny_cotracker3_config(mode)), seed)


def save_tiny_video_depth_anything(directory: Path) -> Path:
    """Like a converted ``video_depth_anything_vits.pth``: ``model.safetensors`` + ``config.json``."""
    return tiny_video_depth_anything().save_pretrained(directory)


def save_tiny_cotracker3(directory: Path, mode: str = "offline") -> Path:
    """Like a converted ``scaled_offline.pth`` (or ``scaled_online.pth``)."""
    return tiny_cotracker3(mode).save_pretrained(directory)
