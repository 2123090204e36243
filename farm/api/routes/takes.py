from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select, tuple_

from ... import batches, states
from ...errors import IllegalTransition, InvalidRequest
from ...tables import Attempt, Batch, Output, Project, Take, TakeState
from ..auth import Producer, Viewer, check_manage
from ..deps import SessionDep, SettingsDep, StorageDep
from ..schemas import BatchPublic, PriorityUpdate, SelectUpdate, TakePublic, TakesPublic
from ..views import batch_public, take_public

router = APIRouter(prefix="/takes", tags=["takes"])


def _cursor(take: Take) -> str:
    return f"{take.created_at.isoformat()}|{take.id}"


@router.get("", response_model=TakesPublic)
def list_takes(
    _user: Viewer,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    state: Annotated[list[TakeState] | None, Query()] = None,
    batch_id: str | None = None,
    producer: str | None = None,
    pool: str | None = None,
    checkpoint: str | None = None,
    selected: bool | None = None,
    q: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> TakesPublic:
    """Takes, newest first, filtered, with their thumbnail URLs; page with `cursor` (the previous
    page's next_cursor)."""
    stmt = select(Take)
    if state:
        stmt = stmt.where(Take.state.in_(state))
    for column, value in (
        (Take.batch_id, batch_id),
        (Take.producer, producer),
        (Take.pool, pool),
        (Take.checkpoint, checkpoint),
        (Take.selected_for_hero, selected),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if q:
        stmt = stmt.where(Take.params["prompt"].as_string().ilike(f"%{q}%"))
    if cursor:
        try:
            at, take_id = cursor.split("|", 1)
            stmt = stmt.where(tuple_(Take.created_at, Take.id) < (datetime.fromisoformat(at), take_id))
        except ValueError:
            raise InvalidRequest("cursor", "not a cursor this API returned; start again without it") from None
    rows = session.execute(stmt.order_by(Take.created_at.desc(), Take.id.desc()).limit(limit + 1)).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    outputs = {
        o.take_id: o
        for o in session.execute(
            select(Output).where(Output.take_id.in_([t.id for t in rows if t.state == TakeState.done]))
        ).scalars()
    }
    data = [
        take_public(t, output=outputs.get(t.id), storage=storage, seconds=settings.presign_seconds, thumbnail_only=True)
        for t in rows
    ]
    return TakesPublic(data=data, count=len(rows), next_cursor=_cursor(rows[-1]) if more else None)


@router.get("/{take_id}", response_model=TakePublic)
def get_take(
    take_id: str, _user: Viewer, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> TakePublic:
    """A take with its attempts, live progress and presigned output URLs."""
    take = states.get(session, take_id)
    attempts = (
        session.execute(select(Attempt).where(Attempt.take_id == take_id).order_by(Attempt.number)).scalars().all()
    )
    output = session.get(Output, take_id)
    return take_public(take, attempts=list(attempts), output=output, storage=storage, seconds=settings.presign_seconds)


def _act(user, session, take_id: str, transition, *args) -> TakePublic:
    """Check the caller may manage the take, apply one state-machine action, commit, and
    answer with the take as it now is."""
    check_manage(user, states.get(session, take_id).producer, f"take {take_id}")
    transition(session, take_id, *args)
    session.commit()
    return take_public(states.get(session, take_id))


@router.post("/{take_id}/cancel", response_model=TakePublic)
def cancel_take(take_id: str, user: Producer, session: SessionDep) -> TakePublic:
    """Cancel at once if not yet rendering; a rendering take stops after its current step."""
    return _act(user, session, take_id, states.cancel)


@router.post("/{take_id}/retry", response_model=TakePublic)
def retry_take(take_id: str, user: Producer, session: SessionDep, settings: SettingsDep) -> TakePublic:
    return _act(user, session, take_id, states.retry, settings.max_attempts)


@router.post("/{take_id}/priority", response_model=TakePublic)
def reprioritise_take(take_id: str, body: PriorityUpdate, user: Producer, session: SessionDep) -> TakePublic:
    return _act(user, session, take_id, states.reprioritise, body.priority)


@router.post("/{take_id}/select", response_model=TakePublic)
def select_take(take_id: str, body: SelectUpdate, user: Producer, session: SessionDep) -> TakePublic:
    """Select (or unselect) a finished take for the nightly hero re-render."""
    return _act(user, session, take_id, states.select_for_hero, body.selected)


def _manifest(session, storage, take_id: str) -> dict:
    take = states.get(session, take_id)
    output = session.get(Output, take_id)
    if output is None:
        raise IllegalTransition(f"take {take_id} is {take.state.value}: it has no manifest until it is done")
    return json.loads(storage.get_bytes(output.manifest_key))


@router.get("/{take_id}/manifest")
def get_manifest(take_id: str, _user: Viewer, session: SessionDep, storage: StorageDep) -> dict:
    """Everything needed to re-render the clip exactly."""
    return _manifest(session, storage, take_id)


@router.post("/{take_id}/rerender", status_code=201, response_model=BatchPublic)
def rerender_take(
    take_id: str, user: Producer, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> BatchPublic:
    """A new take with exactly the manifest's inputs, seed and settings, linked to this one,
    in a new batch of the caller's."""
    manifest = _manifest(session, storage, take_id)
    parent = session.get(Batch, states.get(session, take_id).batch_id)
    take = {
        **manifest["request"],
        "checkpoint": manifest["checkpoint"]["name"],
        "image": manifest["inputs"].get("image"),
        "audio": manifest["inputs"].get("audio"),
    }
    project = session.get(Project, parent.project_id).name
    body = {"project": project, "name": f"re-render of {take_id}", "takes": [take]}
    batch = batches.create_batch(session, body, user.name, settings, parent_ids=[take_id])
    session.commit()
    return batch_public(session, batch)
