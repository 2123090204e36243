"""Planning a night: selected takes become hero takes inside the window and the budget
(the steps are in farm.nightly's docstring)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session, aliased

from models import InputError, RenderRequest
from models.request import PARAMS

from .. import consent, db, states, usage
from ..batches import pool_of
from ..settings import Settings
from ..tables import Batch, HeroNight, Take, TakeState, new_id
from .window import window

log = logging.getLogger(__name__)
S = TakeState
PLANNED, STOPPED = "planned", "stopped"  #: HeroNight.state
ANCHOR_LATENT_FRAMES = 26  #: hero_step_seconds was measured on 97 frames + a reference: 25 + 1 latent frames


def hero_take(parent: Take, settings: Settings) -> tuple[dict, float]:
    """A parent's hero take (row values without ids and times) and its GPU-hour estimate;
    models.InputError if the hero checkpoint cannot render it."""
    keep = [p.name for p in PARAMS if p.hero == "keep" and parent.params.get(p.name) is not None]
    params = {name: parent.params[name] for name in keep}
    resolved = RenderRequest(
        checkpoint=settings.hero_checkpoint, image=parent.image_sha256, audio=parent.audio_sha256, **params
    ).resolved(probe_files=False)
    params.update({p.name: p.read(resolved) for p in PARAMS if p.hero == "resolve"})  # e.g. its default size
    # every window's latent frames (a long take's overlaps are rendered twice), each window's reference one more
    latent_frames = sum(w.length + ("I" in resolved.mode) for w in resolved.windows)
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
    close_ended(session, now)
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


def close_ended(session: Session, now: datetime) -> list[str]:
    """Cancel the unstarted hero takes of nights whose window closed ("night ended"); `farm
    beat` does it on every pass, so a night is closed right after its window, not the next
    evening. The caller commits."""
    closed = select(HeroNight.night).where(HeroNight.window_end <= now.astimezone(UTC)).scalar_subquery()
    ended = _cancel_unstarted(
        session,
        Take.hero_night.in_(closed),
        "NightEnded",
        "night ended: its window closed before the take started",
        now,
    )
    if ended:
        log.info("canceled %d unstarted hero takes of nights whose window closed", len(ended))
    return ended


def _lock_night(session: Session, night: date, start: datetime, end: datetime, now: datetime) -> HeroNight:
    """The night's row, created if absent, locked until commit: planners take turns."""
    session.execute(
        db.insert(session, HeroNight)
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

    left = record.budget_gpu_hours - record.estimated_gpu_hours
    parents = candidates(session, record.night)
    batch_ids: dict[str, str] = {}
    created, record.skipped_over_budget, record.skipped_consent = 0, 0, 0
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
        values = consent.decide(session, [values], settings, start=now, end=record.window_end, refuse=False)[0]
        if values["consent"]["outcome"] == "refused":
            record.skipped_consent += 1
            consent.skipped(session, parent.id, record.night, values["consent"]["missing"])
            continue
        if hours > left:
            record.skipped_over_budget = len(parents) - i
            break
        if parent.batch_id not in batch_ids:
            batch = session.get(Batch, parent.batch_id)
            assert batch is not None, f"take {parent.id}: batch {parent.batch_id} missing"  # a non-null foreign key
            batch_ids[parent.batch_id] = _hero_batch(session, batch, record.night, now)
        row = session.execute(
            db.insert(session, Take)
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
        or_(hero.hero_night == night, hero.state.not_in(states.RETRYABLE)),
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
        db.insert(session, Batch)
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


def _cancel_unstarted(session: Session, where, error_class: str, message: str, now: datetime) -> list[str]:
    ids = session.execute(select(Take.id).where(Take.state.in_(states.UNSTARTED), where)).scalars().all()
    return [take_id for take_id in ids if states.cancel_unstarted(session, take_id, error_class, message, now)]


def gpu_seconds(session: Session, night: date) -> float:
    """GPU seconds recorded by the attempts of the night's hero takes."""
    return usage.total(session, [Take.hero_night == night])
