"""Actions on a whole batch: cancel, retry the failed, set priority, pause, resume, select for
hero. Each is one set of conditional UPDATEs in farm.states (a 20,000-take sweep costs what
a 2-take batch does) and answers in a producer's words what it changed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from . import states
from .tables import Batch

ACTIONS = ("cancel", "retry", "priority", "pause", "resume", "select")


@dataclass(frozen=True)
class Outcome:
    changed: int  #: takes changed at once
    stopping: int  #: cancel: rendering takes that stop after their current step
    message: str


def _takes(n: int, what: str = "take") -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def apply(
    session: Session,
    batch: Batch,
    action: str,
    *,
    max_attempts: int = 0,
    priority: int = 0,
    selected: bool = True,
) -> Outcome:
    """Apply one action to every take of the batch it fits; the caller commits."""
    b = batch.id
    if action == "cancel":
        canceled, stopping = states.cancel_batch(session, b)
        if not canceled and not stopping:
            return Outcome(0, 0, "nothing to cancel: every take of the batch has finished")
        also = f"; {_takes(stopping)} rendering stop{'s' if stopping == 1 else ''} after the current step"
        return Outcome(canceled, stopping, f"{_takes(canceled)} canceled{also if stopping else ''}")
    if action == "retry":
        n = states.retry_batch(session, b, max_attempts)
        return Outcome(n, 0, f"{_takes(n, 'failed take')} queued again" if n else "no failed takes to retry")
    if action == "priority":
        n = states.reprioritise_batch(session, b, priority)
        return Outcome(
            n,
            0,
            f"priority {priority} on {_takes(n)} not yet rendering" if n else "no take waits: nothing to reprioritise",
        )
    if action == "pause":
        n = states.pause_batch(session, b)
        return Outcome(n, 0, f"{_takes(n)} paused; rendering ones finish" if n else "no take waits: nothing to pause")
    if action == "resume":
        n = states.resume_batch(session, b)
        return Outcome(n, 0, f"{_takes(n)} queued again, in their old order" if n else "no paused takes to resume")
    if action == "select":
        n = states.select_batch(session, b, selected)
        verb = "selected for hero" if selected else "unselected for hero"
        return Outcome(n, 0, f"{_takes(n, 'finished take')} {verb}" if n else f"no finished takes left to be {verb}")
    raise ValueError(f"unknown batch action {action!r}")
