"""The flow-matching UniPC sampler (diffusers), on Wan's exact schedule.

Wan's solver spaces sigmas linearly from 0.999 to 0 (excluding 0), shifts them by
s' = shift*s / (1 + (shift-1)*s) and feeds the DiT integer timesteps int(1000 s').
diffusers' own flow spacing starts at 1.0, so we pass Wan's sigmas explicitly.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import UniPCMultistepScheduler

TRAIN_TIMESTEPS = 1000


def make_scheduler(steps: int, shift: float) -> UniPCMultistepScheduler:
    scheduler = UniPCMultistepScheduler(
        num_train_timesteps=TRAIN_TIMESTEPS,
        solver_order=2,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=shift,
    )
    base = np.linspace(1 - 1 / TRAIN_TIMESTEPS, 0, steps + 1)[:-1]
    scheduler.set_timesteps(sigmas=base)
    # many steps give repeated integer timesteps near t=1000; diffusers would then guess the
    # first step's index from the value (and pick the repeat). We always start at step 0.
    scheduler.set_begin_index(0)
    return scheduler


def model_timesteps(scheduler: UniPCMultistepScheduler) -> torch.Tensor:
    """The integer timesteps Wan's DiT sees at each step."""
    return scheduler.timesteps.to(torch.float64).floor().to(torch.int64)


def describe(scheduler: UniPCMultistepScheduler) -> dict:
    """The sampler's settings as its config holds them (JSON types), for the render's record."""
    cfg = scheduler.config
    return {
        "name": type(scheduler).__name__,
        "prediction_type": cfg.prediction_type,
        "solver_order": int(cfg.solver_order),
        "shift": float(cfg.flow_shift),
    }
