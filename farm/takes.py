"""Reading takes: the filtered, paged list; one take with its attempts and outputs; its
manifest; a re-render. Changes of state go through farm.states."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from . import batches, states
from .errors import IllegalTransition, InvalidRequest
from .settings import Settings
from .storage import Storage
from .tables import Attempt, Batch, Output, Project, Take, TakeState


@dataclass(frozen=True)
class Filters:
    states: list[TakeState] | None = None
    batch_id: str | None = None
    producer: str | None = None
    pool: str | None = None
    checkpoint: str | None = None
    selected: bool | None = None
    q: str | None = None  #: part of the prompt, any case


@dataclass(frozen=True)
class Page:
    takes: list[Take]
    outputs: dict[str, Output]  #: of the done takes, by take id
    next_cursor: str | None


def _cursor(take: Take) -> str:
    return f"{take.created_at.isoformat()}|{take.id}"


def page(session: Session, filters: Filters, limit: int, cursor: str | None = None) -> Page:
    """Takes newest first; `cursor` is the previous page's next_cursor (keyset paging)."""
    f = filters
    stmt = select(Take)
    if f.states:
        stmt = stmt.where(Take.state.in_(f.states))
    for column, value in (
        (Take.batch_id, f.batch_id),
        (Take.producer, f.producer),
        (Take.pool, f.pool),
        (Take.checkpoint, f.checkpoint),
        (Take.selected_for_hero, f.selected),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if f.q:
        stmt = stmt.where(Take.params["prompt"].as_string().ilike(f"%{f.q}%"))
    if cursor:
        try:
            at, take_id = cursor.split("|", 1)
            stmt = stmt.where(tuple_(Take.created_at, Take.id) < (datetime.fromisoformat(at), take_id))
        except ValueError:
            raise InvalidRequest("cursor", "not a cursor this API returned; start again without it") from None
    rows = session.execute(stmt.order_by(Take.created_at.desc(), Take.id.desc()).limit(limit + 1)).scalars().all()
    more, rows = len(rows) > limit, list(rows[:limit])
    done = [t.id for t in rows if t.state == TakeState.done]
    outputs = {o.take_id: o for o in session.execute(select(Output).where(Output.take_id.in_(done))).scalars()}
    return Page(rows, outputs, _cursor(rows[-1]) if more else None)


@dataclass(frozen=True)
class Detail:
    take: Take
    attempts: list[Attempt]
    output: Output | None


def detail(session: Session, take_id: str) -> Detail:
    take = states.get(session, take_id)
    attempts = session.execute(select(Attempt).where(Attempt.take_id == take_id).order_by(Attempt.number))
    return Detail(take, list(attempts.scalars()), session.get(Output, take_id))


def manifest(session: Session, storage: Storage, take_id: str) -> dict:
    """Everything needed to re-render the take's clip exactly."""
    take = states.get(session, take_id)
    output = session.get(Output, take_id)
    if output is None:
        raise IllegalTransition(f"take {take_id} is {take.state.value}: it has no manifest until it is done")
    return json.loads(storage.get_bytes(output.manifest_key))


def rerender(session: Session, storage: Storage, take_id: str, producer: str, settings: Settings) -> Batch:
    """A new take with exactly the manifest's inputs, seed and settings, linked to this one,
    in a new batch of `producer`'s. The caller commits."""
    recorded = manifest(session, storage, take_id)
    parent = session.get(Batch, states.get(session, take_id).batch_id)
    take = {
        **recorded["request"],
        "checkpoint": recorded["checkpoint"]["name"],
        "image": recorded["inputs"].get("image"),
        "audio": recorded["inputs"].get("audio"),
        "loras": [{"asset": u["sha256"], "strength": u["strength"]} for u in recorded["inputs"].get("loras") or []],
    }
    project = "default"
    if parent is not None:
        owner = session.get(Project, parent.project_id)
        assert owner is not None, f"batch {parent.id}: project {parent.project_id} missing"  # a non-null foreign key
        project = owner.name
    body = {"project": project, "name": f"re-render of {take_id}", "takes": [take]}
    return batches.create_batch(session, body, producer, settings, parent_ids=[take_id])
