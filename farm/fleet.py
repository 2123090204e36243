"""The workers: who is alive, serving, draining or dead, decided here only.

A worker is alive while its heartbeat is younger than FARM_WORKER_TIMEOUT. A drained worker
(`farm workers drain`) keeps heartbeating with `stopped` set: it finishes its take, claims no
new one, and the release loop counts it out. One that exited, or was killed, stops
heartbeating: dead (or stopped, if it was draining), and the reconciler requeues its take.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.orm import Session

from .errors import IllegalTransition, NotFound
from .tables import Worker, as_utc

#: a worker is exactly one of these
STATES = ("idle", "busy", "draining", "dead", "stopped")
SERVING = ("idle", "busy")  #: alive and taking work
FLAGGED = ("draining", "stopped")  #: flagged stopped: drained, and still alive or gone since
GONE = ("dead", "stopped")  #: no longer heartbeating
SEEN = 3600.0  #: seconds: lists leave out workers whose last heartbeat is older than this


@dataclass(frozen=True)
class WorkerRow:
    id: str
    pool: str
    host: str
    gpu: str
    slots: int
    heartbeat_age: float  #: seconds
    current_take_id: str | None
    state: str
    holding: str | None = None  #: farm.affinity.stack_key of what its DiT holds (None: unknown)


def state(stopped: bool, heartbeat_age: float, current_take_id: str | None, timeout: float) -> str:
    alive = heartbeat_age <= timeout
    if stopped:
        return "draining" if alive else "stopped"
    if not alive:
        return "dead"
    return "busy" if current_take_id else "idle"


def ago(seconds: float) -> str:
    """A heartbeat's age in words."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.1f}s ago"


def alive(now: datetime, timeout: float) -> ColumnElement[bool]:
    """SQL: the worker heartbeated within `timeout` seconds of `now`."""
    return Worker.heartbeat_at >= now - timedelta(seconds=timeout)


def age(worker: Worker, now: datetime) -> float:
    """Seconds since the worker's last heartbeat (never negative: clocks differ a little)."""
    return max(0.0, (as_utc(now) - as_utc(worker.heartbeat_at)).total_seconds())


def row(worker: Worker, now: datetime, timeout: float) -> WorkerRow:
    seconds = age(worker, now)
    w = worker
    return WorkerRow(
        w.id, w.pool, w.host, w.gpu, w.slots, seconds, w.current_take_id,
        state(w.stopped, seconds, w.current_take_id, timeout), w.holding,
    )  # fmt: skip


def workers(session: Session, now: datetime, timeout: float, seen: float | None = SEEN) -> list[WorkerRow]:
    """Workers heartbeating within `seen` seconds (None: every worker ever registered)."""
    stmt = select(Worker).order_by(Worker.pool, Worker.host, Worker.id)
    if seen is not None:
        stmt = stmt.where(alive(now, seen))
    return [row(w, now, timeout) for w in session.execute(stmt).scalars()]


def serving(pool: str, now: datetime, timeout: float) -> ColumnElement[bool]:
    """SQL: the worker is one of the pool's serving workers (alive and not drained)."""
    return and_(Worker.pool == pool, Worker.stopped.is_(False), alive(now, timeout))


def serving_slots(session: Session, pool: str, now: datetime, timeout: float) -> int:
    """The slots of a pool's serving workers: what the release loop fills."""
    return session.execute(
        select(func.coalesce(func.sum(Worker.slots), 0)).where(serving(pool, now, timeout))
    ).scalar_one()


def serving_ids(session: Session, pool: str, now: datetime, timeout: float) -> list[str]:
    """The ids of a pool's serving workers: those a take handed back to the queue can reach."""
    return list(session.execute(select(Worker.id).where(serving(pool, now, timeout)).order_by(Worker.id)).scalars())


def idle_holdings(session: Session, pool: str, now: datetime, timeout: float) -> dict[str, str]:
    """The pool's idle workers (serving, no take) that say what their DiT holds: id -> its
    stack key (farm.affinity), by id. One that says nothing (an older worker) is left out."""
    rows = session.execute(
        select(Worker.id, Worker.holding)
        .where(serving(pool, now, timeout), Worker.current_take_id.is_(None))
        .order_by(Worker.id)
    )
    return {worker_id: holding for worker_id, holding in rows if holding is not None}


def dead_ids(session: Session, now: datetime, timeout: float) -> list[str]:
    """Workers that stopped heartbeating (whatever their flag): their running takes are lost."""
    return list(session.execute(select(Worker.id).where(~alive(now, timeout))).scalars())


def is_draining(session: Session, worker_id: str) -> bool:
    return bool(session.execute(select(Worker.stopped).where(Worker.id == worker_id)).scalar_one_or_none())


def find(session: Session, worker_id: str) -> Worker:
    """The worker with this id, or the one whose id starts with it."""
    matches = (
        session.execute(
            select(Worker).where(Worker.id.startswith(worker_id, autoescape=True)).order_by(Worker.heartbeat_at.desc())
        )
        .scalars()
        .all()
    )
    exact = [w for w in matches if w.id == worker_id]
    if not matches:
        raise NotFound(f"no worker {worker_id!r}; `farm workers --all` lists them", field="worker")
    if len(matches) > 1 and not exact:
        shown = ", ".join(w.id for w in matches[:3]) + (", ..." if len(matches) > 3 else "")
        raise NotFound(f"{worker_id!r} matches {len(matches)} workers ({shown}); give more of the id", field="worker")
    return (exact or matches)[0]


def set_draining(session: Session, worker: Worker, drain: bool, now: datetime, timeout: float) -> bool:
    """Drain a live worker (or resume it); False when it already was. The flag is set only
    while the worker still heartbeats, so a worker that just died is never marked."""
    current = row(worker, now, timeout)
    if current.state in GONE:
        last = ago(current.heartbeat_age)
        fix = "nothing to drain" if drain else "start a new worker with `farm worker`"
        raise IllegalTransition(f"{worker.id} is {current.state} (last heartbeat {last}); {fix}", field="worker")
    if (current.state == "draining") == drain:
        return False
    session.execute(
        update(Worker)
        .where(Worker.id == worker.id, Worker.stopped.is_(not drain), alive(now, timeout))
        .values(stopped=drain)
        # "fetch", not Python evaluation: SQLite hands back naive datetimes, `now` is aware
        .execution_options(synchronize_session="fetch")
    )
    return True


def drained_words(worker: Worker, drain: bool, changed: bool) -> str:
    """What a drain or resume did, in an operator's words."""
    if not changed:
        return f"worker {worker.id} is already {'draining' if drain else 'taking work'}"
    if not drain:
        return f"worker {worker.id} resumed: it claims takes again"
    if worker.current_take_id:
        return f"worker {worker.id} draining: it finishes take {worker.current_take_id} and claims no new one"
    return f"worker {worker.id} draining: it claims no new take"
