"""The sampler of the official Ditto inference (DiffSynth's Wan pipeline) on diffusers' scheduler."""

from __future__ import annotations

import numpy as np
from diffusers import FlowMatchEulerDiscreteScheduler


class DiffSynthFlowMatchScheduler(FlowMatchEulerDiscreteScheduler):
    """diffusers' flow-matching Euler sampler on DiffSynth's Wan sigma schedule.

    DiffSynth (``FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True)``) runs ``N`` steps at
    ``shift(1 - i / N)``, ``i = 0 .. N-1``, then steps to 0. diffusers' default spaces its ``N`` sigmas
    between 1 and ``shift(1 / 1000)`` before shifting them, so its last steps sit at other noise levels
    (for 50 steps at shift 5: last sigma 0.024 instead of 0.093). Explicit ``sigmas`` or ``timesteps``
    are used as given.
    """

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None, timesteps=None):
        if sigmas is None and timesteps is None and num_inference_steps is not None:
            sigmas = np.linspace(1.0, 0.0, num_inference_steps + 1)[:-1]
        super().set_timesteps(num_inference_steps, device=device, sigmas=sigmas, mu=mu, timesteps=timesteps)
