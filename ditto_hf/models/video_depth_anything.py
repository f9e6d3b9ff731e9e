"""Video Depth Anything (Chen et al., arXiv 2501.12375): consistent relative depth for long videos.

The architecture is Depth Anything V2 with a spatio-temporal head: a DINOv2 encoder
(transformers' ``Dinov2Backbone``), the DPT reassemble / fusion neck and depth head
(transformers' Depth Anything modules), and four temporal attention modules inserted in the head
— after the two deepest reassembled feature maps and after the two deepest fusion steps — that
attend across the 32 frames of a window (sinusoidal frame positions, two attention layers and a
GEGLU feed-forward each, residual).

Clips longer than the window are processed with the reference keyframe scheme
(:func:`window_frame_indices`, :func:`align_windows`): windows of 32 frames advance by 22; the
first 10 inputs of every later window are frames the previous window saw (the clip's first frame,
the previous window's frame 12, and its last 8 frames); each window's depth is fitted by least
squares (scale and shift) on the two keyframes to the aligned depth already produced, and the 8
overlapping frames are cross-faded linearly.

Checkpoints (relative depth, ``*.pth`` in the official repos): ``video_depth_anything_vits.pth``
(Small, 28.4M parameters as published, **Apache-2.0**), ``..._vitb.pth`` (Base, 113.1M,
**CC-BY-NC-4.0**), ``..._vitl.pth`` (Large, 381.8M, **CC-BY-NC-4.0**) in
``depth-anything/Video-Depth-Anything-{Small,Base,Large}``. They load through
:class:`VideoDepthAnything.from_pretrained` (converted once to safetensors, see
:mod:`ditto_hf.models.weights`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ditto_hf.errors import DittoError
from ditto_hf.models.weights import ArchitectureConfig, OfficialCheckpointModel

#: The reference inference scheme (fixed by how the model was trained).
WINDOW = 32
OVERLAP = 10
KEYFRAMES = (0, 12, 24, 25, 26, 27, 28, 29, 30, 31)
CROSSFADE = 8
ALIGNMENT_KEYFRAMES = KEYFRAMES[: OVERLAP - CROSSFADE]  # (0, 12): the frames the scale/shift fit uses

PATCH_SIZE = 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MICRO_BATCH = 4  # frames per pass through the high-resolution end of the head (memory, not results)


@dataclass
class VideoDepthAnythingConfig(ArchitectureConfig):
    """Sizes of a Video Depth Anything model (defaults: Small)."""

    architecture = "video-depth-anything"

    encoder: str = "vits"
    hidden_size: int = 384
    num_hidden_layers: int = 12
    num_attention_heads: int = 6
    #: Encoder hidden states (0 = embeddings, i = after block i) that feed the head.
    out_indices: tuple[int, ...] = (3, 6, 9, 12)
    features: int = 64
    out_channels: tuple[int, ...] = (48, 96, 192, 384)
    #: Frames the temporal position encoding covers.
    num_frames: int = 32
    temporal_heads: int = 8
    temporal_norm_groups: int = 32
    image_size: int = 518  # the encoder's position-embedding grid is image_size / 14 per side


#: The released relative-depth models: encoder name -> (config, Hub repo).
VARIANTS: dict[str, tuple[VideoDepthAnythingConfig, str]] = {
    "vits": (VideoDepthAnythingConfig(license="Apache-2.0"), "depth-anything/Video-Depth-Anything-Small"),
    "vitb": (
        VideoDepthAnythingConfig(
            encoder="vitb",
            hidden_size=768,
            num_attention_heads=12,
            features=128,
            out_channels=(96, 192, 384, 768),
            license="CC-BY-NC-4.0",
        ),
        "depth-anything/Video-Depth-Anything-Base",
    ),
    "vitl": (
        VideoDepthAnythingConfig(
            encoder="vitl",
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            out_indices=(5, 12, 18, 24),
            features=256,
            out_channels=(256, 512, 1024, 1024),
            license="CC-BY-NC-4.0",
        ),
        "depth-anything/Video-Depth-Anything-Large",
    ),
}


# -- temporal attention (the video part of the head) -----------------------------------------------
class SinusoidalFramePositions(nn.Module):
    """Fixed sin/cos encoding of the frame index, added before temporal attention."""

    def __init__(self, channels: int, max_frames: int):
        super().__init__()
        position = torch.arange(max_frames, dtype=torch.float32)[:, None]
        frequency = torch.exp(torch.arange(0, channels, 2, dtype=torch.float32) * (-math.log(10000.0) / channels))
        pe = torch.zeros(1, max_frames, channels)
        pe[0, :, 0::2] = torch.sin(position * frequency)
        pe[0, :, 1::2] = torch.cos(position * frequency)
        self.register_buffer("pe", pe)


class TemporalAttention(nn.Module):
    """Self-attention along time, independently at every spatial position."""

    def __init__(self, channels: int, heads: int, max_frames: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])
        self.pos_encoder = SinusoidalFramePositions(channels, max_frames)

    def forward(self, tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``tokens`` ``(B·T, P, C)`` (P spatial positions) → same shape."""
        frames_batch, positions, channels = tokens.shape
        batch = frames_batch // num_frames
        x = tokens.reshape(batch, num_frames, positions, channels).transpose(1, 2).reshape(batch * positions, num_frames, channels)
        x = x + self.pos_encoder.pe[:, :num_frames].to(x.dtype)

        def split(projection: nn.Linear) -> torch.Tensor:
            return projection(x).view(batch * positions, num_frames, self.heads, -1).transpose(1, 2)

        attended = F.scaled_dot_product_attention(split(self.to_q), split(self.to_k), split(self.to_v))
        out = self.to_out[0](attended.transpose(1, 2).reshape(batch * positions, num_frames, channels))
        return out.view(batch, positions, num_frames, channels).transpose(1, 2).reshape(frames_batch, positions, channels)


