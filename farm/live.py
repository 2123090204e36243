"""A take while it waits or renders: its place in the release order, its ETA, its preview.

The place is counted in the release loop's own order (farm.release.next_takes: priority, fair
share, age), so it is where the take really stands; it is looked up to QUEUE_LOOKAHEAD takes
deep. The ETA extrapolates the running attempt's pace (seconds since it started per step it
finished) over the steps left. A long take's progress is also window i of n.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import release, states
from .errors import NotFound
from .storage import Storage, preview_key
from .tables import Attempt, Take, TakeState, utcnow

QUEUE_LOOKAHEAD = 1000  #: takes of the release order read to place a queued take; deeper: "over 1000"


class Progressing(Protocol):
    """What progress() reads: a Take, or a row of its columns (the change feed's)."""

    progress_step: int
    progress_total: int
    progress_windows: int
    windows_saved: int


def window_steps(take: Progressing) -> int:
    """The steps of each of a take's windows (all of them for a clip)."""
    return max((take.progress_total or 0) // max(take.progress_windows or 1, 1), 1)


def progress(take: Progressing) -> dict:
    """Step of total over every window; a long take's also as window i of n (from 1) and step
    j of m within it (each window renders the take's steps: total / windows of them).

    A window whose steps are done is still the current one until it is stored; then the next
    one is, at step 0 (so an attempt resumed at window 3 shows window 3, step 0)."""
    step, total, windows = take.progress_step or 0, take.progress_total or 0, max(take.progress_windows or 1, 1)
    out = {"step": step, "total": total, "fraction": step / total if total else 0.0}
    if windows > 1 and total:
        steps, saved = window_steps(take), take.windows_saved or 0
        stepped = step // steps  #: windows whose steps are all done
        window = min(stepped - 1 if step % steps == 0 and stepped > saved else stepped, windows - 1)
        out |= {
            "window": window + 1,
            "windows": windows,
            "window_step": step - window * steps,
            "window_steps": steps,
            "windows_saved": saved,  #: stored: what a next attempt resumes after
        }
    return out


@dataclass(frozen=True)
class Live:
    state: str
    step: int
    total: int
    progress: dict  #: progress(take): with a long take's window i of n
    eta_seconds: float | None  #: running, after its first step
    queue_position: int | None  #: queued: 1 is released next (None: deeper than QUEUE_LOOKAHEAD)
    queue_lookahead: int
    preview_step: int | None  #: the running attempt has a preview (the step it was asked at)


def queue_position(session: Session, take: Take) -> int | None:
    order = release.next_takes(session, take.pool, QUEUE_LOOKAHEAD, night=take.hero_night)
    return order.index(take.id) + 1 if take.id in order else None


def eta_seconds(take: Take, attempt: Attempt, now: datetime) -> float | None:
    """The steps left at this attempt's pace (a resumed one counts from the window it started at)."""
    ran = take.progress_step - (attempt.start_window or 0) * window_steps(take)
    if ran <= 0 or not take.progress_total:
        return None
    pace = (now - attempt.started_at).total_seconds() / ran
    return max(0.0, pace * (take.progress_total - take.progress_step))


def running_attempt(session: Session, take: Take) -> Attempt | None:
    return session.execute(
        select(Attempt).where(Attempt.take_id == take.id, Attempt.number == take.attempt_count)
    ).scalar_one_or_none()


def live(session: Session, storage: Storage, take_id: str, now: datetime | None = None) -> Live:
    take = states.get(session, take_id)
    eta = position = preview = None
    if take.state == TakeState.queued:
        position = queue_position(session, take)
    elif take.state == TakeState.running:
        attempt = running_attempt(session, take)
        if attempt is not None:
            eta = eta_seconds(take, attempt, now or utcnow())
            if storage.exists(preview_key(take.id, attempt.number)):
                preview = take.progress_step or 0
    return Live(
        take.state.value,
        take.progress_step or 0,
        take.progress_total or 0,
        progress(take),
        eta,
        position,
        QUEUE_LOOKAHEAD,
        preview,
    )


def preview(session: Session, storage: Storage, take_id: str) -> bytes:
    """The running attempt's latest preview JPEG; NotFound when there is none (yet, or any more)."""
    take = states.get(session, take_id)
    attempt = running_attempt(session, take) if take.state == TakeState.running else None
    if attempt is None or not storage.exists(key := preview_key(take.id, attempt.number)):
        raise NotFound(f"take {take_id} has no live preview: previews exist while it renders, after its first steps")
    return storage.get_bytes(key)
