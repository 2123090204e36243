"""Takes: list and read them, act on them through the state machine, re-render exactly."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse

from ... import batches, states, takes
from ...tables import TakeState
from ..auth import Producer, Viewer, check_manage
from ..deps import SessionDep, SettingsDep, StorageDep
from ..schemas import BatchPublic, PriorityUpdate, SelectUpdate, TakePublic, TakesPublic
from ..views import batch_public, take_public

router = APIRouter(prefix="/takes", tags=["takes"])


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
    q: Annotated[str | None, Query(max_length=200, description="words, any order: prompt or take id")] = None,
    project: Annotated[str | None, Query(max_length=200)] = None,
    sort: Annotated[str, Query(description="newest or oldest first")] = "newest",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> TakesPublic:
    """Takes, newest (or oldest) first, filtered, with their thumbnail URLs; page with `cursor`
    (the previous page's next_cursor). The first page says how many match in all (`total`)."""
    filters = takes.Filters(
        states=state,
        batch_id=batch_id,
        producer=producer,
        pool=pool,
        checkpoint=checkpoint,
        selected=selected,
        q=q,
        project=project,
    )
    found = takes.page(session, filters, limit, cursor, sort)
    data = [
        take_public(
            t, output=found.outputs.get(t.id), storage=storage, seconds=settings.presign_seconds, thumbnail_only=True
        )
        for t in found.takes
    ]
    total = takes.count(session, filters) if cursor is None else None
    return TakesPublic(data=data, count=len(data), total=total, next_cursor=found.next_cursor)


@router.get("/{take_id}", response_model=TakePublic)
def get_take(
    take_id: str, _user: Viewer, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> TakePublic:
    """A take with its attempts, live progress and presigned output URLs."""
    d = takes.detail(session, take_id)
    return take_public(d.take, attempts=d.attempts, output=d.output, storage=storage, seconds=settings.presign_seconds)


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


@router.get(
    "/{take_id}/attempts/{number}/log",
    # text on success; its errors are the API's JSON ones (a response_class would document them as text)
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "the log lines"}},
)
def get_attempt_log(
    take_id: str,
    number: Annotated[int, Path(ge=1, le=10_000)],
    _user: Viewer,
    session: SessionDep,
    storage: StorageDep,
) -> PlainTextResponse:
    """The worker's log lines of one attempt, kept when the attempt ended (404 saying why when
    there are none: still running, or its worker was killed first)."""
    return PlainTextResponse(takes.attempt_log(session, storage, take_id, number))


@router.get("/{take_id}/manifest")
def get_manifest(take_id: str, _user: Viewer, session: SessionDep, storage: StorageDep) -> dict:
    """Everything needed to re-render the clip exactly."""
    return takes.manifest(session, storage, take_id)


@router.post("/{take_id}/rerender", status_code=201, response_model=BatchPublic)
def rerender_take(
    take_id: str, user: Producer, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> BatchPublic:
    """A new take with exactly the manifest's inputs, seed and settings, linked to this one,
    in a new batch of the caller's."""
    batch = takes.rerender(session, storage, take_id, user.name, settings)
    session.commit()
    return batch_public(batch, batches.summary(session, batch))
