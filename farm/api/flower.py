"""Flower, the Celery monitor, behind the farm's own sign-in: operators reach it at
/flower through the dispatcher; Flower itself listens on loopback with a basic-auth
password that only the dispatcher knows. A Flower that refuses that password is another
farm's (another secret): its page is never served here."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Annotated
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from ..errors import FlowerUnavailable, NotFound
from ..settings import Settings, redact
from ..tables import Role, User
from .auth import require

router = APIRouter(include_in_schema=False)
HOP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-authorization",
    "authorization",
    "cookie",
    "host",
    "content-length",
}


def flower_operator(request: Request) -> User:
    """An operator, as every route asks; but Flower's own pages send their POSTs (the task
    table, the worker controls) without the dashboard's CSRF header, so for them a request
    the browser says comes from this origin stands in for it (the SameSite=Lax cookie is
    never sent on another site's POST, and Sec-Fetch-Site cannot be set by a page)."""
    request.state.csrf_by_origin = True
    return require(Role.operator)(request)


FlowerOperator = Annotated[User, Depends(flower_operator)]


def flower_basic_auth(settings: Settings) -> str:
    """user:password for Flower's --basic-auth, derived from the farm's secret."""
    return "farm:" + hmac.new(settings.session_secret.encode(), b"flower", hashlib.sha256).hexdigest()[:32]


@router.api_route("/flower", methods=["GET", "POST"])
@router.api_route("/flower/{path:path}", methods=["GET", "POST"])
async def flower(request: Request, _user: FlowerOperator, path: str = "") -> Response:
    settings: Settings = request.app.state.settings
    client: httpx.AsyncClient = request.app.state.flower_client
    if any(part in (".", "..") for part in path.split("/")):
        raise NotFound("no such page", field="flower")  # nothing beside Flower is reachable through here
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
    # the dashboard's origin is not Flower's loopback address, which Flower would refuse; the
    # origin was checked above (flower_operator), and Sec-Fetch-Site goes on as the browser sent it
    headers = {k: v for k, v in headers.items() if k.lower() != "origin"}
    headers["Authorization"] = "Basic " + base64.b64encode(flower_basic_auth(settings).encode()).decode()
    url = f"{settings.flower}/flower/{quote(path, safe='/')}"
    try:
        upstream = await client.send(
            client.build_request(
                request.method, url, params=request.query_params, headers=headers, content=await request.body()
            ),
            stream=True,
        )
    except httpx.HTTPError:
        raise FlowerUnavailable(
            f"Flower at {redact(settings.flower)} is not reachable; `farm up` starts it, or set FARM_FLOWER_URL",
            field="flower",
        ) from None
    if upstream.status_code == 401:  # our password is refused: not this farm's Flower
        await upstream.aclose()
        raise FlowerUnavailable(
            f"Flower at {redact(settings.flower)} is another farm's (it refuses this farm's password); `farm up` "
            "starts this farm's own on a free port, or set FARM_FLOWER_PORT or FARM_FLOWER_URL to this farm's Flower",
            field="flower",
        )
    kept = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS | {"content-encoding"}}
    return StreamingResponse(
        upstream.aiter_bytes(),
        status_code=upstream.status_code,
        headers=kept,
        background=BackgroundTask(upstream.aclose),
    )