class GatedGeluProjection(nn.Module):
    """GEGLU: a linear map to twice the width, one half gating the other through GELU."""

    def __init__(self, channels: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(channels, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, channels: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GatedGeluProjection(channels, channels * mult), nn.Dropout(0.0), nn.Linear(channels * mult, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TemporalBlock(nn.Module):
    """Two pre-norm temporal attention layers and a pre-norm feed-forward, each residual."""

    def __init__(self, channels: int, heads: int, max_frames: int, num_attention: int = 2):
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalAttention(channels, heads, max_frames) for _ in range(num_attention)])
        self.norms = nn.ModuleList([nn.LayerNorm(channels) for _ in range(num_attention)])
        self.ff = FeedForward(channels)
        self.ff_norm = nn.LayerNorm(channels)

    def forward(self, tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms, strict=True):
            tokens = tokens + attention(norm(tokens), num_frames)
        return tokens + self.ff(self.ff_norm(tokens))


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, norm_groups: int, max_frames: int):
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalBlock(channels, heads, max_frames)])
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)  # a fresh module starts as the identity, as in training
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, features: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``features`` ``(B·T, C, H, W)`` → same shape, mixed across the T frames of each clip."""
        frames_batch, channels, height, width = features.shape
        tokens = self.norm(features).permute(0, 2, 3, 1).reshape(frames_batch, height * width, channels)
        tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens, num_frames)
        tokens = self.proj_out(tokens)
        return features + tokens.reshape(frames_batch, height, width, channels).permute(0, 3, 1, 2)


class TemporalModule(nn.Module):
    def __init__(self, channels: int, heads: int, norm_groups: int, max_frames: int):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, heads, norm_groups, max_frames)

    def forward(self, features: torch.Tensor, num_frames: int) -> torch.Tensor:
        return self.temporal_transformer(features, num_frames)


# -- the model --------------------------------------------------------------------------------------
def _reference_position_embeddings(config):
    """transformers' DINOv2 embeddings, interpolating positions as the released encoder does.

    The reference DINOv2 resizes the 37×37 position grid by a scale factor of
    ``(patches + 0.1) / 37`` per side; transformers resizes to the target size. The weights were
    trained with the former, so it is used here.
    """
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings

    class ReferencePositionEmbeddings(Dinov2Embeddings):
        def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
            num_patches, num_positions = embeddings.shape[1] - 1, self.position_embeddings.shape[1] - 1
            if num_patches == num_positions and height == width:
                return self.position_embeddings
            side = int(math.sqrt(num_positions))
            grid = self.position_embeddings[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
            scale = ((height // self.patch_size + 0.1) / side, (width // self.patch_size + 0.1) / side)
            grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", align_corners=False)
            patches = grid.permute(0, 2, 3, 1).reshape(1, -1, grid.shape[1]).to(self.position_embeddings.dtype)
            return torch.cat([self.position_embeddings[:, :1], patches], dim=1)

    return ReferencePositionEmbeddings(config)


class VideoDepthAnything(OfficialCheckpointModel):
    """Video Depth Anything: ``forward`` maps normalised windows to relative depth (larger = nearer);
    :meth:`predict_video` runs the whole reference scheme on a uint8 clip."""

    config_class = VideoDepthAnythingConfig
    official_files = tuple(f"video_depth_anything_{encoder}.pth" for encoder in VARIANTS)

    def __init__(self, config: VideoDepthAnythingConfig):
        super().__init__(config)
        from transformers import DepthAnythingConfig, Dinov2Config
        from transformers.models.depth_anything.modeling_depth_anything import DepthAnythingDepthEstimationHead, DepthAnythingNeck
        from transformers.models.dinov2.modeling_dinov2 import Dinov2Backbone

        if config.num_frames < WINDOW or len(config.out_channels) != 4 or len(config.out_indices) != 4:
            raise DittoError(f"video-depth-anything config: needs 4 out_channels / out_indices and num_frames ≥ {WINDOW}")
        encoder = Dinov2Config(
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            mlp_ratio=4,
            image_size=config.image_size,
            patch_size=PATCH_SIZE,
            layerscale_value=1.0,
            out_indices=list(config.out_indices),
            reshape_hidden_states=False,
            apply_layernorm=True,
        )
        head = DepthAnythingConfig(
            backbone_config=encoder,
            patch_size=PATCH_SIZE,
            reassemble_hidden_size=config.hidden_size,
            neck_hidden_sizes=list(config.out_channels),
            fusion_hidden_size=config.features,
            head_hidden_size=32,
            depth_estimation_type="relative",
        )
        self.backbone = Dinov2Backbone(encoder)
        self.backbone.embeddings = _reference_position_embeddings(encoder)
        self.neck = DepthAnythingNeck(head)
        self.head = DepthAnythingDepthEstimationHead(head)
        temporal_channels = (config.out_channels[2], config.out_channels[3], config.features, config.features)
        self.motion_modules = nn.ModuleList(
            [
                TemporalModule(channels, config.temporal_heads, config.temporal_norm_groups, config.num_frames)
                for channels in temporal_channels
            ]
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Normalised frames ``(B, T, 3, H, W)`` (sides multiples of 14) → relative depth ``(B, T, H, W)``."""
        batch, frames, _, height, width = pixel_values.shape
        patch_height, patch_width = height // PATCH_SIZE, width // PATCH_SIZE
        hidden = self.backbone(pixel_values.flatten(0, 1)).feature_maps
        maps = self.neck.reassemble_stage(list(hidden), patch_height, patch_width)
        maps[2] = self.motion_modules[0](maps[2], frames)
        maps[3] = self.motion_modules[1](maps[3], frames)
        maps = [conv(feature) for conv, feature in zip(self.neck.convs, maps, strict=True)]
        fusion = self.neck.fusion_stage.layers
        path = self.motion_modules[2](fusion[0](maps[3], size=maps[2].shape[2:]), frames)
        path = self.motion_modules[3](fusion[1](path, maps[2], size=maps[1].shape[2:]), frames)
        depths = []
        for start in range(0, path.shape[0], MICRO_BATCH):
            part = slice(start, start + MICRO_BATCH)
            fine = fusion[2](path[part], maps[1][part], size=maps[0].shape[2:])
            fine = fusion[3](fine, maps[0][part])
            depths.append(self.head([fine], patch_height, patch_width))
        depth = torch.cat(depths)[:, None]
        if depth.shape[-2:] != (height, width):
            depth = F.interpolate(depth, size=(height, width), mode="bilinear", align_corners=True)
        return F.relu(depth)[:, 0].unflatten(0, (batch, frames))

    @torch.inference_mode()
    def predict_video(self, frames: torch.Tensor, input_size: int = 518) -> torch.Tensor:
        """Relative depth ``(T, H, W)`` (float32, CPU, larger = nearer) of uint8 frames ``(T, 3, H, W)``.

        Frames are resized (bicubic) so that both sides are at least ``input_size`` and multiples of
        14, run in the reference windows, brought back to frame size and aligned (module docstring).
        """
        num_frames, _, height, width = frames.shape
        if num_frames < 1:
            raise DittoError("video-depth-anything: the clip has no frames")
        work_width, work_height = working_size(width, height, input_size)
        parameter = next(self.parameters())
        mean = torch.tensor(IMAGENET_MEAN, device=parameter.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=parameter.device).view(1, 3, 1, 1)

        def window_depths() -> Iterator[torch.Tensor]:
            for indices in window_frame_indices(num_frames):
                clip = frames[indices].to(parameter.device, torch.float32) / 255.0
                clip = F.interpolate(clip, size=(work_height, work_width), mode="bicubic", align_corners=False)
                clip = ((clip - mean) / std).to(parameter.dtype)
                depth = self(clip[None])[0].float()
                depth = F.interpolate(depth[:, None], size=(height, width), mode="bilinear", align_corners=True)[:, 0]
                yield depth.cpu()

        return align_windows(window_depths(), num_frames)

    # -- official tensor names -----------------------------------------------------------------
    @classmethod
    def from_official(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        renamed = {}
        for key, value in state.items():
            fused = _OFFICIAL_QKV.match(key)
            if fused is None:
                renamed[_rename(key, _OFFICIAL_TO_OURS)] = value
                continue
            for which, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                renamed[f"backbone.encoder.layer.{fused['i']}.attention.{which}_proj.{fused['p']}"] = part
        return renamed

    @classmethod
    def to_official(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        renamed = {}
        for key, value in state.items():
            split = _OURS_QKV.match(key)
            if split is None:
                renamed[_rename(key, _OURS_TO_OFFICIAL)] = value
            elif split["which"] == "q":
                layer, suffix = split["i"], split["p"]
                parts = [state[f"backbone.encoder.layer.{layer}.attention.{which}_proj.{suffix}"] for which in "qkv"]
                renamed[f"pretrained.blocks.{layer}.attn.qkv.{suffix}"] = torch.cat(parts, dim=0)
        return renamed

    @classmethod
    def config_from_official(cls, state: dict[str, torch.Tensor], filename: str) -> VideoDepthAnythingConfig:
        """The released size whose encoder width the checkpoint has."""
        if "pretrained.cls_token" not in state:
            raise DittoError(f"{filename}: not a Video Depth Anything checkpoint (no pretrained.cls_token)")
        width = state["pretrained.cls_token"].shape[-1]
        for config, _ in VARIANTS.values():
            if config.hidden_size == width:
                return config
        raise DittoError(
            f"{filename}: encoder width {width} is not a released Video Depth Anything size "
            f"({', '.join(str(config.hidden_size) for config, _ in VARIANTS.values())}); pass its config to convert_checkpoint"
        )


# -- name mapping: (official template, ours template); {x} matches one dotted component --------------
_PAIRS = [
    ("pretrained.cls_token", "backbone.embeddings.cls_token"),
    ("pretrained.pos_embed", "backbone.embeddings.position_embeddings"),
    ("pretrained.mask_token", "backbone.embeddings.mask_token"),
    ("pretrained.patch_embed.proj.{p}", "backbone.embeddings.patch_embeddings.projection.{p}"),
    ("pretrained.blocks.{i}.norm1.{p}", "backbone.encoder.layer.{i}.norm1.{p}"),
    ("pretrained.blocks.{i}.norm2.{p}", "backbone.encoder.layer.{i}.norm2.{p}"),
    ("pretrained.blocks.{i}.attn.proj.{p}", "backbone.encoder.layer.{i}.attention.o_proj.{p}"),
    ("pretrained.blocks.{i}.ls1.gamma", "backbone.encoder.layer.{i}.layer_scale1.lambda1"),
    ("pretrained.blocks.{i}.ls2.gamma", "backbone.encoder.layer.{i}.layer_scale2.lambda1"),
    ("pretrained.blocks.{i}.mlp.{m}.{p}", "backbone.encoder.layer.{i}.mlp.{m}.{p}"),
    ("pretrained.norm.{p}", "backbone.layernorm.{p}"),
    ("head.projects.{i}.{p}", "neck.reassemble_stage.layers.{i}.projection.{p}"),
    ("head.resize_layers.{i}.{p}", "neck.reassemble_stage.layers.{i}.resize.{p}"),
    *[(f"head.scratch.layer{k}_rn.{{p}}", f"neck.convs.{k - 1}.{{p}}") for k in range(1, 5)],
    *[(f"head.scratch.refinenet{k}.out_conv.{{p}}", f"neck.fusion_stage.layers.{4 - k}.projection.{{p}}") for k in range(1, 5)],
    *[
        (
            f"head.scratch.refinenet{k}.resConfUnit{{u}}.conv{{c}}.{{p}}",
            f"neck.fusion_stage.layers.{4 - k}.residual_layer{{u}}.convolution{{c}}.{{p}}",
        )
        for k in range(1, 5)
    ],
    ("head.scratch.output_conv1.{p}", "head.conv1.{p}"),
    ("head.scratch.output_conv2.0.{p}", "head.conv2.{p}"),
    ("head.scratch.output_conv2.2.{p}", "head.conv3.{p}"),
    ("head.motion_modules.{rest}", "motion_modules.{rest}"),
]


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for name in re.findall(r"\{(\w+)\}", template):
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>.+)" if name == "rest" else f"(?P<{name}>[^.]+)")
    return re.compile(pattern + r"\Z")


_OFFICIAL_TO_OURS = [(_compile(official), ours) for official, ours in _PAIRS]
_OURS_TO_OFFICIAL = [(_compile(ours), official) for official, ours in _PAIRS]
#: The encoder's fused attention input projection (official) and its three parts (transformers).
_OFFICIAL_QKV = re.compile(r"pretrained\.blocks\.(?P<i>\d+)\.attn\.qkv\.(?P<p>\w+)\Z")
_OURS_QKV = re.compile(r"backbone\.encoder\.layer\.(?P<i>\d+)\.attention\.(?P<which>[qkv])_proj\.(?P<p>\w+)\Z")


def _rename(key: str, rules) -> str:
    for pattern, template in rules:
        match = pattern.match(key)
        if match:
            return template.format(**match.groupdict())
    raise DittoError(f"video-depth-anything: no mapping for tensor {key!r}")


# -- the long-video scheme --------------------------------------------------------------------------
def working_size(width: int, height: int, input_size: int = 518) -> tuple[int, int]:
    """(width, height) the model sees: both sides ≥ ``input_size``, aspect kept, multiples of 14.

    Clips wider than 16:9 get a proportionally smaller ``input_size`` (the reference's memory rule).
    """
    ratio = max(width, height) / min(width, height)
    if ratio > 1.78:
        input_size = round(int(input_size * 1.777 / ratio) / PATCH_SIZE) * PATCH_SIZE
    scale = max(input_size / height, input_size / width)

    def side(length: float) -> int:
        rounded = round(length / PATCH_SIZE) * PATCH_SIZE
        return rounded if rounded >= input_size else math.ceil(length / PATCH_SIZE) * PATCH_SIZE

    return side(scale * width), side(scale * height)


def window_frame_indices(num_frames: int) -> list[list[int]]:
    """The clip frame each window position holds: windows of 32 every 22 frames, the clip padded
    with its last frame, and positions 0–9 of every later window taken from the previous window's
    keyframe positions (0, 12, 24–31)."""
    step = WINDOW - OVERLAP
    windows: list[list[int]] = []
    for start in range(0, num_frames, step):
        indices = [min(start + offset, num_frames - 1) for offset in range(WINDOW)]
        if windows:
            indices[:OVERLAP] = [windows[-1][position] for position in KEYFRAMES]
        windows.append(indices)
    return windows


def fit_scale_shift(prediction: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """Least-squares ``(scale, shift)`` with ``scale * prediction + shift ≈ reference`` (float64).

    A flat prediction (no variance) gets scale 1 and only the shift.
    """
    x, y = prediction.double().flatten(), reference.double().flatten()
    x_mean, y_mean = x.mean(), y.mean()
    variance = (x - x_mean).square().mean()
    if variance <= 1e-12:
        return 1.0, float(y_mean - x_mean)
    scale = ((x - x_mean) * (y - y_mean)).mean() / variance
    return float(scale), float(y_mean - scale * x_mean)


def align_windows(windows: Iterable[torch.Tensor], num_frames: int) -> torch.Tensor:
    """Chain per-window depths ``(32, H, W)`` (in :func:`window_frame_indices` order) into ``(num_frames, H, W)``.

    The first window is kept as is. Each later window is mapped by the scale and shift that best
    fit its two keyframe positions (0, 1) to the references — the clip's first frame and the
    previous window's frame 12, both as aligned before — and clamped at 0; its positions 2–9 are
    cross-faded into the 8 frames already produced (weight 0 → 1 for the new window), and its
    positions 10–31 are appended.
    """
    aligned: list[torch.Tensor] = []
    references: list[torch.Tensor] = []
    for depth in windows:
        if not aligned:
            aligned.extend(depth.unbind(0))
            references = [depth[position] for position in ALIGNMENT_KEYFRAMES]
            continue
        keyframes = len(ALIGNMENT_KEYFRAMES)
        scale, shift = fit_scale_shift(depth[:keyframes], torch.stack(references))
        fitted = (depth * scale + shift).clamp_(min=0)
        for index in range(CROSSFADE):
            weight = index / (CROSSFADE - 1)
            previous = aligned[len(aligned) - CROSSFADE + index]
            aligned[len(aligned) - CROSSFADE + index] = previous * (1 - weight) + fitted[keyframes + index] * weight
        aligned.extend(fitted[OVERLAP:].unbind(0))
        references = [references[0], *(fitted[position] for position in ALIGNMENT_KEYFRAMES[1:])]
    return torch.stack(aligned[:num_frames])
