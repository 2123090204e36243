"""What the workers raise on purpose, and how a failed render is judged (`classify`).

An attempt records its error's class name (`error_class`): these names are what operators
read on the dashboard and in `farm takes`.
"""

from __future__ import annotations

from models import InputError


class WorkerError(Exception):
    """The root of every error a worker raises on purpose."""


class Declined(WorkerError):
    """This worker is blocklisted for the take's batch: the message goes back to the queue."""


class Draining(Declined):
    """An operator drained this worker (`farm workers drain`): it claims no new take."""


class RenderTimeout(WorkerError):
    """The render ran past FARM_RENDER_TIME_LIMIT and was stopped between steps."""


class GPUOutOfMemory(WorkerError):
    """The GPU ran out of memory during the render (retried: the next attempt may fit)."""


class Stalled(WorkerError):
    """No denoising step finished within FARM_STALL_TIMEOUT: a hung GPU call; the watchdog
    ended the worker (retried: a fresh process may not hang)."""


class HostOutOfMemory(WorkerError):
    """The host ran out of memory during the render: the same take on the same kind of host
    runs out again, so it is not retried (a smaller size or fewer frames fits)."""


class TakeFailed(WorkerError):
    """The take ended failed (no attempt left, or a cause no retry mends): raised from the
    Celery task once it is recorded, so Celery and Flower count a failed task where the farm
    counts a failed take."""


class GroupFailed(WorkerError):
    """A hero rank died or raised, or the take passed its deadline: the whole group was
    killed and a fresh one is loading. The take did not render; retry it."""


class RankError(WorkerError):
    """What a hero rank raised, as its formatted traceback (the cause of a GroupFailed)."""


def is_oom(exc: BaseException) -> bool:
    import torch  # here, not at import: the Celery app imports this module before any model

    return isinstance(exc, torch.OutOfMemoryError)


def classify(exc: BaseException) -> tuple[BaseException, bool]:
    """(the error to record, whether a retry may help)."""
    if isinstance(exc, InputError):
        return exc, False  # the take itself is wrong
    if is_oom(exc):
        return GPUOutOfMemory(str(exc).splitlines()[0][:500] or "CUDA out of memory"), True
    if isinstance(exc, MemoryError):  # deterministic: every attempt would fail the same way
        return HostOutOfMemory(
            f"the host ran out of memory ({exc or 'MemoryError'}); use a smaller size or fewer frames"
        ), False
    return exc, True
