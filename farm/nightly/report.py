"""What each night planned, ran, failed and cost."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import states, usage
from ..tables import HeroNight, Take, TakeState, as_utc, utcnow
from .planning import PLANNED, STOPPED

CLOSED = "closed"  #: a report's state: the window ended with takes that never started

S = TakeState


@dataclass
class NightReport:
    night: date
    state: str  #: planned | running | done | stopped (over budget) | closed (its window ended with takes unstarted)
    takes: int  #: hero takes planned
    skipped_over_budget: int  #: selected takes left for a later night (last pass)
    skipped_consent: int  #: selected takes their consent does not cover (last pass; farm.consent)
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


def reports(
    session: Session, limit: int = 60, night: date | None = None, now: datetime | None = None
) -> list[NightReport]:
    """The latest nights (or one), newest first, with their takes' counts and GPU hours, as of `now`."""
    now = now or utcnow()
    stmt = select(HeroNight).order_by(HeroNight.night.desc()).limit(limit)
    records = session.execute(stmt if night is None else stmt.where(HeroNight.night == night)).scalars().all()
    nights = [r.night for r in records]
    counts = states.counts(session, Take.hero_night, nights)
    gpu = usage.by(session, Take.hero_night, where=[Take.hero_night.in_(nights)])
    return [_report(r, counts[r.night], gpu[r.night].gpu_seconds if r.night in gpu else 0.0, now) for r in records]


def _report(record: HeroNight, counts: dict[TakeState, int], seconds: float, now: datetime) -> NightReport:
    running = sum(counts.get(s, 0) for s in states.ACTIVE)
    queued, canceled = counts.get(S.queued, 0), counts.get(S.canceled, 0)
    # the release loop starts a night's takes only inside its window: once it ended, the unstarted
    # never will (the next pass of `farm beat` cancels them), so the night is closed at once
    ended = as_utc(record.window_end) <= as_utc(now) and (queued or canceled)
    state = "running" if running else CLOSED if ended else PLANNED if queued else "done"
    if record.state == STOPPED:
        state = STOPPED
    return NightReport(
        night=record.night,
        state=state,
        takes=record.planned,
        skipped_over_budget=record.skipped_over_budget,
        skipped_consent=record.skipped_consent,
        queued=queued,
        running=running,
        done=counts.get(S.done, 0),
        failed=counts.get(S.failed, 0),
        canceled=canceled,
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
    takes = session.execute(select(Take).where(Take.hero_night == night).order_by(Take.created_at, Take.id))
    spent = usage.by(session, Take.id, where=[Take.hero_night == night])
    return [(take, spent[take.id].gpu_seconds if take.id in spent else 0.0) for take in takes.scalars()]
