"""Sign in and out, who am I, API tokens, and (for operators) the users."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ... import accounts
from ...errors import FarmError, NotFound, Unauthenticated
from ...tables import User
from ..auth import Operator, Viewer, current_user, end_session, start_session
from ..deps import SessionDep
from ..schemas import Login, Me, SessionPublic, TokenCreate, TokenCreated, UserCreate, UserPublic

router = APIRouter(tags=["auth"])


@router.post("/auth/login", response_model=Me)
async def login(body: Login, request: Request, response: Response) -> Me:
    """Sign in to the dashboard: sets the session cookie. Five wrong passwords for a name
    from one address lock that pair out for 15 minutes (429 with Retry-After). The password
    hash runs apart from the threads serving the API: a flood of logins slows logins only."""
    address = request.client.host if request.client else "unknown"
    user = await accounts.login_async(request.app.state.sessions, body.name, body.password, address)
    if user is None:
        raise Unauthenticated("wrong name or password", field="password")
    return Me(name=user.name, role=user.role, csrf_token=start_session(request, response, user))


@router.post("/auth/logout", status_code=204)
def logout(user: Viewer, response: Response, session: SessionDep) -> Response:
    """Sign out: this browser's cookie is cleared and every session of the user ends."""
    accounts.end_sessions(session, user.id)
    session.commit()
    end_session(response)
    response.status_code = 204
    return response


@router.get("/auth/session", response_model=SessionPublic)
def who(request: Request) -> SessionPublic:
    """Who the dashboard is signed in as, or null: open to anyone, so the sign-in page
    loads without an error."""
    try:
        user = current_user(request)
    except FarmError:
        return SessionPublic(user=None)
    return SessionPublic(user=Me(name=user.name, role=user.role, csrf_token=getattr(request.state, "csrf", None)))


@router.get("/auth/me", response_model=Me)
def me(user: Viewer, request: Request) -> Me:
    return Me(name=user.name, role=user.role, csrf_token=getattr(request.state, "csrf", None))


@router.post("/auth/tokens", status_code=201, response_model=TokenCreated)
def create_token(body: TokenCreate, user: Viewer, session: SessionDep) -> TokenCreated:
    """A new API token for yourself, with your role."""
    owner = session.get(User, user.id)
    if owner is None:
        raise NotFound(f"user {user.name} no longer exists", field="user")
    token = accounts.create_token(session, owner, body.name)
    session.commit()
    return TokenCreated(token=token, name=body.name)


@router.get("/users", response_model=list[UserPublic])
def list_users(_user: Operator, session: SessionDep) -> list[UserPublic]:
    return [UserPublic(name=u.name, role=u.role, disabled=u.disabled) for u in accounts.users(session)]


@router.post("/users", status_code=201, response_model=UserPublic)
def create_user(body: UserCreate, _user: Operator, session: SessionDep) -> UserPublic:
    user = accounts.create_user(session, body.name, body.role, body.password)
    session.commit()
    return UserPublic(name=user.name, role=user.role, disabled=user.disabled)
