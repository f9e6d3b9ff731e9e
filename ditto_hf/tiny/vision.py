"""Tiny random vision checkpoints: DINOv2 (dedup) and RAFT (motion), built from configs, nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import torch

#: DINOv2's ImageNet normalisation, as in facebook/dinov2-base's preprocessor config.
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def save_tiny_dinov2(directory: Path, *, seed: int = 0) -> Path:
    """A 2-layer, 32-wide ``Dinov2Model`` with its ``BitImageProcessor`` (56 px crops), saved as safetensors."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    directory = Path(directory)
    torch.manual_seed(seed)
    config = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        image_size=56,
        patch_size=14,
    )
    Dinov2Model(config).save_pretrained(directory, safe_serialization=True)
    processor = BitImageProcessor(
        size={"shortest_edge": 64},
        crop_size={"height": 56, "width": 56},
        resample=3,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )
    processor.save_pretrained(directory)
    return directory


def save_tiny_raft(directory: Path, *, seed: int = 0, constant_flow: tuple[float, float] | None = None, num_flow_updates: int = 2) -> Path:
    """torchvision ``raft_small`` (≈1M parameters, the smallest RAFT) with random weights, as ``model.safetensors``.

    With ``constant_flow=(dx, dy)`` the flow head's last convolution is zeroed and its bias set so
    that, run with ``num_flow_updates`` iterations, the model predicts exactly that flow (pixels at
    its input size) everywhere — a RAFT whose output is known, for checking the motion wiring.
    """
    from ditto_hf.generate.helpers.tracking import build_raft, save_raft

    torch.manual_seed(seed)
    raft = build_raft("raft_small")
    if constant_flow is not None:
        head = raft.update_block.flow_head.conv2
        with torch.no_grad():
            head.weight.zero_()
            # each update adds the bias at 1/8 resolution; the flow is upsampled ×8 at the end
            head.bias.copy_(torch.tensor(constant_flow) / (8 * num_flow_updates))
    save_raft(raft, directory)
    return Path(directory)
