"""Stage 3: drop clips with too little motion.

The score is the paper's: the mean cumulative displacement of the visible points of a grid tracked
from the first frame (path length per point while visible, as a fraction of the frame diagonal).
The tracker is chosen by name: ``cotracker3`` (the paper's, default) or ``raft-flow`` (torchvision
RAFT optical flow integrated along the points); see :mod:`ditto_hf.generate.helpers.tracking`.
The threshold was not published: the default is ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ditto_hf.errors import DittoError
from ditto_hf.generate.contract.models import ModelSpec
from ditto_hf.generate.contract.sample import Sample
from ditto_hf.generate.contract.stage import Resources, Stage, StageConfig
from ditto_hf.generate.helpers.tracking import TRACKERS, grid_points, motion_score
from ditto_hf.video import read_frames

#: tracker -> the weights used when ``model`` names none.
DEFAULT_WEIGHTS = {"cotracker3": "facebook/cotracker3"}


class MotionStage(Stage):
    """Track a point grid through the standardised clip; reject it if the points barely move."""

    name = "motion"
    resources = Resources(gpus=1, memory_gb=4)

    @dataclass
    class Config(StageConfig):
        """Tracker and filter settings."""

        model: ModelSpec = field(default_factory=lambda: ModelSpec("", dtype="float32"))
        """Tracker weights. Default for ``cotracker3``: ``facebook/cotracker3`` (the official
        ``cotracker_checkpoint`` is converted to safetensors once, on first use; **CC-BY-NC-4.0**,
        non-commercial), or a folder / Hub repo from ``python -m ditto_hf.models.convert cotracker3``.
        For ``raft-flow``: a directory, file or Hub repo with ``model.safetensors`` (torchvision RAFT;
        make it with ``python -m ditto_hf.generate.helpers.tracking convert``); no public repo ships
        these, so ``raft-flow`` has no default and refuses to start without one. Keep float32: track
        coordinates lose pixels in bfloat16."""
        tracker: str = "cotracker3"
        """Tracker backend (a key of ``ditto_hf.generate.helpers.tracking.TRACKERS``)."""
        threshold: float = 0.05
        """Minimum motion score (mean path length / frame diagonal) a clip needs to be kept."""
        grid_size: int = 16
        """Points per side of the tracked grid (``grid_size²`` points)."""
        frame_stride: int = 1
        """Track every n-th frame."""
        cotracker_checkpoint: str = "scaled_offline.pth"
        """cotracker3: the official file to convert when ``model`` holds no converted weights —
        ``scaled_offline.pth`` (whole clip at once, the more accurate) or ``scaled_online.pth``
        (16-frame sliding windows)."""
        iterations: int = 6
        """cotracker3: refinement iterations."""
        visibility_threshold: float | None = None
        """cotracker3: visibility probability above which a point counts as visible (default 0.9
        offline, 0.6 online, as in the reference predictors)."""
        short_side: int = 360
        """raft-flow: short side of the frames RAFT sees (rounded to multiples of 8, at least 128)."""
        num_flow_updates: int = 12
        """raft-flow: RAFT refinement iterations per frame pair."""
        pairs_per_batch: int = 8
        """raft-flow: frame pairs per forward pass (GPU memory vs speed)."""

        def __post_init__(self) -> None:
            if self.tracker not in TRACKERS:
                raise DittoError(f"motion.tracker {self.tracker!r} is unknown; available: {', '.join(TRACKERS)}")
            if self.grid_size < 1 or self.frame_stride < 1 or self.pairs_per_batch < 1 or self.iterations < 1:
                raise DittoError("motion.grid_size, frame_stride, iterations and pairs_per_batch must be at least 1")
            self.model = ModelSpec.coerce(self.model)
            if not self.model.id and self.tracker in DEFAULT_WEIGHTS:
                self.model = self.model.with_overrides(id=DEFAULT_WEIGHTS[self.tracker])

    def setup(self) -> None:
        tracker = TRACKERS[self.config.tracker]
        options = {name: getattr(self.config, name) for name in tracker.options}
        self.tracker = self.context.registry.load(tracker, self.config.model, **options)

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
