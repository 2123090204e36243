"""The one owner of take state: every transition is a conditional UPDATE (... WHERE state IN).

    queued -> released -> running -> done | failed | canceled
    released -> queued                (the reconciler gives up on a lost message)
    running  -> queued                (a retryable failure or a lost worker, attempts left)
    failed | canceled -> queued       (retry)
    queued | released <-> paused      (a paused batch; resuming queues it again, in its old place)

A redelivered message for a take that another attempt holds or finished claims nothing,
so a take renders to completion once. Routes, workers and the reconciler call only these.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from models import InputError

from .errors import IllegalTransition, NotFound, ObjectMissing, StorageError, WorkerLost
from .tables import Attempt, AttemptState, Output, Take, TakeState, utcnow

S = TakeState
TRANSITIONS: dict[TakeState, frozenset[TakeState]] = {
    S.queued: frozenset({S.released, S.running, S.canceled, S.paused}),
    S.paused: frozenset({S.queued, S.canceled}),
    S.released: frozenset({S.running, S.queued, S.canceled, S.paused}),
    S.running: frozenset({S.done, S.failed, S.canceled, S.queued}),
    S.failed: frozenset({S.queued}),
    S.canceled: frozenset({S.queued}),
    S.done: frozenset(),
}
#: the named sets of states, written here only
UNSTARTED = (S.queued, S.released)  #: not yet on a worker: cancel or reprioritise touch only the record
ACTIVE = (S.released, S.running)  #: holding (or about to hold) a worker
FINISHED = (S.done, S.failed, S.canceled)  #: nothing more happens unless someone retries
RETRYABLE = (S.failed, S.canceled)  #: ended without a clip: a retry queues them again
#: not finished, not rendering: cancel ends them at once, a new priority applies when they run
WAITING = (*UNSTARTED, S.paused)
#: the error classes (as attempts record them) of failures a worker did not cause: the object
#: store, the database, a worker lost with its machine, a take whose own input is wrong (or
#: gone); the blocklist never counts them
NOT_THE_WORKERS_FAULT = (
    StorageError.__name__,
    ObjectMissing.__name__,
    OperationalError.__name__,
    InterfaceError.__name__,
    WorkerLost.__name__,
    InputError.__name__,
)


def counts(session: Session, key: Any, keys: Iterable[Any] | None = None) -> dict[Any, dict[TakeState, int]]:
    """Takes by state, grouped by a column of Take (`keys`: only these values, each present)."""
    stmt = select(key, Take.state, func.count()).group_by(key, Take.state)
    wanted = None if keys is None else list(keys)
    out: dict[Any, dict[TakeState, int]] = {k: {} for k in wanted or ()}
    for value, state, n in session.execute(stmt if wanted is None else stmt.where(key.in_(wanted))):
        out.setdefault(value, {})[state] = n
    return out


def _move(
    session: Session, take_id: str, sources: Iterable[TakeState], target: TakeState, now: datetime, *where, **values
) -> bool:
    sources = tuple(sources)
    for source in sources:  # a programming error, not a race: refuse loudly
        assert target in TRANSITIONS[source], f"{source.value} -> {target.value} is not a transition"
    stmt = (
        update(Take)
        .where(Take.id == take_id, Take.state.in_(sources), *where)
        .values(state=target, updated_at=now, **values)
    )
    result = cast(CursorResult, session.execute(stmt.execution_options(synchronize_session=False)))
    return result.rowcount == 1


def get(session: Session, take_id: str) -> Take:
    take = session.get(Take, take_id)
    if take is None:
        raise NotFound(f"take {take_id} not found")
    return take


def release(session: Session, take_ids: list[str], now: datetime | None = None) -> list[str]:
    """queued -> released for those still queued; returns the ids released."""
    if not take_ids:
        return []
    stmt = (
        update(Take)
        .where(Take.id.in_(take_ids), Take.state == S.queued)
        .values(state=S.released, released_at=now or utcnow(), updated_at=now or utcnow())
        .returning(Take.id)
    )
    return list(session.execute(stmt.execution_options(synchronize_session=False)).scalars())


def rerelease(session: Session, older_than: datetime, now: datetime | None = None) -> list[tuple[str, str]]:
    """Released takes nobody claimed since `older_than`: their message is presumed lost.

    They stay released, with a fresh release time; returns (id, pool) to send again.
    """
    stmt = (
        update(Take)
        .where(Take.state == S.released, Take.released_at < older_than)
        .values(released_at=now or utcnow(), updated_at=now or utcnow())
        .returning(Take.id, Take.pool)
    )
    rows = session.execute(stmt.execution_options(synchronize_session=False))
    return [(take_id, pool) for take_id, pool in rows]


def unrelease(session: Session, take_ids: list[str], now: datetime | None = None) -> None:
    """released -> queued: the message could not be sent."""
    for take_id in take_ids:
        _move(session, take_id, [S.released], S.queued, now or utcnow(), released_at=None)


def claim(
    session: Session, take_id: str, worker_id: str, host: str, gpu: str, now: datetime | None = None
) -> Attempt | None:
    """queued|released -> running and a new attempt; None if another attempt holds or ended it."""
    now = now or utcnow()
    moved = _move(
        session,
        take_id,
        UNSTARTED,
        S.running,
        now,
        Take.cancel_requested.is_(False),
        attempt_count=Take.attempt_count + 1,
        started_at=now,
        progress_step=0,
        error_class=None,
        error_message=None,
    )
    if not moved:
        return None
    number = session.execute(select(Take.attempt_count).where(Take.id == take_id)).scalar_one()
    attempt = Attempt(take_id=take_id, number=number, worker_id=worker_id, host=host, gpu=gpu, started_at=now)
    session.add(attempt)
    session.flush()
    return attempt


def blocked_workers(
    session: Session, take_id: str, worker_ids: Iterable[str], threshold: int, since: datetime
) -> set[str]:
    """Of these workers, those that failed `threshold` attempts on takes of this take's batch
    since `since`, counting only failures they may have caused (not NOT_THE_WORKERS_FAULT).
    One query, however many workers."""
    wanted = list(worker_ids)
    if not wanted or threshold <= 0:
        return set()
    batch_id = select(Take.batch_id).where(Take.id == take_id).scalar_subquery()
    rows = session.execute(
        select(Attempt.worker_id)
        .join(Take, Take.id == Attempt.take_id)
        .where(
            Take.batch_id == batch_id,
            Attempt.worker_id.in_(wanted),
            Attempt.state == AttemptState.failed,
            Attempt.finished_at >= since,
            func.coalesce(Attempt.error_class, "").not_in(NOT_THE_WORKERS_FAULT),
        )
        .group_by(Attempt.worker_id)
        .having(func.count() >= threshold)
    ).scalars()
    return set(rows)


def _current(take_id: str, attempt: Attempt):
    return Take.attempt_count == attempt.number


def progress(
    session: Session,
    take_id: str,
    attempt: Attempt,
    step: int,
    total: int,
    windows: int = 1,
    now: datetime | None = None,
) -> bool:
    """Record progress of the running attempt (step of total, over a long take's every window);
    returns True when a cancel was requested."""
    session.execute(
        update(Take)
        .where(Take.id == take_id, Take.state == S.running, _current(take_id, attempt))
        .values(progress_step=step, progress_total=total, progress_windows=windows, updated_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    row = session.execute(select(Take.state, Take.cancel_requested, Take.attempt_count).where(Take.id == take_id)).one()
    return row.cancel_requested or row.state != S.running or row.attempt_count != attempt.number


def start_at_window(session: Session, take_id: str, attempt: Attempt, window: int, windows: int, steps: int) -> None:
    """The running attempt starts a long take of `windows` windows of `steps` steps at `window`
    (from 0), after the stored windows it could use: recorded on the attempt, its progress
    starts there, and the take counts those windows stored (any after them will be rendered and
    stored again)."""
    session.execute(
        update(Attempt).where(Attempt.id == attempt.id).values(start_window=window)
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    window_saved(session, take_id, attempt, window)
    progress(session, take_id, attempt, window * steps, windows * steps, windows)


def window_saved(session: Session, take_id: str, attempt: Attempt, count: int) -> bool:
    """The running attempt stored its long take's first `count` windows (their latents, the
    next attempt's start); False when the take is no longer this attempt's."""
    moved = session.execute(
        update(Take)
        .where(Take.id == take_id, Take.state == S.running, _current(take_id, attempt))
        .values(windows_saved=count, updated_at=utcnow())  # the change feed shows it
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], moved).rowcount == 1


def _end_attempt(
    session: Session,
    attempt: Attempt,
    state: AttemptState,
    now: datetime,
    gpu_seconds: float,
    error: BaseException | None = None,
) -> None:
    session.execute(
        update(Attempt)
        .where(Attempt.id == attempt.id, Attempt.state == AttemptState.running)
        .values(
            state=state,
            finished_at=now,
            gpu_seconds=gpu_seconds,
            error_class=type(error).__name__ if error else None,
            error_message=str(error)[:4000] if error else None,
        )
    )


def finish(
    session: Session, take_id: str, attempt: Attempt, output: dict, gpu_seconds: float, now: datetime | None = None
) -> bool:
    """running -> done with its one set of outputs; False if this attempt no longer holds it."""
    now = now or utcnow()
    # a cancel that came too late stays recorded (cancel_requested): the producer is told it finished
    if not _move(session, take_id, [S.running], S.done, now, _current(take_id, attempt), finished_at=now):
        _end_attempt(session, attempt, AttemptState.lost, now, gpu_seconds)
        return False
    session.add(Output(take_id=take_id, attempt_id=attempt.id, **output))
    _end_attempt(session, attempt, AttemptState.done, now, gpu_seconds)
    return True


def fail(
    session: Session,
    take_id: str,
    attempt: Attempt,
    error: BaseException,
    retryable: bool,
    gpu_seconds: float = 0.0,
    now: datetime | None = None,
) -> TakeState | None:
    """The attempt failed: the take goes where `_after_failure` says; None if this attempt
    no longer holds it."""
    return _end_failed(session, take_id, attempt, AttemptState.failed, error, retryable, gpu_seconds, now or utcnow())


def _after_failure(session: Session, take_id: str, retryable: bool) -> TakeState:
    """The one retry rule: a take whose cancel was requested stays canceled (the producer
    gave up on it); a retryable failure with attempts left is queued again; else it failed."""
    take = session.execute(
        select(Take.attempt_count, Take.max_attempts, Take.cancel_requested).where(Take.id == take_id)
    ).one()
    if take.cancel_requested:
        return S.canceled
    return S.queued if retryable and take.attempt_count < take.max_attempts else S.failed


def _end_failed(
    session: Session,
    take_id: str,
    attempt: Attempt,
    ended: AttemptState,
    error: BaseException,
    retryable: bool,
    gpu_seconds: float,
    now: datetime,
) -> TakeState | None:
    target = _after_failure(session, take_id, retryable)
    _end_attempt(session, attempt, ended, now, gpu_seconds, error)
    values: dict = dict(error_class=type(error).__name__, error_message=str(error)[:4000])
    values.update({"released_at": None} if target == S.queued else {"finished_at": now})
    if _move(session, take_id, [S.running], target, now, _current(take_id, attempt), **values):
        return target
    return None


def mark_canceled(
    session: Session, take_id: str, attempt: Attempt, gpu_seconds: float = 0.0, now: datetime | None = None
) -> bool:
    """The worker stopped a running take because a cancel was requested."""
    now = now or utcnow()
    _end_attempt(session, attempt, AttemptState.canceled, now, gpu_seconds)
    return _move(session, take_id, [S.running], S.canceled, now, _current(take_id, attempt), finished_at=now)


def cancel(session: Session, take_id: str, now: datetime | None = None) -> TakeState:
    """Cancel: at once if not yet rendering; a running take stops at its next step."""
    now = now or utcnow()
    take = get(session, take_id)
    if _move(session, take_id, WAITING, S.canceled, now, finished_at=now):
        return S.canceled
    stmt = (
        update(Take)
        .where(Take.id == take_id, Take.state == S.running)
        .values(cancel_requested=True, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult, session.execute(stmt)).rowcount == 1:
        return S.running
    if take.state == S.done:
        raise IllegalTransition(f"too late, it finished: take {take_id} is done and its clip is kept")
    raise IllegalTransition(f"take {take_id} has already ended ({take.state.value}): there is nothing to cancel")


def cancel_unstarted(
    session: Session, take_id: str, error_class: str, message: str, now: datetime | None = None
) -> bool:
    """queued|released|paused -> canceled with a reason (the nightly budget or window, consent
    withdrawn); a take that has started meanwhile is left alone."""
    now = now or utcnow()
    return _move(
        session,
        take_id,
        WAITING,
        S.canceled,
        now,
        finished_at=now,
        error_class=error_class,
        error_message=message,
    )


def _retried(extra_attempts: int) -> dict:
    """What a retry sets on a take: a fresh start, `extra_attempts` more attempts."""
    return dict(
        cancel_requested=False,
        finished_at=None,
        released_at=None,
        error_class=None,
        error_message=None,
        max_attempts=Take.attempt_count + extra_attempts,
        progress_step=0,
    )


def retry(session: Session, take_id: str, extra_attempts: int, now: datetime | None = None) -> None:
    """failed|canceled -> queued with `extra_attempts` more attempts; never a take whose consent
    was withdrawn (farm.consent)."""
    take = get(session, take_id)
    if take.consent_withdrawn is not None:
        raise IllegalTransition(f"take {take_id} is not rendered again: {take.consent_withdrawn}")
    if not _move(
        session,
        take_id,
        RETRYABLE,
        S.queued,
        now or utcnow(),
        **_retried(extra_attempts),
    ):
        raise IllegalTransition(f"take {take_id} is {take.state.value}: only failed or canceled takes can be retried")


def reprioritise(session: Session, take_id: str, priority: int, now: datetime | None = None) -> None:
    take = get(session, take_id)
    stmt = (
        update(Take)
        .where(Take.id == take_id, Take.state.in_(WAITING + RETRYABLE))
        .values(priority=priority, updated_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult, session.execute(stmt)).rowcount != 1:
        raise IllegalTransition(f"take {take_id} is {take.state.value}: it can no longer be reprioritised")


def select_for_hero(session: Session, take_id: str, selected: bool, now: datetime | None = None) -> None:
    take = get(session, take_id)
    stmt = (
        update(Take)
        .where(Take.id == take_id, Take.state == S.done)
        .values(selected_for_hero=selected, updated_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult, session.execute(stmt)).rowcount != 1:
        raise IllegalTransition(f"take {take_id} is {take.state.value}: only finished takes can be selected for hero")


def reclaim_from_dead_workers(session: Session, dead_worker_ids: list[str], now: datetime | None = None) -> list[str]:
    """Running takes whose attempt's worker stopped heartbeating: attempt lost, take requeued or failed."""
    now = now or utcnow()
    if not dead_worker_ids:
        return []
    rows = (
        session.execute(
            select(Attempt)
            .join(Take, Take.id == Attempt.take_id)
            .where(
                Attempt.state == AttemptState.running,
                Attempt.worker_id.in_(dead_worker_ids),
                Take.state == S.running,
                Take.attempt_count == Attempt.number,
            )
        )
        .scalars()
        .all()
    )
    reclaimed = []
    for attempt in rows:
        error = WorkerLost(f"worker {attempt.worker_id} stopped heartbeating during attempt {attempt.number}")
        if _end_failed(session, attempt.take_id, attempt, AttemptState.lost, error, True, 0.0, now) is not None:
            reclaimed.append(attempt.take_id)
    return reclaimed


# ---------- whole batches: one conditional UPDATE per rule, whatever the batch's size ----------


def _move_batch(
    session: Session,
    batch_id: str,
    sources: Iterable[TakeState],
    target: TakeState | None,
    now: datetime,
    *where,
    **values,
) -> int:
    """Every take of the batch in `sources` -> `target` (None: the state stays); how many moved."""
    sources = tuple(sources)
    if target is not None:
        for source in sources:
            assert target in TRANSITIONS[source], f"{source.value} -> {target.value} is not a transition"
        values["state"] = target
    stmt = (
        update(Take).where(Take.batch_id == batch_id, Take.state.in_(sources), *where).values(updated_at=now, **values)
    )
    return cast(CursorResult, session.execute(stmt.execution_options(synchronize_session=False))).rowcount


def cancel_batch(session: Session, batch_id: str, now: datetime | None = None) -> tuple[int, int]:
    """Cancel what has not finished: (canceled at once, rendering ones that stop after their step)."""
    now = now or utcnow()
    canceled = _move_batch(session, batch_id, WAITING, S.canceled, now, finished_at=now)
    stmt = (
        update(Take)
        .where(Take.batch_id == batch_id, Take.state == S.running, Take.cancel_requested.is_(False))
        .values(cancel_requested=True, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return canceled, cast(CursorResult, session.execute(stmt)).rowcount


def retry_batch(session: Session, batch_id: str, extra_attempts: int, now: datetime | None = None) -> int:
    """The batch's failed takes -> queued with `extra_attempts` more attempts (canceled ones
    stay; so does one whose consent was withdrawn, as `retry` says)."""
    return _move_batch(
        session,
        batch_id,
        [S.failed],
        S.queued,
        now or utcnow(),
        Take.consent_withdrawn.is_(None),
        **_retried(extra_attempts),
    )


def reprioritise_batch(session: Session, batch_id: str, priority: int, now: datetime | None = None) -> int:
    """A new priority for every take of the batch that has not started (or may be retried)."""
    return _move_batch(session, batch_id, WAITING + RETRYABLE, None, now or utcnow(), priority=priority)


def pause_batch(session: Session, batch_id: str, now: datetime | None = None) -> int:
    """The batch's unstarted takes wait (a released one's message is dropped by its worker's
    claim); rendering takes finish."""
    return _move_batch(session, batch_id, UNSTARTED, S.paused, now or utcnow(), released_at=None)


def resume_batch(session: Session, batch_id: str, now: datetime | None = None) -> int:
    """Paused takes -> queued, in their old order (their age is kept)."""
    return _move_batch(session, batch_id, [S.paused], S.queued, now or utcnow())


def select_batch(session: Session, batch_id: str, selected: bool, now: datetime | None = None) -> int:
    """(Un)select every finished (done) take of the batch for the nightly hero run."""
    stmt = (
        update(Take)
        .where(Take.batch_id == batch_id, Take.state == S.done, Take.selected_for_hero.is_not(selected))
        .values(selected_for_hero=selected, updated_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult, session.execute(stmt)).rowcount
