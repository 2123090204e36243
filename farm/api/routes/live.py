"""A take's live view: place in the queue, ETA, and the preview of its current prediction."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from fastapi.responses import Response

from ... import live
from ..auth import Viewer
from ..deps import SessionDep, StorageDep
from ..schemas import ErrorPublic, LivePublic

router = APIRouter(prefix="/takes", tags=["takes"])


@router.get("/{take_id}/live", response_model=LivePublic)
def take_live(take_id: str, _user: Viewer, session: SessionDep, storage: StorageDep) -> LivePublic:
    """Where a queued take stands in its pool's release order; a running take's step, ETA and
    whether it has a preview (GET /takes/{id}/preview.jpg)."""
    return LivePublic(**asdict(live.live(session, storage, take_id)))


@router.get(
    "/{take_id}/preview.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorPublic}},
)
def take_preview(take_id: str, _user: Viewer, session: SessionDep, storage: StorageDep) -> Response:
    """The running take's latest preview: its current prediction, a few steps old at most."""
    return Response(
        live.preview(session, storage, take_id), media_type="image/jpeg", headers={"Cache-Control": "no-store"}
    )
