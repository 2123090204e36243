"""The flow-matching samplers, on Wan's exact schedule: UniPC (diffusers) and Euler.

Wan's solver spaces sigmas linearly from 0.999 to 0 (excluding 0), shifts them by
s' = shift*s / (1 + (shift-1)*s) and feeds the DiT integer timesteps int(1000 s').
diffusers' own flow spacing starts at 1.0, so we pass Wan's sigmas explicitly.

A request may instead give the DiT's timesteps (`RenderRequest.timesteps`, e.g. 1000, 750,
500, 250 as step-distilled models use): the DiT sees exactly those, the sigma of timestep t
is t/1000 (no shift), and the last step goes to sigma 0.

"unipc" is diffusers' 2nd-order UniPCMultistepScheduler; "euler" is the 1st-order
flow-matching Euler step x_next = x + (sigma_next - sigma) * v, written out here (`FlowEuler`)
so it runs on the same float32 sigmas UniPC does (diffusers' FlowMatchEulerDiscreteScheduler
would shift them itself, in float32).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import torch
from diffusers import UniPCMultistepScheduler

from .params import SAMPLERS, TRAIN_TIMESTEPS


def wan_sigmas(steps: int, shift: float) -> np.ndarray:
    """Wan's shifted sigmas of a schedule, float64 [steps] (the final 0 not included), computed
    as diffusers' UniPC computes them from the same base sigmas."""
    base = np.linspace(1 - 1 / TRAIN_TIMESTEPS, 0, steps + 1)[:-1]
    return shift * base / (1 + (shift - 1) * base)


class FlowEuler:
    """Flow-matching Euler: x_next = x + (sigma_next - sigma) * v, the velocity v as the DiT predicts it.

    The same interface as the diffusers schedulers the pipeline steps: `timesteps` (the DiT's,
    int64), `sigmas` (float32, with the final 0), `step(v, t, x, return_dict=False)`.
    """

    name = "FlowMatchEuler"
    prediction_type = "flow_prediction"
    solver_order = 1

    def __init__(self, sigmas: Sequence[float] | np.ndarray, timesteps: Sequence[int], shift: float):
        if len(sigmas) != len(timesteps):
            raise ValueError(f"{len(sigmas)} sigmas for {len(timesteps)} timesteps")
        self.sigmas = torch.from_numpy(np.append(np.asarray(sigmas, np.float64), 0.0).astype(np.float32))
        self.timesteps = torch.tensor(list(timesteps), dtype=torch.int64)
        self.shift = float(shift)  #: the shift the sigmas were made with (1.0: given timesteps)
        self.step_index = 0

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, return_dict: bool = False):
        """One step from sigmas[i] to sigmas[i + 1]; steps are taken in order (timestep is not consulted)."""
        i = self.step_index
        if i >= len(self.timesteps):
            raise IndexError(f"all {len(self.timesteps)} steps were taken")
        dt = self.sigmas[i + 1] - self.sigmas[i]
        self.step_index += 1
        out = sample.to(torch.float32) + dt.to(sample.device) * model_output.to(torch.float32)
        return (out,) if not return_dict else {"prev_sample": out}


Scheduler: TypeAlias = UniPCMultistepScheduler | FlowEuler


def make_scheduler(
    steps: int, shift: float, sampler: str = "unipc", timesteps: Sequence[int] | None = None
) -> Scheduler:
    """The sampler for one render: `steps` steps on Wan's schedule shifted by `shift`, or, when
    `timesteps` is given, exactly those DiT timesteps (sigma t/1000, no shift; `steps` is ignored)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    given = list(timesteps) if timesteps is not None else None
    if given is not None and (not given or any(b >= a for a, b in zip(given, given[1:]))):
        raise ValueError(f"timesteps must be a non-empty, strictly decreasing list, not {given}")
    if sampler == "euler":
        if given is None:
            sigmas = wan_sigmas(steps, shift)
            return FlowEuler(sigmas, (sigmas * TRAIN_TIMESTEPS).astype(np.int64).tolist(), shift)
        return FlowEuler([t / TRAIN_TIMESTEPS for t in given], given, 1.0)
    scheduler = UniPCMultistepScheduler(
        num_train_timesteps=TRAIN_TIMESTEPS,
        solver_order=2,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=shift if given is None else 1.0,
    )
    if given is None:
        base = np.linspace(1 - 1 / TRAIN_TIMESTEPS, 0, steps + 1)[:-1]
        scheduler.set_timesteps(sigmas=base)
    else:
        scheduler.set_timesteps(sigmas=np.array([t / TRAIN_TIMESTEPS for t in given]))
        # diffusers nudges a sigma of 1 to 1 - 1e-6 (its solver takes log(1 - sigma)) and truncates
        # sigma * 1000 to the timestep: the DiT is to see the integers as given
        scheduler.timesteps = torch.tensor(given, dtype=torch.int64)
    # many steps give repeated integer timesteps near t=1000; diffusers would then guess the
    # first step's index from the value (and pick the repeat). We always start at step 0.
    scheduler.set_begin_index(0)
    return scheduler


def model_timesteps(scheduler: Scheduler) -> torch.Tensor:
    """The integer timesteps Wan's DiT sees at each step."""
    return scheduler.timesteps.to(torch.float64).floor().to(torch.int64)


def describe(scheduler: Scheduler) -> dict:
    """The sampler's settings as the live scheduler holds them (JSON types), for the render's record.

    shift: the shift its sigmas were made with (1.0 for given timesteps: none applies);
    timesteps: the integer timesteps the DiT sees, step by step.
    """
    if isinstance(scheduler, FlowEuler):
        settings = {
            "name": scheduler.name,
            "prediction_type": scheduler.prediction_type,
            "solver_order": scheduler.solver_order,
            "shift": scheduler.shift,
        }
    else:
        cfg = scheduler.config
        settings = {
            "name": type(scheduler).__name__,
            "prediction_type": cfg.prediction_type,
            "solver_order": int(cfg.solver_order),
            "shift": float(cfg.flow_shift),
        }
    return {**settings, "timesteps": model_timesteps(scheduler).tolist()}
