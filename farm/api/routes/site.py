"""The open pages: readiness and liveness, the dashboard, and (for a local store) /objects."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from sqlalchemy import text

from ... import __version__
from ...errors import NotFound, StorageError
from ..auth import Viewer
from ..schemas import ErrorPublic

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"
MEDIA_TYPES = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".json": "application/json"}

router = APIRouter()
objects = APIRouter(tags=["objects"], include_in_schema=False)  #: only where the store is a local folder


@router.get("/healthz", tags=["ops"], responses={503: {"model": ErrorPublic}})
def healthz(request: Request) -> dict:
    """Readiness: the dispatcher can reach its database (open to anyone, like /livez); a 503
    within seconds when it cannot (refused or silent: farm.db's timeouts, api.handlers).
    `release_leader`: whether this process runs the release loop (farm.leader)."""
    with request.app.state.sessions() as session:
        session.execute(text("SELECT 1"))
    leadership = request.app.state.leadership
    return {
        "ok": True,
        "version": __version__,
        "release_leader": leadership is not None and leadership.leading.is_set(),
    }


@router.get("/livez", tags=["ops"])
async def livez() -> dict:
    """Liveness of the process alone (no database; on the event loop, so no busy thread pool
    delays it): open to anyone, like /healthz."""
    return {"ok": True}


@router.get("/", include_in_schema=False)
def dashboard() -> FileResponse:
    return FileResponse(DASHBOARD / "index.html", headers={"Cache-Control": "no-cache"})


@objects.get("/objects/{key:path}")
def get_object(key: str, _user: Viewer, request: Request) -> FileResponse:
    store = request.app.state.storage
    try:
        path = store.path(key)
    except StorageError:
        raise NotFound("object not found") from None
    if not path.is_file() or store.root not in path.resolve().parents:
        raise NotFound("object not found")
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix))
