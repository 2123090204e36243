"""Errors into HTTP answers, in the API's one shape: {"detail": "...", "field": "..." | null}.

Domain errors (farm.errors) carry their field as data; FastAPI's own validation errors name
theirs by location; a value the database refuses is the client's input, not a 500.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError

from ..errors import FarmError, InvalidRequest, PayloadTooLarge, TooManyAttempts, Unauthenticated
from .schemas import ErrorPublic

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


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own (an unknown path, a method not allowed)."""
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse({"detail": detail, "field": None}, status_code=exc.status_code, headers=exc.headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(FarmError, _farm_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(HTTPException, _http_error)


class UploadLimit:
    """ASGI middleware: refuse an upload whose Content-Length is over the limit before its
    body is read (Starlette would spool it to disk first). Bodies without a length are
    counted as they are read (farm.assets)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/assets":
            length = dict(scope["headers"]).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.limit + 1024 * 1024:  # room for the multipart envelope
                too_large = PayloadTooLarge(
                    f"larger than the {self.limit} byte limit; send a shorter clip or a smaller image", field="file"
                )
                return await error_response(too_large)(scope, receive, send)
        return await self.app(scope, receive, send)
