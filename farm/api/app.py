"""The dispatcher's FastAPI app: REST API (OpenAPI at /docs) and, for a local store, /objects."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import func, select, text

from .. import __version__
from ..db import session_factory
from ..errors import FarmError, InvalidRequest, NotFound, StorageError
from ..queue import POOLS
from ..release import alive_workers
from ..settings import Settings, get_settings
from ..storage import LocalStorage, Storage, open_storage
from ..tables import Take, TakeState, utcnow
from .routes import assets, batches, takes


def create_app(settings: Settings | None = None, storage: Storage | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="HuMo render farm", version=__version__,
                  description="Submit takes, watch them render, fetch the clips.")
    app.state.settings = settings
    app.state.sessions = session_factory(settings.database)
    app.state.storage = storage or open_storage(settings)

    @app.exception_handler(FarmError)
    async def farm_error(_request: Request, exc: FarmError) -> JSONResponse:
        body = {"detail": str(exc)}
        if isinstance(exc, InvalidRequest):  # the field apart, the fix in words
            body = {"detail": exc.message, "field": exc.field}
        return JSONResponse(body, status_code=exc.status)

    for router in (assets.router, batches.router, takes.router):
        app.include_router(router)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict:
        with app.state.sessions() as session:
            session.execute(text("SELECT 1"))
        return {"ok": True, "version": __version__}

    @app.get("/pools", tags=["ops"])
    def pools() -> dict:
        """Each pool's live workers and the takes waiting, released and running."""
        out = {}
        with app.state.sessions() as session:
            now = utcnow()
            for pool in POOLS:
                rows = dict(session.execute(select(Take.state, func.count()).where(Take.pool == pool)
                                            .group_by(Take.state)).all())
                out[pool] = {"workers": alive_workers(session, pool, now, settings.worker_timeout),
                             **{s.value: rows.get(s, 0) for s in (TakeState.queued, TakeState.released, TakeState.running)}}
        return out

    if isinstance(app.state.storage, LocalStorage):
        root: Path = app.state.storage.root

        @app.get("/objects/{key:path}", tags=["objects"], include_in_schema=False)
        def get_object(key: str) -> FileResponse:
            try:
                path = app.state.storage.path(key)
            except StorageError:
                raise NotFound("object not found") from None
            if not path.is_file() or root not in path.resolve().parents:
                raise NotFound("object not found")
            media = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".json": "application/json"}.get(path.suffix)
            return FileResponse(path, media_type=media)

    return app
