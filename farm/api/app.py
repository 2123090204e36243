"""The dispatcher's FastAPI app: the dashboard at /, the REST API (OpenAPI at /docs), live
events, Flower at /flower for operators and, for a local store, /objects."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.exc import DataError

from .. import __version__
from ..db import session_factory
from ..errors import FarmError, InvalidRequest, NotFound, StorageError, TooManyAttempts, Unauthenticated
from ..settings import Settings, get_settings
from ..storage import LocalStorage, Storage, open_storage
from . import flower
from .auth import Viewer
from .events import ChangeFeed
from .routes import assets, auth, batches, nights, ops, takes
from .routes import metrics as metrics_routes
from .schemas import ErrorPublic

#: every error the API answers has one shape: {"detail": "...", "field": "..." | null}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (401, 403, 404, 409, 413, 415, 422, 429, 503)
}
DASHBOARD = Path(__file__).resolve().parent / "dashboard"


class UploadLimit:
    """Refuse an upload whose Content-Length is over the limit before reading its body
    (Starlette would spool it to disk first). Bodies without a length are counted by the
    route as they are read."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/assets":
            length = dict(scope["headers"]).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.limit + 1024 * 1024:  # room for the multipart envelope
                response = JSONResponse(
                    {
                        "detail": f"file: larger than the {self.limit} byte limit; send a shorter "
                        "clip or a smaller image",
                        "field": "file",
                    },
                    status_code=413,
                )
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, storage: Storage | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with httpx.AsyncClient(timeout=30) as client:
            app.state.flower_client = client
            yield
            await app.state.feed.close()

    app = FastAPI(
        title="HuMo render farm",
        version=__version__,
        lifespan=lifespan,
        description="Submit takes, watch them render, fetch the clips. Sign in on the dashboard "
        "(session cookie + X-CSRF-Token) or send `Authorization: Bearer <API token>`.",
    )
    app.state.settings = settings
    app.state.sessions = session_factory(settings.database)
    app.state.storage = storage or open_storage(settings)
    app.state.feed = ChangeFeed(app.state.sessions)

    app.add_middleware(UploadLimit, limit=settings.max_upload_bytes)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "X-Frame-Options", "SAMEORIGIN" if request.url.path.startswith("/flower") else "DENY"
        )
        return response

    @app.exception_handler(FarmError)
    async def farm_error(_request: Request, exc: FarmError) -> JSONResponse:
        """Every domain error: its field as data; the detail is the fix in words (an invalid
        field's detail leaves the field out, as the field says it)."""
        detail = exc.message if isinstance(exc, InvalidRequest) else str(exc)
        headers = {}
        if isinstance(exc, TooManyAttempts):
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, Unauthenticated):
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse({"detail": detail, "field": exc.field}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's own 422s in the API's one error shape: the field, then what is wrong."""
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header"))
        return JSONResponse(
            {"detail": f"{field or 'request'}: {first.get('msg')}", "field": field or None}, status_code=422
        )

    @app.exception_handler(DataError)
    async def data_error(_request: Request, exc: DataError) -> JSONResponse:
        """A value the database refuses (a NUL character, a number out of range): the client's input."""
        return JSONResponse(
            {
                "detail": "request: a value the database cannot store (such as a NUL character or "
                "an out-of-range number); remove it",
                "field": None,
            },
            status_code=422,
        )

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        """Starlette's own (an unknown path, a method not allowed) in the same shape."""
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": detail, "field": None}, status_code=exc.status_code, headers=exc.headers)

    for router in (auth.router, assets.router, batches.router, takes.router, ops.router, nights.router):
        app.include_router(router, responses=ERROR_RESPONSES)
    app.include_router(flower.router)
    app.include_router(metrics_routes.router, responses=ERROR_RESPONSES)

    @app.get("/healthz", tags=["ops"], responses={503: {"model": ErrorPublic}})
    def healthz() -> dict:
        """Readiness: the dispatcher can reach its database (open to anyone, like /livez)."""
        with app.state.sessions() as session:
            session.execute(text("SELECT 1"))
        return {"ok": True, "version": __version__}

    @app.get("/livez", tags=["ops"])
    def livez() -> dict:
        """Liveness of the process alone (no database): open to anyone, like /healthz."""
        return {"ok": True}

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(DASHBOARD / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=DASHBOARD / "static"), name="static")

    if isinstance(app.state.storage, LocalStorage):
        root: Path = app.state.storage.root

        @app.get("/objects/{key:path}", tags=["objects"], include_in_schema=False)
        def get_object(key: str, _user: Viewer) -> FileResponse:
            try:
                path = app.state.storage.path(key)
            except StorageError:
                raise NotFound("object not found") from None
            if not path.is_file() or root not in path.resolve().parents:
                raise NotFound("object not found")
            media = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".json": "application/json"}.get(path.suffix)
            return FileResponse(path, media_type=media)

    return app
