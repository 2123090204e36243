"""The dispatcher's FastAPI app: the dashboard at /, the REST API (OpenAPI at /docs), live
events, Flower at /flower for operators and, for a local store, /objects."""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..assets import too_large
from ..db import session_factory
from ..errors import InvalidRequest
from ..settings import Settings, get_settings
from ..storage import LocalStorage, Storage, open_storage
from . import flower, handlers
from .events import ChangeFeed
from .handlers import ENVELOPE, BodyLimit, Limit
from .routes import assets, auth, batches, nights, ops, projects, site, takes, webhooks
from .routes import consent as consent_routes
from .routes import live as live_routes
from .routes import metrics as metrics_routes
from .schemas import check_presets

#: Swagger UI's and ReDoc's files as the fastapi-offline package ships them: the API docs
#: load nothing from the internet (operators' networks are often closed)
DOCS_ASSETS = Path(str(files("fastapi_offline") / "static"))


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
        docs_url=None,  # served by add_docs, from local files
        redoc_url=None,
        description="Submit takes, watch them render, fetch the clips. Sign in on the dashboard "
        "(session cookie + X-CSRF-Token) or send `Authorization: Bearer <API token>`.",
    )
    app.state.settings = settings
    app.state.sessions = session_factory(settings.database)
    app.state.storage = storage or open_storage(settings)
    app.state.feed = ChangeFeed(app.state.sessions)
    app.state.leadership = None  #: farm up's farm.leader.Leadership: whether this process leads

    # the route's answer (a 422) to a batch file and its media over their limit
    batch_file = InvalidRequest("file", batches.TOO_LARGE.format(settings.max_upload_bytes // 2**20))
    app.add_middleware(
        BodyLimit,
        settings=settings,
        routes={
            "/batches/file": Limit(batches.with_media(settings) + ENVELOPE, batch_file),
            "/batches/file/estimate": Limit(batches.with_media(settings) + ENVELOPE, batch_file),
            "/consent/evidence": Limit(
                settings.max_upload_bytes + ENVELOPE, too_large(settings.max_upload_bytes, consent_routes.EVIDENCE_FIX)
            ),
        },
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
        live_routes.router,
        ops.router,
        nights.router,
        projects.router,
        consent_routes.router,
        webhooks.router,
    ):
        app.include_router(router, responses=handlers.ERROR_RESPONSES)
    app.include_router(flower.router)
    app.include_router(metrics_routes.router, responses=handlers.ERROR_RESPONSES)

    add_docs(app)
    app.include_router(site.router)
    app.mount("/static", StaticFiles(directory=site.DASHBOARD / "static"), name="static")
    if isinstance(app.state.storage, LocalStorage):
        app.include_router(site.objects)
    return app


def add_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc, open to anyone like /openapi.json, on the assets under
    /docs/assets (DOCS_ASSETS): no CDN, no web fonts."""
    assets = "/docs/assets"
    app.mount(assets, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    def root(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{root(request)}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root(request)}/docs/oauth2-redirect",
            swagger_js_url=f"{root(request)}{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{root(request)}{assets}/swagger-ui.css",
            swagger_favicon_url=f"{root(request)}{assets}/favicon.png",
            # no badge from the online validator: nothing is fetched from outside the farm
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=f"{root(request)}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root(request)}{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{root(request)}{assets}/favicon.png",
            with_google_fonts=False,
        )
