"""Render the bundled sample clips: short, varied synthetic scenes that exercise the pipeline.

* ``orbit.mp4``    landscape, textured ground with a panning camera and shapes moving across it
* ``zoom.mp4``     landscape, the camera zooms into a checkerboard while a ball bounces
* ``static.mp4``   landscape, nothing moves (what the motion filter must reject)
* ``portrait.mp4`` portrait, a vertical pan over stripes with a rising square

Run ``python -m ditto_hf.samples.render [OUT_DIR]``; the output is deterministic.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from ditto_hf.samples import sample_dir
from ditto_hf.video import write_video

FPS = 24
NUM_FRAMES = 48


def _grid(width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    return xs, ys


def _texture(xs: torch.Tensor, ys: torch.Tensor, seed: int) -> torch.Tensor:
    """A smooth colourful texture defined everywhere on the plane, so the camera can move over it."""
    generator = torch.Generator().manual_seed(seed)
    waves = torch.rand(3, 4, 3, generator=generator)  # channel, wave, (fx, fy, phase)
    image = torch.zeros(3, *xs.shape)
    for c in range(3):
        for fx, fy, phase in waves[c]:
            image[c] += torch.sin(xs * (0.02 + 0.08 * fx) + ys * (0.02 + 0.08 * fy) + 6.28 * phase)
    return (image / 4 + 1) / 2


def _disc(xs, ys, cx, cy, radius):
    return ((xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2).float()


def _box(xs, ys, cx, cy, half):
    return (((xs - cx).abs() <= half) & ((ys - cy).abs() <= half)).float()


def _paint(image: torch.Tensor, mask: torch.Tensor, colour: tuple[float, float, float]) -> torch.Tensor:
    return image * (1 - mask) + torch.tensor(colour).view(3, 1, 1) * mask


def _to_uint8(frames: list[torch.Tensor]) -> torch.Tensor:
    return (torch.stack(frames).clamp(0, 1) * 255).round().to(torch.uint8)  # (T, C, H, W)


def orbit(width: int = 320, height: int = 192) -> torch.Tensor:
    xs, ys = _grid(width, height)
    frames = []
    for t in range(NUM_FRAMES):
        pan = 3.0 * t
        image = _texture(xs + pan, ys + 0.5 * pan, seed=1)
        image = _paint(image, _disc(xs, ys, 40 + 5 * t, height / 2 + 30 * math.sin(t / 6), 22), (0.9, 0.2, 0.1))
        image = _paint(image, _box(xs, ys, width - 40 - 3 * t, 50 + 2 * t, 16), (0.1, 0.3, 0.9))
        frames.append(image)
    return _to_uint8(frames)


def zoom(width: int = 320, height: int = 192) -> torch.Tensor:
    xs, ys = _grid(width, height)
    frames = []
    for t in range(NUM_FRAMES):
        scale = 1.0 + 0.02 * t
        u, v = (xs - width / 2) / scale, (ys - height / 2) / scale
        checker = ((torch.floor(u / 16) + torch.floor(v / 16)) % 2) * 0.6 + 0.2
        image = torch.stack([checker, checker * 0.9, checker * 0.7])
        bounce = abs(math.sin(t / 7)) * (height - 60)
        image = _paint(image, _disc(xs, ys, 60 + 4 * t, height - 30 - bounce, 18), (0.2, 0.8, 0.3))
        frames.append(image)
    return _to_uint8(frames)


def static(width: int = 320, height: int = 192) -> torch.Tensor:
    xs, ys = _grid(width, height)
    image = _texture(xs, ys, seed=3)
    image = _paint(image, _box(xs, ys, width / 2, height / 2, 30), (0.8, 0.7, 0.1))
    return _to_uint8([image] * NUM_FRAMES)


def portrait(width: int = 192, height: int = 320) -> torch.Tensor:
    xs, ys = _grid(width, height)
    frames = []
    for t in range(NUM_FRAMES):
        stripes = (torch.sin((ys + 4 * t) / 9) + 1) / 2
        image = torch.stack([stripes * 0.8 + 0.1, 0.5 * torch.ones_like(stripes), 1 - stripes * 0.7])
        image = _paint(image, _box(xs, ys, width / 2 + 30 * math.sin(t / 5), height - 40 - 5 * t, 20), (0.95, 0.95, 0.2))
        frames.append(image)
    return _to_uint8(frames)


SCENES = {"orbit": orbit, "zoom": zoom, "static": static, "portrait": portrait}


def render(out_dir: Path) -> list[Path]:
    """Write every scene to ``out_dir`` and return the paths."""
    return [write_video(out_dir / f"{name}.mp4", scene(), FPS, layout="TCHW", crf=28, preset="slow") for name, scene in SCENES.items()]


if __name__ == "__main__":
    for path in render(Path(sys.argv[1]) if len(sys.argv) > 1 else sample_dir()):
        print(path, path.stat().st_size, "bytes")
