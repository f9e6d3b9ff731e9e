"""Point tracking for the motion filter: a pluggable :class:`PointTracker` and its backends.

- ``cotracker3`` (the paper's): CoTracker3 offline or online (:mod:`ditto_hf.models.cotracker`),
  tracks and visibility of the grid points jointly. Weights: ``facebook/cotracker3``
  (``scaled_offline.pth`` / ``scaled_online.pth``, **CC-BY-NC-4.0**), converted once to
  safetensors (``python -m ditto_hf.models.convert cotracker3 …``, or automatically on first use).
- ``raft-flow``: optical flow between consecutive frames with torchvision's RAFT, the grid points
  advected along it (bilinear sampling of the flow at each point). Points drift with flow errors
  and are not re-detected after occlusion; a point is visible until it leaves the frame.

Any tracker returning :class:`Tracks` plugs in (register it in ``TRACKERS``).

RAFT weights are loaded from safetensors only: a local directory, a ``.safetensors`` file, or a Hub
repo holding ``model.safetensors`` (a torchvision RAFT state dict). Convert torchvision's official
weights once with::

    python -m ditto_hf.generate.helpers.tracking convert OUT_DIR --variant raft_large
    python -m ditto_hf.generate.helpers.tracking convert OUT_DIR --variant raft_large --checkpoint raft_large_C_T_SKHT_V2-ff5fadd5.pth

(the first form downloads the checkpoint through torchvision; the second converts a ``.pth`` you
already have), then point the motion stage's ``model`` at ``OUT_DIR`` or at a Hub repo you uploaded
it to.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import click
import torch
import torch.nn.functional as F
from torch import nn

from ditto_hf.errors import DittoError
from ditto_hf.models.weights import WEIGHTS_NAME, load_torch_checkpoint, save_weights

RAFT_VARIANTS = ("raft_small", "raft_large")


@dataclass
class Tracks:
    """Positions ``(T, N, 2)`` in pixels (x, y) of N points over T frames, and ``visible`` ``(T, N)``."""

    positions: torch.Tensor
    visible: torch.Tensor


class PointTracker(ABC):
    """Tracks query points, given in the first frame, through a clip.

    Backends load through the model registry, so they provide ``from_pretrained(id, *, revision,
    subfolder, dtype, use_safetensors, **options)`` and register their ``name`` in ``TRACKERS``;
    ``options`` names the motion-stage settings passed to ``from_pretrained``.
    """

    name: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def track(self, frames: torch.Tensor, points: torch.Tensor) -> Tracks:
        """Track ``points`` ``(N, 2)`` (x, y pixels of frame 0) through uint8 ``frames`` ``(T, C, H, W)``."""


# -- grid, advection and score (backend-independent, vectorised) ------------------------------------
def grid_points(width: int, height: int, grid_size: int) -> torch.Tensor:
    """A ``grid_size × grid_size`` grid of (x, y) pixel positions, cell-centred inside the frame."""
    xs = (torch.arange(grid_size, dtype=torch.float32) + 0.5) * (width - 1) / grid_size
    ys = (torch.arange(grid_size, dtype=torch.float32) + 0.5) * (height - 1) / grid_size
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)


def sample_flow(flow: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample a flow field ``(2, H, W)`` at pixel positions ``(N, 2)`` → ``(N, 2)``."""
    height, width = flow.shape[-2:]
    scale = torch.tensor([max(width - 1, 1), max(height - 1, 1)], dtype=points.dtype, device=points.device)
    grid = (2 * points / scale - 1).view(1, 1, -1, 2).to(flow.dtype)
    sampled = F.grid_sample(flow[None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    return sampled[0, :, 0].T.to(points.dtype)


def advect_points(points: torch.Tensor, flows: torch.Tensor) -> Tracks:
    """Carry ``points`` ``(N, 2)`` along forward flows ``(T-1, 2, H, W)`` (frame t → t+1).

    A point that leaves the frame becomes invisible and stays where it left.
    """
    height, width = flows.shape[-2:]
    upper = torch.tensor([width - 1, height - 1], dtype=points.dtype, device=points.device)
    position = points.clone()
    visible = torch.ones(points.shape[0], dtype=torch.bool, device=points.device)
    positions, visibility = [position], [visible]
    for flow in flows:
        moved = position + sample_flow(flow, position)
        inside = ((moved >= 0) & (moved <= upper)).all(dim=-1)
        visible = visible & inside
        position = torch.where(visible[:, None], moved, position)
        positions.append(position)
        visibility.append(visible)
    return Tracks(torch.stack(positions), torch.stack(visibility))


def motion_score(tracks: Tracks, width: int, height: int) -> float:
    """Mean cumulative displacement of the visible grid points, as a fraction of the frame diagonal.

    A point's displacement is its path length over the steps where it is visible at both ends; the
    mean runs over the points visible across at least one step (0 when there are none).
    """
    positions = tracks.positions.double()  # a precision the thread count cannot change
    steps = (positions[1:] - positions[:-1]).norm(dim=-1)
    counted = tracks.visible[1:] & tracks.visible[:-1]
    seen = counted.any(dim=0)
    if not seen.any():
        return 0.0
    path_length = (steps * counted).sum(dim=0)[seen]
    diagonal = (width**2 + height**2) ** 0.5
    return float(path_length.mean() / diagonal)


# -- CoTracker3 backend -----------------------------------------------------------------------------
class CoTracker3Tracker(PointTracker, nn.Module):
    """``cotracker3``: the paper's tracker (offline or online, as the weights say).

    ``iterations`` refinement steps (the reference predictor's 6); a point counts as visible where
    the predicted probability exceeds ``visibility_threshold`` (default: 0.9 offline, 0.6 online,
    as in the reference predictors).
    """

    name = "cotracker3"
    options = ("iterations", "visibility_threshold", "cotracker_checkpoint")

    def __init__(self, model: nn.Module, *, iterations: int = 6, visibility_threshold: float | None = None):
        super().__init__()
        self.model = model
        self.iterations = iterations
        self.visibility_threshold = visibility_threshold

    @classmethod
    def from_pretrained(
        cls,
        model_id: str,
        *,
        revision: str | None = None,
        subfolder: str | None = None,
        dtype: torch.dtype | None = None,
        use_safetensors: bool = True,
        cotracker_checkpoint: str = "scaled_offline.pth",
        **options,
    ) -> CoTracker3Tracker:
        """Converted weights (folder / Hub repo) or the official ``cotracker_checkpoint`` file of ``model_id``."""
        from ditto_hf.models.cotracker import CoTracker3

        model = CoTracker3.from_pretrained(
            model_id,
            revision=revision,
            subfolder=subfolder,
            dtype=dtype,
            use_safetensors=use_safetensors,
            official_files=(cotracker_checkpoint,),
        )
        return cls(model, **options)

    def track(self, frames: torch.Tensor, points: torch.Tensor) -> Tracks:
        positions, visible = self.model.track(frames, points, iterations=self.iterations, visibility_threshold=self.visibility_threshold)
        return Tracks(positions.cpu(), visible.cpu())


# -- RAFT backend -----------------------------------------------------------------------------------
class RaftFlowTracker(PointTracker, nn.Module):
    """``raft-flow``: torchvision RAFT optical flow between consecutive frames, integrated along points.

    Frames are resized so that the short side is ``short_side`` (sides rounded to multiples of 8,
    at least 128, as RAFT needs); flows are computed ``pairs_per_batch`` frame pairs at a time with
    ``num_flow_updates`` refinement iterations, and tracks are returned in input-frame pixels.
    """

    name = "raft-flow"
    options = ("num_flow_updates", "short_side", "pairs_per_batch")

    def __init__(self, raft: nn.Module, *, num_flow_updates: int = 12, short_side: int = 360, pairs_per_batch: int = 8):
        super().__init__()
        self.raft = raft
        self.num_flow_updates = num_flow_updates
        self.short_side = short_side
        self.pairs_per_batch = pairs_per_batch

    @classmethod
    def from_pretrained(
        cls,
        model_id: str,
        *,
        revision: str | None = None,
        subfolder: str | None = None,
        dtype: torch.dtype | None = None,
        use_safetensors: bool = True,
        **options,
    ) -> RaftFlowTracker:
        """Load a torchvision RAFT state dict from ``model.safetensors`` (local or on the Hub).

        The variant (small / large) is read from the weights; ``options`` go to the constructor.
        """
        from safetensors.torch import load_file

        if not use_safetensors:
            raise ValueError("RAFT weights load from safetensors only")
        state = load_file(str(resolve_weights(model_id, revision=revision, subfolder=subfolder)))
        raft = build_raft(raft_variant(state))
        raft.load_state_dict(state)
        return cls(raft.to(dtype) if dtype is not None else raft, **options)

    def working_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) at which RAFT runs: short side ``short_side``, multiples of 8, ≥ 128."""
        scale = max(self.short_side, 128) / min(width, height)
        return tuple(max(128, round(side * scale / 8) * 8) for side in (width, height))

    @torch.inference_mode()
    def flows(self, frames: torch.Tensor) -> torch.Tensor:
        """Forward flows ``(T-1, 2, h, w)`` between consecutive uint8 frames ``(T, C, H, W)``, at working size."""
        parameter = next(self.raft.parameters())
        width, height = self.working_size(frames.shape[-1], frames.shape[-2])
        chunks = []
        for start in range(0, frames.shape[0] - 1, self.pairs_per_batch):
            clip = frames[start : start + self.pairs_per_batch + 1].to(parameter.device, torch.float32)
            clip = F.interpolate(clip, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
            clip = (clip / 127.5 - 1.0).to(parameter.dtype)  # RAFT expects [-1, 1]
            predictions = self.raft(clip[:-1], clip[1:], num_flow_updates=self.num_flow_updates)
            chunks.append(predictions[-1].float())
        return torch.cat(chunks)

    def track(self, frames: torch.Tensor, points: torch.Tensor) -> Tracks:
        height, width = frames.shape[-2:]
        if frames.shape[0] < 2:
            raise ValueError(f"tracking needs at least 2 frames, got {frames.shape[0]}")
        flows = self.flows(frames)
        # pixel centres map as in the (align_corners=False) resize: x_work + 0.5 = (x + 0.5) · w / W
        scale = torch.tensor([flows.shape[-1] / width, flows.shape[-2] / height], device=flows.device)
        tracks = advect_points((points.to(flows.device, torch.float32) + 0.5) * scale - 0.5, flows)
        return Tracks((tracks.positions + 0.5) / scale - 0.5, tracks.visible)


TRACKERS: dict[str, type[PointTracker]] = {tracker.name: tracker for tracker in (CoTracker3Tracker, RaftFlowTracker)}


def build_raft(variant: str) -> nn.Module:
    """An untrained torchvision RAFT of the given variant (``raft_small`` / ``raft_large``)."""
    from torchvision.models import optical_flow

    if variant not in RAFT_VARIANTS:
        raise DittoError(f"unknown RAFT variant {variant!r}; choose one of {', '.join(RAFT_VARIANTS)}")
    return getattr(optical_flow, variant)(weights=None)


def raft_variant(state: dict[str, torch.Tensor]) -> str:
    """Which torchvision RAFT a state dict belongs to (only ``raft_large`` has a mask predictor)."""
    return "raft_large" if any(key.startswith("mask_predictor.") for key in state) else "raft_small"


def resolve_weights(model_id: str, *, revision: str | None = None, subfolder: str | None = None) -> Path:
    """Path of the RAFT safetensors for a local file, a local directory, or a Hub repo id."""
    if not model_id:
        raise DittoError(
            "motion: no RAFT weights configured. Set the motion stage's `model` to a directory or Hub repo "
            f"holding {WEIGHTS_NAME} (a torchvision RAFT state dict); make one with "
            "`python -m ditto_hf.generate.helpers.tracking convert OUT_DIR --variant raft_large`"
        )
    path = Path(model_id).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        candidate = path / (subfolder or "") / WEIGHTS_NAME
        if not candidate.is_file():
            raise DittoError(
                f"{path}: no {WEIGHTS_NAME} found; convert RAFT weights with `python -m ditto_hf.generate.helpers.tracking convert {path}`"
            )
        return candidate
    if model_id.startswith((".", "/", "~")) or model_id.count("/") != 1:
        raise DittoError(
            f"{path}: no such RAFT weights folder or file; make it with "
            f"`python -m ditto_hf.generate.helpers.tracking convert {model_id}` (or give a Hub repo id owner/name)"
        )
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(model_id, WEIGHTS_NAME, subfolder=subfolder, revision=revision))
    except Exception as exc:
        raise DittoError(
            f"motion: cannot get {WEIGHTS_NAME} from {model_id!r} (not a local path; Hub: {type(exc).__name__}: {exc}). "
            "Point `model` at a directory or Hub repo holding converted RAFT weights."
        ) from exc


def save_raft(raft: nn.Module, directory: str | os.PathLike) -> Path:
    """Write a RAFT state dict as ``directory/model.safetensors`` (atomically) plus a small config.json."""
    variant = raft_variant(raft.state_dict())
    return save_weights(
        directory, raft.state_dict(), {"architecture": variant, "library": "torchvision"}, metadata={"architecture": variant}
    )


def convert(output: str | os.PathLike, variant: str = "raft_large", checkpoint: str | None = None) -> Path:
    """Convert torchvision RAFT weights (a ``.pth`` state dict, or torchvision's default download) to safetensors."""
    raft = build_raft(variant)
    if checkpoint:
        raft.load_state_dict(load_torch_checkpoint(checkpoint))
    else:
        from torchvision.models import optical_flow

        weights_enum = {"raft_small": optical_flow.Raft_Small_Weights, "raft_large": optical_flow.Raft_Large_Weights}[variant]
        raft.load_state_dict(weights_enum.DEFAULT.get_state_dict(progress=True, check_hash=True))
    return save_raft(raft, output)


@click.group()
def cli() -> None:
    """Point-tracker utilities."""


@cli.command("convert")
@click.argument("output", type=click.Path(file_okay=False))
@click.option("--variant", type=click.Choice(RAFT_VARIANTS), default="raft_large", show_default=True)
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="torchvision RAFT .pth (default: download it)")
def convert_command(output: str, variant: str, checkpoint: str | None) -> None:
    """Write torchvision RAFT weights as OUTPUT/model.safetensors for the motion stage."""
    click.echo(convert(output, variant, checkpoint))


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="python -m ditto_hf.generate.helpers.tracking")


if __name__ == "__main__":
    main()
