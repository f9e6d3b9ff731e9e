"""CoTracker3 (Karaev et al., arXiv 2410.11831): joint tracking of many points, with visibility.

A convolutional encoder turns every frame into stride-4 features (L2-normalised, 4-level average
pyramid). Each query point carries a 7×7 patch of features from its query frame; at every
refinement iteration the current track estimate is scored by 4D correlation between that patch
and a 7×7 neighbourhood around the estimate in every frame, at every pyramid level (an MLP embeds
each 7⁴ volume). A transformer alternating attention over time (per track) and over tracks
(through 64 learned virtual tracks) reads these correlations, the track's visibility and
confidence logits and a Fourier encoding of its frame-to-frame motion, and predicts updates of
position, visibility and confidence.

- **offline** (``scaled_offline.pth``): the whole clip in one window, the learned time embedding
  (60 frames) interpolated to the clip length; visible where sigmoid(visibility) > 0.9.
- **online** (``scaled_online.pth``): windows of 16 frames advancing by 8, each initialised with
  the previous window's estimates on the overlap; visible where
  sigmoid(visibility)·sigmoid(confidence) > 0.6.

Frames are resized to the model resolution (384×512); tracks come back in input pixels. Weights
(``facebook/cotracker3``) are **CC-BY-NC-4.0**; they load through :meth:`CoTracker3.from_pretrained`
(converted once to safetensors, see :mod:`ditto_hf.models.weights`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ditto_hf.errors import DittoError
from ditto_hf.models.weights import ArchitectureConfig, OfficialCheckpointModel

MOTION_OCTAVES = 10  # Fourier encoding of the forward/backward steps: 2^0 … 2^9
FEATURE_CHUNK = 200  # frames per encoder pass (memory, not results)
DEFAULT_VISIBILITY = {"offline": 0.9, "online": 0.6}


@dataclass
class CoTracker3Config(ArchitectureConfig):
    """Sizes of a CoTracker3 model (defaults: the released scaled models)."""

    architecture = "cotracker3"

    mode: str = "offline"
    #: Frames of the learned time embedding: 60 (offline, interpolated to the clip) or 16 (online windows).
    window_len: int = 60
    stride: int = 4
    corr_radius: int = 3
    corr_levels: int = 4
    latent_dim: int = 128
    hidden_size: int = 384
    num_heads: int = 8
    time_depth: int = 3
    space_depth: int = 3
    num_virtual_tracks: int = 64
    corr_hidden_size: int = 384
    corr_embed_dim: int = 256
    mlp_ratio: float = 4.0
    #: (height, width) the frames are resized to.
    model_resolution: tuple[int, ...] = (384, 512)

    @property
    def input_dim(self) -> int:
        """Per track and frame: visibility, confidence, correlation embeddings, motion encoding."""
        return 2 + self.corr_levels * self.corr_embed_dim + 4 * (1 + 2 * MOTION_OCTAVES)


# -- building blocks --------------------------------------------------------------------------------
class Mlp(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None, approximate: str = "none"):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate=approximate)
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ResidualBlock(nn.Module):
    """Two 3×3 convolutions with instance norm; a strided 1×1 projection on the skip when downsampling."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1)
        self.norm1, self.norm2 = nn.InstanceNorm2d(planes), nn.InstanceNorm2d(planes)
        self.downsample = (
            None if stride == 1 else nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride), nn.InstanceNorm2d(planes))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class BasicEncoder(nn.Module):
    """Frames → features at 1/stride resolution: four residual stages (1/2 … 1/16) fused at 1/stride."""

    def __init__(self, output_dim: int = 128, stride: int = 4):
        super().__init__()
        self.stride = stride
        widths = (output_dim // 2, output_dim // 4 * 3, output_dim, output_dim)
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3)
        self.norm1 = nn.InstanceNorm2d(widths[0])
        stages, in_planes = [], widths[0]
        for width, stage_stride in zip(widths, (1, 2, 2, 2), strict=True):
            stages.append(nn.Sequential(ResidualBlock(in_planes, width, stage_stride), ResidualBlock(width, width)))
            in_planes = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.conv2 = nn.Conv2d(sum(widths), output_dim * 2, kernel_size=3, padding=1)
        self.norm2 = nn.InstanceNorm2d(output_dim * 2)
        self.conv3 = nn.Conv2d(output_dim * 2, output_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2] // self.stride, x.shape[-1] // self.stride)
        x = F.relu(self.norm1(self.conv1(x)))
        outputs = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            outputs.append(F.interpolate(x, size, mode="bilinear", align_corners=True))
        x = F.relu(self.norm2(self.conv2(torch.cat(outputs, dim=1))))
        return self.conv3(x)


