"""Reading takes: the filtered, paged list; one take with its attempts and outputs; its
manifest; a re-render. Changes of state go through farm.states."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, true, tuple_
from sqlalchemy.orm import Session

from . import batches, states
from .errors import IllegalTransition, InvalidRequest, NotFound, ObjectMissing
from .settings import Settings
from .storage import Storage, log_key
from .tables import Attempt, AttemptState, Batch, Output, Project, Take, TakeState, as_utc, utcnow


@dataclass(frozen=True)
class Filters:
    states: list[TakeState] | None = None
    batch_id: str | None = None
    producer: str | None = None
    pool: str | None = None
    checkpoint: str | None = None
    selected: bool | None = None
    q: str | None = None  #: words, each in the prompt (any case, any order) or the start of the take's id
    project: str | None = None  #: the project's name, any case


SORTS = ("newest", "oldest")  #: the orders a page can come in (both keyset-paged on created_at, id)
MAX_WORDS = 12  #: words of a search
MIN_ID = 4  #: characters of a take id a search word must have to match ids
LOG_GRACE = timedelta(seconds=30)  #: after an attempt ends, while its worker stores its log


@dataclass(frozen=True)
class Page:
    takes: list[Take]
    outputs: dict[str, Output]  #: of the done takes, by take id
    next_cursor: str | None


def _cursor(take: Take) -> str:
    return f"{take.created_at.isoformat()}|{take.id}"


def _word(word: str):
    """SQL: one search word is in the prompt (any case), or starts the take's id."""
    in_prompt = Take.params["prompt"].as_string().icontains(word, autoescape=True)
    if len(word) < MIN_ID:
        return in_prompt
    return or_(in_prompt, Take.id.startswith(word.lower(), autoescape=True))


def matching(filters: Filters):
    """SQL: the conditions a take must meet to be listed."""
    f, where = filters, list[ColumnElement[bool]]()
    if f.states:
        where.append(Take.state.in_(f.states))
    for column, value in (
        (Take.batch_id, f.batch_id),
        (Take.pool, f.pool),
        (Take.checkpoint, f.checkpoint),
        (Take.selected_for_hero, f.selected),
    ):
        if value is not None:
            where.append(column == value)
    if f.producer:  # people type names as they say them: "Ana" finds ana's takes
        where.append(func.lower(Take.producer) == f.producer.strip().lower())
    if f.project:
        named = select(Batch.id).join(Project, Project.id == Batch.project_id)
        where.append(Take.batch_id.in_(named.where(func.lower(Project.name) == f.project.strip().lower())))
    words = (f.q or "").split()
    if len(words) > MAX_WORDS:
        raise InvalidRequest("q", f"{len(words)} words; search with at most {MAX_WORDS}")
    where.extend(_word(w) for w in words)
    return and_(true(), *where)


def page(session: Session, filters: Filters, limit: int, cursor: str | None = None, sort: str = "newest") -> Page:
    """Takes newest (or oldest) first; `cursor` is the previous page's next_cursor (keyset paging)."""
    if sort not in SORTS:
        raise InvalidRequest("sort", f"{sort!r} is not an order; choose {' or '.join(SORTS)}")
    stmt = select(Take).where(matching(filters))
    key = tuple_(Take.created_at, Take.id)
    if cursor:
        try:
            at, take_id = cursor.split("|", 1)
            after = (datetime.fromisoformat(at), take_id)
        except ValueError:
            raise InvalidRequest("cursor", "not a cursor this API returned; start again without it") from None
        stmt = stmt.where(key < after if sort == "newest" else key > after)
    order = (Take.created_at.desc(), Take.id.desc()) if sort == "newest" else (Take.created_at, Take.id)
    rows = session.execute(stmt.order_by(*order).limit(limit + 1)).scalars().all()
    more, rows = len(rows) > limit, list(rows[:limit])
    done = [t.id for t in rows if t.state == TakeState.done]
    outputs = {o.take_id: o for o in session.execute(select(Output).where(Output.take_id.in_(done))).scalars()}
    return Page(rows, outputs, _cursor(rows[-1]) if more else None)


def count(session: Session, filters: Filters) -> int:
    """How many takes the filters match (all pages)."""
    return session.execute(select(func.count()).select_from(Take).where(matching(filters))).scalar_one()


@dataclass(frozen=True)
class Detail:
    take: Take
    attempts: list[Attempt]
    output: Output | None


def detail(session: Session, take_id: str) -> Detail:
    take = states.get(session, take_id)
    attempts = session.execute(select(Attempt).where(Attempt.take_id == take_id).order_by(Attempt.number))
    return Detail(take, list(attempts.scalars()), session.get(Output, take_id))


def attempt_log(session: Session, storage: Storage, take_id: str, number: int) -> str:
    """The worker's log lines of one attempt (stored when it ended)."""
    states.get(session, take_id)
    attempt = session.execute(
        select(Attempt).where(Attempt.take_id == take_id, Attempt.number == number)
    ).scalar_one_or_none()
    if attempt is None:
        raise NotFound(f"take {take_id} has no attempt {number}; GET /takes/{take_id} lists them", field="number")
    try:
        return storage.get_bytes(log_key(take_id, number)).decode("utf-8", "replace")
    except ObjectMissing:
        if attempt.state == AttemptState.running:
            raise NotFound(f"attempt {number} is still running: its log is kept when it ends", field="number") from None
        # the worker stores the log just after it records the end: a moment's gap, not a loss
        if attempt.finished_at is not None and utcnow() - as_utc(attempt.finished_at) < LOG_GRACE:
            raise NotFound(
                f"attempt {number} ended just now: its log is being kept; ask again",
                field="number",
            ) from None
        raise NotFound(
            f"attempt {number} ended {attempt.state.value} with no log: its worker stopped (killed, or lost "
            "the take) before it could keep one; its error says what is known",
            field="number",
        ) from None


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
