"""Stage 3: drop clips with too little motion.

The score is the mean cumulative displacement of a grid of tracked points (path length per point,
as a fraction of the frame diagonal, averaged over the grid). The paper tracks with CoTracker3;
until it is ported the tracker is pluggable and the available backend is ``raft-flow`` (torchvision
RAFT optical flow integrated along the points, see :mod:`ditto_hf.generate.helpers.tracking`). The
threshold was not published: the default is ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import Resources, Stage, StageConfig
from ditto_hf.generate.helpers.tracking import TRACKERS, grid_points, motion_score
from ditto_hf.video import read_frames


class MotionStage(Stage):
    """Track a point grid through the standardised clip; reject it if the points barely move."""

    name = "motion"
    resources = Resources(gpus=1, memory_gb=4)

    @dataclass
    class Config(StageConfig):
        """Tracker and filter settings."""

        model: ModelSpec = field(default_factory=lambda: ModelSpec("", dtype="float32"))
        """Tracker weights. For ``raft-flow``: a directory, file or Hub repo with ``model.safetensors``
        (torchvision RAFT; make it with ``python -m ditto_hf.generate.helpers.tracking convert``). No public
        repo ships these, so there is no usable default: the stage refuses to start without one."""
        tracker: str = "raft-flow"
        """Tracker backend (a key of ``ditto_hf.generate.tracking.TRACKERS``)."""
        threshold: float = 0.05
        """Minimum motion score (mean path length / frame diagonal) a clip needs to be kept."""
        grid_size: int = 16
        """Points per side of the tracked grid (``grid_size²`` points)."""
        frame_stride: int = 1
        """Track every n-th frame (flows then span n frames)."""
        short_side: int = 360
        """Short side of the frames the tracker sees (RAFT: rounded to multiples of 8, at least 128)."""
        num_flow_updates: int = 12
        """RAFT refinement iterations per frame pair."""
        pairs_per_batch: int = 8
        """Frame pairs per tracker forward pass (GPU memory vs speed)."""

        def __post_init__(self) -> None:
            if self.tracker not in TRACKERS:
                raise DittoError(f"motion.tracker {self.tracker!r} is unknown; available: {', '.join(TRACKERS)}")
            if self.grid_size < 1 or self.frame_stride < 1 or self.pairs_per_batch < 1:
                raise DittoError("motion.grid_size, frame_stride and pairs_per_batch must be at least 1")

    def setup(self) -> None:
        self.tracker = self.context.registry.load(
            TRACKERS[self.config.tracker],
            self.config.model,
            num_flow_updates=self.config.num_flow_updates,
            short_side=self.config.short_side,
            pairs_per_batch=self.config.pairs_per_batch,
        )

    def process_sample(self, sample: Sample) -> None:
        if not sample.video:
            raise DittoError(f"{sample.sample_id}: no standardised video; run the standardise stage first")
        frames = read_frames(self.context.resolve(sample.video), layout="TCHW", min_frames=2)
        frames = frames[:: self.config.frame_stride]
        height, width = frames.shape[-2:]
        tracks = self.tracker.track(frames, grid_points(width, height, self.config.grid_size))
        score = motion_score(tracks, width, height)
        sample.scores["motion"] = score
        sample.extra["motion_tracker"] = self.tracker.name
        if score < self.config.threshold:
            reason = (
                f"low motion: tracked points moved {score:.4f} of the frame diagonal on average "
                f"({self.tracker.name}), below the threshold {self.config.threshold:g}"
            )
            sample.reject(self.name, reason, motion=score)
