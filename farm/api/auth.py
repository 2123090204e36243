"""Who is asking: a dashboard session cookie (with a CSRF token) or an API token, and the
role each route needs. Every route of the API depends on one of the guards below."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from .. import accounts
from ..errors import Forbidden, Unauthenticated
from ..tables import Role, User

COOKIE = "farm_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
_RANK = {Role.viewer: 0, Role.producer: 1, Role.operator: 2}


def _signer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app.state.settings.session_secret, salt="farm-session")


def start_session(request: Request, response: Response, user: User) -> str:
    """Set the signed session cookie; return the CSRF token the dashboard must echo."""
    settings = request.app.state.settings
    csrf = secrets.token_urlsafe(24)
    secure = settings.cookie_secure if settings.cookie_secure is not None else request.url.scheme == "https"
    response.set_cookie(
        COOKIE,
        _signer(request).dumps({"u": user.id, "c": csrf, "e": user.session_epoch}),
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=secure,
    )
    return csrf


def end_session(response: Response) -> None:
    response.delete_cookie(COOKIE)


def _from_cookie(request: Request) -> tuple[str, str, int] | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = _signer(request).loads(raw, max_age=int(request.app.state.settings.session_hours * 3600))
        return data["u"], data["c"], data["e"]
    except (BadSignature, KeyError, TypeError):
        return None


def current_user(request: Request) -> User:
    """The caller, from `Authorization: Bearer <token>` or the session cookie. A cookie
    request that changes something must carry the session's CSRF token in X-CSRF-Token."""
    cached = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    sessions = request.app.state.sessions
    header = request.headers.get("authorization", "")
    user = None
    if header.lower().startswith("bearer "):
        with sessions() as session:
            user = accounts.user_for_token(session, header[7:].strip())
        if user is None:
            raise Unauthenticated(
                "the API token is unknown or revoked; create one with `farm user token NAME` or on the dashboard",
                field="authorization",
            )
        request.state.csrf = None
    elif (cookie := _from_cookie(request)) is not None:
        user_id, csrf, epoch = cookie
        with sessions() as session:
            user = session.get(User, user_id)
        if user is None or user.disabled or user.session_epoch != epoch:  # signed out, password changed
            raise Unauthenticated("expired or ended; sign in again", field="session")
        if (
            request.method not in SAFE_METHODS
            and not secrets.compare_digest(request.headers.get(CSRF_HEADER, ""), csrf)
            and not (getattr(request.state, "csrf_by_origin", False) and same_origin(request))
        ):
            raise Forbidden(f"missing or wrong {CSRF_HEADER} header; reload the dashboard", field="csrf")
        request.state.csrf = csrf
    else:
        raise Unauthenticated("sign in on the dashboard or send `Authorization: Bearer <token>`", field="authorization")
    request.state.user = user
    return user


def same_origin(request: Request) -> bool:
    """The browser says a page of this origin sent the request: Sec-Fetch-Site, or where a
    browser sends none, an Origin equal to the Host the request was sent to."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin, host = request.headers.get("origin"), request.headers.get("host")
    return origin is not None and host is not None and origin.split("://", 1)[-1] == host


def require(role: Role):
    def guard(request: Request) -> User:
        user = current_user(request)
        if _RANK[user.role] < _RANK[role]:
            raise Forbidden(f"{user.name} is a {user.role.value}; this needs a {role.value} or above", field="role")
        return user

    guard.__name__ = f"require_{role.value}"
    return guard


def submitter(user: User, body_producer: str | None) -> str:
    """The caller submits for themselves; an operator may submit on a producer's behalf."""
    if body_producer is None or body_producer.strip().lower() == user.name:
        return user.name
    if user.role != Role.operator:
        raise Forbidden("only an operator may submit on behalf of someone else; leave it out", field="producer")
    return body_producer.strip()[:100]


def can_manage(user: User, producer: str) -> bool:
    """Producers manage their own batches and takes; operators manage everyone's."""
    return user.role == Role.operator or (user.role == Role.producer and user.name == producer)


def check_manage(user: User, producer: str, what: str) -> None:
    if not can_manage(user, producer):
        raise Forbidden(f"{what} belongs to {producer}; only they or an operator can change it", field="owner")


Viewer = Annotated[User, Depends(require(Role.viewer))]
Producer = Annotated[User, Depends(require(Role.producer))]
Operator = Annotated[User, Depends(require(Role.operator))]
