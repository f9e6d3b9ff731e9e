"""A tiny random Depth Anything (V2 layout: DINOv2 backbone + DPT neck/head) and its processor."""

from __future__ import annotations

from pathlib import Path

import torch

PATCH_SIZE = 14
PROCESSOR_SIZE = 28  # the real processors work at 518 (37 patches); the tiny one at 2 patches


def tiny_depth_anything():
    """A ``DepthAnythingForDepthEstimation`` with a 4-layer, 16-wide DINOv2 backbone."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(
        image_size=PROCESSOR_SIZE,
        patch_size=PATCH_SIZE,
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=PATCH_SIZE,
        reassemble_hidden_size=16,
        neck_hidden_sizes=[4, 8, 16, 32],
        fusion_hidden_size=8,
        head_hidden_size=8,
        depth_estimation_type="relative",
    )
    torch.manual_seed(0)
    return DepthAnythingForDepthEstimation(config).eval()


def tiny_depth_processor():
    """The DPT image processor with Depth Anything's settings (aspect kept, multiple of 14)."""
    from transformers import DPTImageProcessor

    return DPTImageProcessor(
        size={"height": PROCESSOR_SIZE, "width": PROCESSOR_SIZE},
        keep_aspect_ratio=True,
        ensure_multiple_of=PATCH_SIZE,
        resample=3,  # bicubic
        do_pad=False,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )


def save_tiny_depth_anything(directory: Path) -> Path:
    """Save the tiny model and its processor (like ``depth-anything/Depth-Anything-V2-Small-hf``)."""
    directory = Path(directory)
    tiny_depth_anything().save_pretrained(directory, safe_serialization=True)
    tiny_depth_processor().save_pretrained(directory)
    return directory
