"""Errors into HTTP answers, in the API's one shape: {"detail": "...", "field": "..." | null}.

Domain errors (farm.errors) carry their field as data; FastAPI's own validation errors name
theirs by location; a value the database refuses is the client's input, not a 500; a
database that is away (refused, frozen, restarting) is a 503 to try again, not a 500.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ..assets import LORA_FIX, MEDIA_FIX, too_large
from ..db import unreachable
from ..errors import FarmError, InvalidRequest, PayloadTooLarge, TooManyAttempts, Unauthenticated
from ..settings import Settings
from .schemas import ErrorPublic

log = logging.getLogger(__name__)
DATABASE_AWAY = "the farm's database is not answering; try again shortly"
DATABASE_BUSY = "the farm's database is busy (every connection in use); try again shortly"
RETRY_AFTER = "5"  #: seconds a client is told to wait before it tries again after a 503

#: documented on every route: each of these answers has the one shape
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (401, 403, 404, 409, 413, 415, 422, 429, 503)
}


def error_response(exc: FarmError) -> JSONResponse:
    """An invalid field's detail leaves the field out (the field says it); other errors say
    "field: fix" in the detail as well."""
    detail = exc.message if isinstance(exc, InvalidRequest) else str(exc)
    headers = {}
    if isinstance(exc, TooManyAttempts):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"detail": detail, "field": exc.field}, status_code=exc.status, headers=headers)


async def _farm_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FarmError)
    return error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own 422s: the field, then what is wrong."""
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header"))
    return JSONResponse({"detail": f"{field or 'request'}: {first.get('msg')}", "field": field or None}, 422)


async def _data_error(_request: Request, _exc: Exception) -> JSONResponse:
    """A value the database refuses (a NUL character, a number out of range)."""
    detail = "request: a value the database cannot store (such as a NUL character or an out-of-range number); remove it"
    return JSONResponse({"detail": detail, "field": None}, status_code=422)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """The database refused the connection, stopped answering or dropped it: 503, retry.
    Any other database error is not the client's to retry: it stays a logged 500."""
    assert isinstance(exc, DBAPIError)
    if not unreachable(exc):
        raise exc
    log.warning(
        "%s %s: database unreachable (%s: %s)", request.method, request.url.path, type(exc.orig).__name__, exc.orig
    )
    return JSONResponse({"detail": DATABASE_AWAY, "field": None}, status_code=503, headers={"Retry-After": RETRY_AFTER})


async def _pool_timeout(request: Request, _exc: Exception) -> JSONResponse:
    """No pooled connection came free within db_pool_timeout."""
    log.warning("%s %s: no free database connection", request.method, request.url.path)
    return JSONResponse({"detail": DATABASE_BUSY, "field": None}, status_code=503, headers={"Retry-After": RETRY_AFTER})


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own (an unknown path, a method not allowed)."""
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse({"detail": detail, "field": None}, status_code=exc.status_code, headers=exc.headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(FarmError, _farm_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DataError, _data_error)  # the most specific class's handler wins
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeout, _pool_timeout)
    app.add_exception_handler(HTTPException, _http_error)


ENVELOPE = 1024 * 1024  #: bytes a multipart form may add around the file it carries


@dataclass(frozen=True)
class Limit:
    """A request body's limit: the bytes accepted, and the answer past them (a 413, or the
    route's own answer to a body too large where it has one)."""

    size: int
    error: FarmError


class _BodyTooLarge(Exception):
    """Raised from `receive` once the body has passed its limit: the app reads no further."""


class BodyLimit:
    """ASGI middleware: every request body has a limit, applied as it arrives. A Content-Length
    over it is refused before anything is read; a body without one (chunked) is counted as it
    is received and refused (413) as soon as the count passes the limit, before the app has
    it whole (Starlette spools a multipart upload whole before a route sees it). The limit is
    the route's in `routes` (by path), settings.max_body_bytes for any other; /assets accepts
    settings.max_upload_bytes plus the multipart envelope (farm.assets counts the file itself).
    What the client sends after the answer is discarded unread (uvicorn)."""

    def __init__(self, app, settings: Settings, routes: dict[str, Limit] | None = None):
        upload = settings.max_upload_bytes
        self.app = app
        self.default = Limit(
            settings.max_body_bytes,
            PayloadTooLarge(
                f"the request body is over the {settings.max_body_bytes} byte limit; "
                "send fewer takes per batch (or a sweep, or a batch file)"
            ),
        )
        self.routes = {
            "/assets": Limit(upload + ENVELOPE, too_large(upload, MEDIA_FIX)),
            "/loras": Limit(settings.max_lora_bytes + ENVELOPE, too_large(settings.max_lora_bytes, LORA_FIX)),
            **(routes or {}),
        }

    def limit_of(self, scope) -> Limit:
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        return self.routes.get(path, self.default)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_of(scope)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit.size:
            return await error_response(limit.error)(scope, receive, send)
        received, over, started, replaced = 0, False, False, False

        async def counted():
            nonlocal received, over
            if over:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.size:
                    over = True
                    raise _BodyTooLarge
            return message

        async def guarded(message):
            # past the limit, the app answers whatever its body parser made of the error
            # (FastAPI: 400); the client gets the 413 instead
            nonlocal started, replaced
            if message["type"] == "http.response.start":
                started = True
                if over:
                    replaced = True
                    return await error_response(limit.error)(scope, receive, send)
            if not replaced:
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except _BodyTooLarge:
            if started:
                raise
            await error_response(limit.error)(scope, receive, send)
