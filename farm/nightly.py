"""Nightly hero runs: the takes selected for hero become hero takes (same inputs and seed,
the hero checkpoint at its default size, pool hero, linked to their parent), once per night
per take, inside the night's window and GPU-hour budget.

`farm beat` runs a `Scheduler`: every beat_interval it makes sure it holds the one scheduler
lock (a Postgres advisory lock; a file lock on the embedded SQLite) and, while it does and
the clock is inside a night's window, runs `plan_night`. Planning is idempotent and safe
against a second scheduler all the same: the night's row is locked while it plans, and the
unique key (parent_id, hero_night) refuses a second hero take of a parent in one night.

One pass of `plan_night`:
1. unstarted hero takes of nights whose window has closed are canceled ("night ended"): a
   parent still selected competes again, in priority order, in tonight's budget;
2. once the night's recorded GPU seconds exceed its budget, the night stops: its unstarted
   takes are canceled ("over budget"), on this pass and every later one (a take retried
   after the night stopped is canceled again), and nothing more is planned;
3. otherwise selected takes without a hero take become hero takes, highest priority first,
   while their estimate fits what is left of the budget; the rest are skipped (counted on
   the night) and picked up on a later night if still selected.
The release loop releases a night's hero takes only inside that night's window.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, exists, func, or_, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, aliased, sessionmaker

from . import states
from .db import get_engine, session_factory, transaction
from .settings import Settings
from .tables import Attempt, Batch, HeroNight, Take, TakeState, new_id, utcnow

log = logging.getLogger(__name__)
S = TakeState
PLANNED, STOPPED = "planned", "stopped"  #: HeroNight.state
UNSTARTED = (S.queued, S.released)
#: parent params a hero take keeps; steps, shift and guidance are the hero checkpoint's own
KEPT = ("prompt", "negative_prompt", "mode", "seed", "frames")
ANCHOR_LATENT_FRAMES = 26  #: hero_step_seconds was measured on 97 frames + a reference: 25 + 1 latent frames
LOCK_KEY = 0x6661726D6E697465  #: the scheduler's Postgres advisory lock ("farmnite")


def window(night: date, settings: Settings) -> tuple[datetime, datetime]:
    """The night's window as instants: it opens on `night` (local time) and closes the next
    morning when the end is not after the start."""
    zone = ZoneInfo(settings.nightly_timezone)
    opens, closes = time.fromisoformat(settings.nightly_window_start), time.fromisoformat(settings.nightly_window_end)
    start = datetime.combine(night, opens, zone)
    end = datetime.combine(night + timedelta(days=1) if closes <= opens else night, closes, zone)
    return start, end


def night_at(now: datetime, settings: Settings) -> date | None:
    """The night whose window holds `now`; None between windows."""
    today = now.astimezone(ZoneInfo(settings.nightly_timezone)).date()
    for night in (today - timedelta(days=1), today):
        start, end = window(night, settings)
        if start <= now < end:
            return night
    return None


def hero_take(parent: Take, settings: Settings) -> tuple[dict, float]:
    """A parent's hero take (row values without ids and times) and its GPU-hour estimate;
    models.InputError if the hero checkpoint cannot render it."""
    from models import RenderRequest  # here: the release loop imports this module, not torch

    from .batches import pool_of

    params = {k: parent.params[k] for k in KEPT if parent.params.get(k) is not None}
    resolved = RenderRequest(
        checkpoint=settings.hero_checkpoint, image=parent.image_sha256, audio=parent.audio_sha256, **params
    ).resolved(probe_files=False)
    params.update(width=resolved.width, height=resolved.height)  # the hero checkpoint's default size
    latent_frames = resolved.latent_frames + ("I" in resolved.mode)  # the reference is one more frame
    seconds = resolved.steps * settings.hero_step_seconds * settings.hero_gpus * latent_frames / ANCHOR_LATENT_FRAMES
    values = {
        "producer": parent.producer,
        "checkpoint": resolved.spec.name,
        "pool": pool_of(resolved.spec.name, settings),
        "params": params,
        "priority": parent.priority,
        "image_sha256": parent.image_sha256,
        "audio_sha256": parent.audio_sha256,
    }
    return values, seconds / 3600


def plan_night(
    session: Session, settings: Settings, night: date, now: datetime, force: bool = False
) -> HeroNight | None:
    """One pass of the nightly job for `night` (see the module's docstring); None, doing
    nothing, outside the night's window (force: before it opens too; never after it closed).
    The caller commits."""
    now = now.astimezone(UTC)  # instants are stored in UTC (SQLite keeps no offset)
    start, end = (t.astimezone(UTC) for t in window(night, settings))
    if now >= end or (now < start and not force):
        return None
    record = _lock_night(session, night, start, end, now)
    record.budget_gpu_hours, record.updated_at = settings.nightly_budget_gpu_hours, now
    closed = select(HeroNight.night).where(HeroNight.window_end <= now).scalar_subquery()
    ended = _cancel_unstarted(
        session,
        Take.hero_night.in_(closed),
        "NightEnded",
        "night ended: its window closed before the take started",
        now,
    )
    if ended:
        log.info("canceled %d unstarted hero takes of nights whose window closed", len(ended))
    spent = gpu_seconds(session, night) / 3600
    if record.state == STOPPED or spent > record.budget_gpu_hours:
        # on every pass, not just the one that stops the night: a take retried since is canceled again
        canceled = _cancel_unstarted(
            session,
            Take.hero_night == night,
            "OverBudget",
            f"over budget: night {night} spent {spent:.2f} of its {record.budget_gpu_hours:.2f} GPU hours",
            now,
        )
        if record.state != STOPPED or canceled:
            log.warning(
                "night %s over budget (%.2f of %.2f GPU hours): stopped, %d unstarted takes canceled",
                night,
                spent,
                record.budget_gpu_hours,
                len(canceled),
            )
        record.state = STOPPED
        return record
    _plan(session, settings, record, now)
    return record


def _lock_night(session: Session, night: date, start: datetime, end: datetime, now: datetime) -> HeroNight:
    """The night's row, created if absent, locked until commit: planners take turns."""
    session.execute(
        _insert(session, HeroNight)
        .values(
            night=night,
            state=PLANNED,
            window_start=start,
            window_end=end,
            budget_gpu_hours=0.0,
            estimated_gpu_hours=0.0,
            planned=0,
            skipped_over_budget=0,
            started_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["night"])
    )
    return session.execute(
        select(HeroNight).where(HeroNight.night == night).with_for_update().execution_options(populate_existing=True)
    ).scalar_one()


def _plan(session: Session, settings: Settings, record: HeroNight, now: datetime) -> None:
    from models import InputError

    left = record.budget_gpu_hours - record.estimated_gpu_hours
    parents = candidates(session, record.night)
    batch_ids: dict[str, str] = {}
    created, record.skipped_over_budget = 0, 0
    for i, parent in enumerate(parents):
        try:
            values, hours = hero_take(parent, settings)
        except InputError as exc:
            log.warning(
                "take %s cannot render on %s (%s: %s): not planned",
                parent.id,
                settings.hero_checkpoint,
                exc.field,
                exc.message,
            )
            continue
        if hours > left:
            record.skipped_over_budget = len(parents) - i
            break
        if parent.batch_id not in batch_ids:
            batch_ids[parent.batch_id] = _hero_batch(session, session.get(Batch, parent.batch_id), record.night, now)
        row = session.execute(
            _insert(session, Take)
            .values(
                id=new_id(),
                batch_id=batch_ids[parent.batch_id],
                parent_id=parent.id,
                hero_night=record.night,
                state=S.queued,
                max_attempts=settings.max_attempts,
                updated_at=now,
                created_at=now + timedelta(microseconds=i),  # the planned order is the release order's age
                **values,
            )
            .on_conflict_do_nothing(index_elements=["parent_id", "hero_night"])
            .returning(Take.id)
        ).first()
        if row is not None:  # None: another planner made it (the unique key's last word)
            created += 1
            left -= hours
            record.planned += 1
            record.estimated_gpu_hours += hours
    if created or record.skipped_over_budget:
        log.info(
            "night %s: %d hero takes planned (%.2f of %.2f GPU hours estimated), %d skipped over budget",
            record.night,
            created,
            record.estimated_gpu_hours,
            record.budget_gpu_hours,
            record.skipped_over_budget,
        )


def candidates(session: Session, night: date) -> list[Take]:
    """Done takes selected for hero with no hero take for this night and none alive from an
    earlier one, highest priority first, then oldest."""
    hero = aliased(Take)
    has_hero = exists().where(
        hero.parent_id == Take.id,
        hero.hero_night.is_not(None),
        or_(hero.hero_night == night, hero.state.not_in([S.failed, S.canceled])),
    )
    return list(
        session.execute(
            select(Take)
            .where(Take.selected_for_hero.is_(True), Take.state == S.done, Take.pool != "hero", ~has_hero)
            .order_by(Take.priority.desc(), Take.created_at, Take.id)
        ).scalars()
    )


def _hero_batch(session: Session, parent: Batch, night: date, now: datetime) -> str:
    """The night's batch for the hero takes of one parent batch (same producer and project)."""
    key = f"hero-night:{night.isoformat()}:{parent.id}"
    session.execute(
        _insert(session, Batch)
        .values(
            id=new_id(),
            project_id=parent.project_id,
            name=f"hero {night}: {parent.name}"[:200],
            producer=parent.producer,
            request={"hero_night": night.isoformat(), "parent_batch_id": parent.id},
            idempotency_key=key,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["producer", "idempotency_key"])
    )
    return session.execute(
        select(Batch.id).where(Batch.producer == parent.producer, Batch.idempotency_key == key)
    ).scalar_one()


def _insert(session: Session, table):
    """INSERT with ON CONFLICT support in the session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def _cancel_unstarted(session: Session, where, error_class: str, message: str, now: datetime) -> list[str]:
    ids = session.execute(select(Take.id).where(Take.state.in_(UNSTARTED), where)).scalars().all()
    return [take_id for take_id in ids if states.cancel_unstarted(session, take_id, error_class, message, now)]


def gpu_seconds(session: Session, night: date) -> float:
    """GPU seconds recorded by the attempts of the night's hero takes."""
    return float(
        session.execute(
            select(func.coalesce(func.sum(Attempt.gpu_seconds), 0.0))
            .join(Take, Take.id == Attempt.take_id)
            .where(Take.hero_night == night)
        ).scalar_one()
    )


# ---------- the report ----------


@dataclass
class NightReport:
    night: date
    state: str  #: planned | running | done | stopped (over budget)
    takes: int  #: hero takes planned
    skipped_over_budget: int  #: selected takes left for a later night (last pass)
    queued: int
    running: int  #: released or rendering
    done: int
    failed: int
    canceled: int
    gpu_hours: float  #: recorded by the takes' attempts
    estimated_gpu_hours: float
    budget_gpu_hours: float
    window_start: datetime
    window_end: datetime
    started_at: datetime  #: the job's first pass
    updated_at: datetime  #: its last pass


def reports(session: Session, limit: int = 60, night: date | None = None) -> list[NightReport]:
    """The latest nights (or one), newest first, with their takes' counts and GPU hours."""
    stmt = select(HeroNight).order_by(HeroNight.night.desc()).limit(limit)
    records = session.execute(stmt if night is None else stmt.where(HeroNight.night == night)).scalars().all()
    nights = [r.night for r in records]
    counts: dict[date, dict[TakeState, int]] = {n: {} for n in nights}
    for n, state, count in session.execute(
        select(Take.hero_night, Take.state, func.count())
        .where(Take.hero_night.in_(nights))
        .group_by(Take.hero_night, Take.state)
    ):
        counts[n][state] = count
    gpu = dict(
        session.execute(
            select(Take.hero_night, func.sum(Attempt.gpu_seconds))
            .join(Take, Take.id == Attempt.take_id)
            .where(Take.hero_night.in_(nights))
            .group_by(Take.hero_night)
        ).all()
    )
    return [_report(r, counts[r.night], float(gpu.get(r.night) or 0.0)) for r in records]


def _report(record: HeroNight, counts: dict[TakeState, int], seconds: float) -> NightReport:
    running = counts.get(S.released, 0) + counts.get(S.running, 0)
    queued = counts.get(S.queued, 0)
    state = STOPPED if record.state == STOPPED else "running" if running else PLANNED if queued else "done"
    return NightReport(
        night=record.night,
        state=state,
        takes=record.planned,
        skipped_over_budget=record.skipped_over_budget,
        queued=queued,
        running=running,
        done=counts.get(S.done, 0),
        failed=counts.get(S.failed, 0),
        canceled=counts.get(S.canceled, 0),
        gpu_hours=seconds / 3600,
        estimated_gpu_hours=record.estimated_gpu_hours,
        budget_gpu_hours=record.budget_gpu_hours,
        window_start=record.window_start,
        window_end=record.window_end,
        started_at=record.started_at,
        updated_at=record.updated_at,
    )


def night_takes(session: Session, night: date) -> list[tuple[Take, float]]:
    """The night's hero takes, in planned order, with their recorded GPU seconds."""
    return [
        (take, float(seconds))
        for take, seconds in session.execute(
            select(Take, func.coalesce(func.sum(Attempt.gpu_seconds), 0.0))
            .outerjoin(Attempt, Attempt.take_id == Take.id)
            .where(Take.hero_night == night)
            .group_by(Take.id)
            .order_by(Take.created_at, Take.id)
        )
    ]


# ---------- the scheduler: `farm beat` ----------


class SchedulerLock(Protocol):
    def acquire(self) -> bool:
        """Take the lock if it is free, never waiting; True while this holder has it."""

    def release(self) -> None: ...


class PostgresLock:
    """A session-level advisory lock on a connection of its own: Postgres frees it when the
    holder's connection ends, however its process died."""

    def __init__(self, engine: Engine, key: int = LOCK_KEY):
        self.engine, self.key, self.conn = engine, key, None

    def acquire(self) -> bool:
        try:
            if self.conn is not None:
                self.conn.execute(text("SELECT 1"))  # the connection lives: the lock is still ours
                return True
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar_one():
                self.conn = conn
                return True
            conn.close()
            return False
        except DBAPIError:
            log.warning("scheduler lock: database unreachable; not leading until it answers")
            self._drop()
            return False

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                self.conn.close()
            except DBAPIError:
                self._drop()
            self.conn = None

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.invalidate()  # never back to the pool holding a lock
            self.conn.close()
            self.conn = None


class FileLock:
    """flock on a file in the data folder (the embedded default: one machine); the OS frees
    it when the holder's process ends."""

    def __init__(self, path: Path):
        self.path, self.fd = path, None

    def acquire(self) -> bool:
        if self.fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def scheduler_lock(settings: Settings) -> SchedulerLock:
    if settings.database.startswith("postgresql"):
        return PostgresLock(get_engine(settings.database))
    return FileLock(settings.data_dir / "beat.lock")


class Scheduler:
    """Plans the current night on every pass while it holds the scheduler lock; a second
    scheduler waits on standby and takes over when the first one's lock is freed."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        lock: SchedulerLock,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.factory, self.settings, self.lock, self.clock = factory, settings, lock, clock
        self.leading: bool | None = None

    def tick(self) -> HeroNight | None:
        leading = self.lock.acquire()
        if leading != self.leading:
            log.info(
                "leading: this scheduler holds the lock and plans the nights"
                if leading
                else "standby: another scheduler holds the lock; taking over when it is freed"
            )
            self.leading = leading
        now = self.clock()
        night = night_at(now, self.settings) if leading else None
        if night is None:
            return None
        with transaction(self.factory) as session:
            return plan_night(session, self.settings, night, now)

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    self.tick()
                except Exception:  # a database outage: log, wait, try again
                    log.exception("nightly pass failed; retrying")
                stop.wait(self.settings.beat_interval)
        finally:
            self.lock.release()


def serve(settings: Settings) -> int:
    """`farm beat` until SIGTERM or Ctrl-C."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "farm beat: nightly hero runs %s-%s %s, budget %.1f GPU hours a night, a pass every %gs",
        settings.nightly_window_start,
        settings.nightly_window_end,
        settings.nightly_timezone,
        settings.nightly_budget_gpu_hours,
        settings.beat_interval,
    )
    Scheduler(session_factory(settings.database), settings, scheduler_lock(settings)).run(stop)
    return 0