class Attention(nn.Module):
    def __init__(self, query_dim: int, context_dim: int | None = None, num_heads: int = 8):
        super().__init__()
        self.heads = num_heads
        self.to_q = nn.Linear(query_dim, query_dim)
        self.to_kv = nn.Linear(context_dim or query_dim, query_dim * 2)
        self.to_out = nn.Linear(query_dim, query_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        batch, length, channels = x.shape

        def heads(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.view(batch, tensor.shape[1], self.heads, channels // self.heads).transpose(1, 2)

        key, value = self.to_kv(context).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(heads(self.to_q(x)), heads(key), heads(value))
        return self.to_out(out.transpose(1, 2).reshape(batch, length, channels))


class AttnBlock(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads=num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), approximate="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CrossAttnBlock(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.norm_context = nn.LayerNorm(hidden_size)
        self.cross_attn = Attention(hidden_size, hidden_size, num_heads=num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), approximate="tanh")

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.cross_attn(self.norm1(x), self.norm_context(context))
        return x + self.mlp(self.norm2(x))


class UpdateFormer(nn.Module):
    """Attention over time per track, then over tracks through learned virtual tracks."""

    def __init__(self, config: CoTracker3Config):
        super().__init__()
        hidden, heads, ratio = config.hidden_size, config.num_heads, config.mlp_ratio
        if config.time_depth % config.space_depth:
            raise DittoError("cotracker3 config: time_depth must be a multiple of space_depth")
        self.num_virtual_tracks = config.num_virtual_tracks
        self.input_transform = nn.Linear(config.input_dim, hidden)
        self.flow_head = nn.Linear(hidden, 2)
        self.vis_conf_head = nn.Linear(hidden, 2)
        self.virtual_tracks = nn.Parameter(torch.randn(1, config.num_virtual_tracks, 1, hidden))
        self.time_blocks = nn.ModuleList([AttnBlock(hidden, heads, ratio) for _ in range(config.time_depth)])
        self.space_virtual_blocks = nn.ModuleList([AttnBlock(hidden, heads, ratio) for _ in range(config.space_depth)])
        self.space_point2virtual_blocks = nn.ModuleList([CrossAttnBlock(hidden, heads, ratio) for _ in range(config.space_depth)])
        self.space_virtual2point_blocks = nn.ModuleList([CrossAttnBlock(hidden, heads, ratio) for _ in range(config.space_depth)])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, T, input_dim)`` → ``(B, N, T, 4)``: Δx, Δy, Δvisibility, Δconfidence."""
        tokens = self.input_transform(tokens)
        batch, num_points, frames, hidden = tokens.shape
        tokens = torch.cat([tokens, self.virtual_tracks.expand(batch, -1, frames, -1)], dim=1)
        tracks = tokens.shape[1]
        every = len(self.time_blocks) // len(self.space_virtual_blocks)
        for index, time_block in enumerate(self.time_blocks):
            tokens = time_block(tokens.reshape(batch * tracks, frames, hidden)).view(batch, tracks, frames, hidden)
            if index % every:
                continue
            space = index // every
            across = tokens.transpose(1, 2).reshape(batch * frames, tracks, hidden)
            points, virtual = across[:, :num_points], across[:, num_points:]
            virtual = self.space_virtual2point_blocks[space](virtual, points)
            virtual = self.space_virtual_blocks[space](virtual)
            points = self.space_point2virtual_blocks[space](points, virtual)
            tokens = torch.cat([points, virtual], dim=1).view(batch, frames, tracks, hidden).transpose(1, 2)
        tokens = tokens[:, :num_points]
        return torch.cat([self.flow_head(tokens), self.vis_conf_head(tokens)], dim=-1)


# -- sampling helpers (pixel-centre coordinates: 0 … size-1, border padding) ----------------------------
def sample_features(features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``features`` ``(B, C, H, W)`` at ``coords`` ``(B, …, 2)`` (x, y) → ``(B, …, C)``."""
    height, width = features.shape[-2:]
    scale = coords.new_tensor([2 / max(width - 1, 1), 2 / max(height - 1, 1)])
    grid = (coords * scale - 1).reshape(coords.shape[0], -1, 1, 2)
    sampled = F.grid_sample(features, grid.to(features.dtype), mode="bilinear", padding_mode="border", align_corners=True)
    return sampled[..., 0].transpose(1, 2).reshape(*coords.shape[:-1], features.shape[1])


def neighbourhood(radius: int, device=None) -> torch.Tensor:
    """The ``(2r+1)²`` offsets around a point, ``(2r+1, 2r+1, 2)`` (x, y); x varies along the first axis."""
    steps = torch.linspace(-radius, radius, 2 * radius + 1, device=device)
    x_offsets, y_offsets = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([x_offsets, y_offsets], dim=-1)


def fourier_encoding(x: torch.Tensor, octaves: int = MOTION_OCTAVES) -> torch.Tensor:
    """``x`` followed by sin and cos of ``x·2^k`` for k < ``octaves`` (all sines first, then all cosines)."""
    scales = 2.0 ** torch.arange(octaves, device=x.device, dtype=x.dtype)
    scaled = (x[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([x, torch.sin(torch.cat([scaled, scaled + 0.5 * math.pi], dim=-1))], dim=-1)


def sincos_time_embedding(channels: int, frames: int) -> torch.Tensor:
    """``(1, frames, channels)``: sines then cosines of the frame index at geometric frequencies."""
    omega = 1.0 / 10000 ** (torch.arange(channels // 2, dtype=torch.float64) / (channels / 2.0))
    angles = torch.arange(frames, dtype=torch.float64)[:, None] * omega[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)[None].float()


def carry_over(estimate: torch.Tensor, start: int, overlap: int, window: int) -> torch.Tensor:
    """A window's initial estimate: the ``overlap`` frames from ``start`` on, the last one held to ``window`` frames."""
    held = estimate[:, start : start + overlap]
    return torch.cat([held, held[:, -1:].expand(-1, window - overlap, -1, -1)], dim=1)


# -- the model --------------------------------------------------------------------------------------
class CoTracker3(OfficialCheckpointModel):
    """CoTracker3 offline / online (``config.mode``). :meth:`track` is the whole predictor; ``forward``
    tracks queries ``(t, x, y)`` through a clip already at the model resolution."""

    config_class = CoTracker3Config
    official_files = ("scaled_offline.pth", "scaled_online.pth", "baseline_offline.pth", "baseline_online.pth")

    def __init__(self, config: CoTracker3Config):
        super().__init__(config)
        if config.mode not in DEFAULT_VISIBILITY:
            raise DittoError(f"cotracker3 config: mode must be 'offline' or 'online', got {config.mode!r}")
        self.fnet = BasicEncoder(config.latent_dim, config.stride)
        self.updateformer = UpdateFormer(config)
        self.corr_mlp = Mlp((2 * config.corr_radius + 1) ** 4, config.corr_hidden_size, config.corr_embed_dim)
        self.register_buffer("time_emb", sincos_time_embedding(config.input_dim, config.window_len))

    # -- the predictor ---------------------------------------------------------------------------
    @torch.inference_mode()
    def track(self, frames: torch.Tensor, points: torch.Tensor, *, iterations: int = 6, visibility_threshold: float | None = None):
        """Track ``points`` ``(N, 2)`` (x, y pixels of frame 0) through uint8 ``frames`` ``(T, 3, H, W)``.

        Returns positions ``(T, N, 2)`` in input pixels and visibility ``(T, N)`` (bool); at frame 0
        every point is where it was queried and visible.
        """
        num_frames, _, height, width = frames.shape
        if num_frames < 2:
            raise DittoError(f"cotracker3: tracking needs at least 2 frames, got {num_frames}")
        parameter = next(self.parameters())
        model_height, model_width = self.config.model_resolution
        video = F.interpolate(frames.to(parameter.device, torch.float32), (model_height, model_width), mode="bilinear", align_corners=True)
        to_model = torch.tensor([(model_width - 1) / max(width - 1, 1), (model_height - 1) / max(height - 1, 1)], device=parameter.device)
        queries = torch.cat([torch.zeros_like(points[:, :1]), points], dim=-1).to(parameter.device, torch.float32)
        queries[:, 1:] *= to_model
        coords, visibility, confidence = self(video[None].to(parameter.dtype), queries[None], iterations=iterations)
        coords, visibility, confidence = coords[0].float(), visibility[0].float(), confidence[0].float()
        threshold = DEFAULT_VISIBILITY[self.config.mode] if visibility_threshold is None else visibility_threshold
        score = visibility if self.config.mode == "offline" else visibility * confidence
        visible = score > threshold
        positions = coords / to_model
        positions[0], visible[0] = points.to(positions), True  # the query frame is known exactly
        return positions, visible

    def forward(self, video: torch.Tensor, queries: torch.Tensor, iterations: int = 6):
        """``video`` ``(B, T, 3, H, W)`` in 0–255 and ``queries`` ``(B, N, 3)`` (frame, x, y) →
        positions ``(B, T, N, 2)``, visibility and confidence probabilities ``(B, T, N)``."""
        stride = self.config.stride
        batch, frames, channels, height, width = video.shape
        if height % stride or width % stride:
            raise DittoError(f"cotracker3: frame size {width}×{height} is not a multiple of the stride {stride}")
        window = frames if self.config.mode == "offline" else self.config.window_len
        step = window // 2
        padding = 0 if self.config.mode == "offline" else (window - frames % window) % window
        if padding:
            video = torch.cat([video, video[:, -1:].expand(-1, padding, -1, -1, -1)], dim=1)
        pyramid = self.feature_pyramid(2 * (video / 255.0) - 1.0)
        query_frames, query_coords = queries[..., 0].long(), queries[..., 1:3] / stride
        supports = [self.track_support(level, query_frames, query_coords / 2**index) for index, level in enumerate(pyramid)]

        num_points = queries.shape[1]
        coords_out = video.new_zeros(batch, frames, num_points, 2)
        vis_out, conf_out = video.new_zeros(batch, frames, num_points), video.new_zeros(batch, frames, num_points)
        coords = query_coords[:, None].expand(batch, window, num_points, 2).clone()
        vis, conf = video.new_zeros(batch, window, num_points, 1), video.new_zeros(batch, window, num_points, 1)
        num_windows = 1 if self.config.mode == "offline" else max(1, (frames - window + step - 1) // step + 1)
        for start in range(0, step * num_windows, step):
            if start > 0:  # carry the previous window's estimates over the overlap, then hold the last one
                overlap = window - step
                carried = query_frames[:, None, :, None] < start + overlap
                coords = torch.where(carried, carry_over(coords_out / stride, start, overlap, window), coords)
                vis = torch.where(carried, carry_over(vis_out[..., None], start, overlap, window), vis)
                conf = torch.where(carried, carry_over(conf_out[..., None], start, overlap, window), conf)
            active = (query_frames < start + window)[:, None, :, None]
            window_pyramid = [level[:, start : start + window] for level in pyramid]
            window_supports = [support * active for support in supports]
            new_coords, new_vis, new_conf = self.refine(window_pyramid, window_supports, coords, vis, conf, iterations)
            kept = min(frames - start, window)
            coords_out[:, start : start + kept] = new_coords[:, :kept] * stride
            vis_out[:, start : start + kept] = new_vis[:, :kept, :, 0]
            conf_out[:, start : start + kept] = new_conf[:, :kept, :, 0]
        return coords_out, torch.sigmoid(vis_out), torch.sigmoid(conf_out)

    def feature_pyramid(self, video: torch.Tensor) -> list[torch.Tensor]:
        """``(B, T, 3, H, W)`` in [-1, 1] → ``corr_levels`` maps ``(B, T, C, H/stride/2^l, W/stride/2^l)``."""
        batch, frames = video.shape[:2]
        flat = video.flatten(0, 1)
        features = torch.cat([self.fnet(flat[start : start + FEATURE_CHUNK]) for start in range(0, flat.shape[0], FEATURE_CHUNK)])
        norm = features.square().sum(dim=1, keepdim=True).clamp_min(1e-12).sqrt()
        features = (features / norm).to(video.dtype)
        levels = [features]
        for _ in range(self.config.corr_levels - 1):
            levels.append(F.avg_pool2d(levels[-1], 2, stride=2))
        return [level.unflatten(0, (batch, frames)) for level in levels]

    def track_support(self, features: torch.Tensor, query_frames: torch.Tensor, query_coords: torch.Tensor) -> torch.Tensor:
        """Features ``(B, (2r+1)², N, C)`` of the neighbourhood of each query in its query frame."""
        batch, frames, channels = features.shape[:3]
        offsets = neighbourhood(self.config.corr_radius, features.device).view(-1, 2)
        points = query_coords[:, None] + offsets[None, :, None]  # (B, R, N, 2)
        times = query_frames[:, None].expand(-1, offsets.shape[0], -1).to(points.dtype)
        grid = torch.cat([points, times[..., None]], dim=-1)  # x, y, t
        size = grid.new_tensor([2 / max(features.shape[-1] - 1, 1), 2 / max(features.shape[-2] - 1, 1), 2 / max(frames - 1, 1)])
        volume = features.permute(0, 2, 1, 3, 4)  # B C T H W
        sampled = F.grid_sample(
            volume, (grid * size - 1)[:, :, :, None].to(volume.dtype), mode="bilinear", padding_mode="border", align_corners=True
        )
        return sampled[..., 0].permute(0, 2, 3, 1)

    def refine(self, pyramid, supports, coords, vis, conf, iterations):
        """Iterative updates of a window's tracks ``(B, S, N, 2)`` (feature units), visibility and
        confidence logits ``(B, S, N, 1)``."""
        config = self.config
        batch, frames, num_points = coords.shape[:3]
        side = 2 * config.corr_radius + 1
        offsets = neighbourhood(config.corr_radius, coords.device)
        motion_scale = coords.new_tensor([config.model_resolution[1], config.model_resolution[0]]) / config.stride
        time_embedding = self.time_embedding(frames).to(coords.dtype)
        for _ in range(iterations):
            embeddings = []
            for index, (level, support) in enumerate(zip(pyramid, supports, strict=True)):
                around = coords.reshape(batch * frames, num_points, 1, 1, 2) / 2**index + offsets
                window = sample_features(level.flatten(0, 1), around).view(batch, frames, num_points, side, side, -1)
                patch = support.view(batch, side, side, num_points, -1).permute(0, 3, 1, 2, 4)
                volume = torch.einsum("btnhwc,bnijc->btnhwij", window, patch)
                embeddings.append(self.corr_mlp(volume.reshape(batch * frames * num_points, side**4)))
            correlation = torch.cat(embeddings, dim=-1).view(batch, frames, num_points, -1)
            forward_steps = F.pad(coords[:, :-1] - coords[:, 1:], (0, 0, 0, 0, 0, 1))
            backward_steps = F.pad(coords[:, 1:] - coords[:, :-1], (0, 0, 0, 0, 1, 0))
            motion = fourier_encoding(torch.cat([forward_steps, backward_steps], dim=-1) / motion_scale.repeat(2))
            tokens = torch.cat([vis, conf, correlation, motion], dim=-1).transpose(1, 2) + time_embedding
            delta = self.updateformer(tokens).transpose(1, 2)  # B S N 4
            coords = coords + delta[..., :2]
            vis = vis + delta[..., 2:3]
            conf = conf + delta[..., 3:4]
        return coords, vis, conf

    def time_embedding(self, frames: int) -> torch.Tensor:
        """The learned-length time embedding, linearly resampled to ``frames`` when they differ."""
        if frames == self.time_emb.shape[1]:
            return self.time_emb
        return F.interpolate(self.time_emb.float().transpose(1, 2), size=frames, mode="linear").transpose(1, 2)

    # -- official tensor names (one typo kept on disk) ----------------------------------------
    @classmethod
    def from_official(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key.replace("updateformer.virual_tracks", "updateformer.virtual_tracks"): value for key, value in state.items()}

    @classmethod
    def to_official(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key.replace("updateformer.virtual_tracks", "updateformer.virual_tracks"): value for key, value in state.items()}

    @classmethod
    def config_from_official(cls, state: dict[str, torch.Tensor], filename: str, mode: str | None = None) -> CoTracker3Config:
        """Mode from ``mode`` or the file name (``scaled_offline.pth`` / ``scaled_online.pth``), window from ``time_emb``."""
        if "time_emb" not in state or "updateformer.virual_tracks" not in state:
            raise DittoError(f"{filename}: not a CoTracker3 checkpoint (no time_emb / updateformer.virual_tracks)")
        modes = [mode] if mode else [name for name in ("offline", "online") if name in filename]
        if len(modes) != 1:
            raise DittoError(f"{filename}: cannot tell offline from online from the file name; give the mode (--mode)")
        return CoTracker3Config(mode=modes[0], window_len=state["time_emb"].shape[1], license="CC-BY-NC-4.0")
