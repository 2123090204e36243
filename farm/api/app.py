"""The dispatcher's FastAPI app: the dashboard at /, the REST API (OpenAPI at /docs), live
events, Flower at /flower for operators and, for a local store, /objects."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..db import session_factory
from ..errors import InvalidRequest
from ..settings import Settings, get_settings
from ..storage import LocalStorage, Storage, open_storage
from . import flower, handlers
from .events import ChangeFeed
from .handlers import ENVELOPE, BodyLimit, Limit
from .schemas import check_presets
from .routes import assets, auth, batches, nights, ops, site, takes
from .routes import metrics as metrics_routes


def create_app(settings: Settings | None = None, storage: Storage | None = None) -> FastAPI:
    settings = settings or get_settings()
    check_presets(settings.presets, settings.explore_checkpoint)  # a bad preset stops the start, named

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

    # the route's own answer (a 422) to a file over MAX_FILE
    batch_file = InvalidRequest("file", f"larger than {batches.MAX_FILE // 1024} KiB; split the batch")
    app.add_middleware(
        BodyLimit, settings=settings, routes={"/batches/file": Limit(batches.MAX_FILE + ENVELOPE, batch_file)}
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "X-Frame-Options", "SAMEORIGIN" if request.url.path.startswith("/flower") else "DENY"
        )
        return response

    handlers.install(app)
    for router in (
        auth.router,
        assets.router,
        assets.lora_router,
        batches.router,
        takes.router,
        ops.router,
        nights.router,
    ):
        app.include_router(router, responses=handlers.ERROR_RESPONSES)
    app.include_router(flower.router)
    app.include_router(metrics_routes.router, responses=handlers.ERROR_RESPONSES)

    app.include_router(site.router)
    app.mount("/static", StaticFiles(directory=site.DASHBOARD / "static"), name="static")
    if isinstance(app.state.storage, LocalStorage):
        app.include_router(site.objects)
    return app
