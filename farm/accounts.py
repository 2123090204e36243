"""Users, roles, passwords and API tokens: who may do what on the farm.

Passwords are stored as scrypt hashes; API tokens as their sha256 (a token is random, so
a fast hash is enough). Failed logins are counted per name and address in the database,
so the rate limit holds across every dispatcher replica.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from .errors import InvalidRequest, NotFound, TooManyAttempts
from .tables import ApiToken, LoginFailure, Role, User, as_utc, utcnow

TOKEN_PREFIX = "farm_"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
#: failed logins for one name from one address within the window before logins are refused
LOGIN_FAILURES, LOGIN_WINDOW = 5, timedelta(minutes=15)
#: failed logins for one name from all addresses together (guessing from many addresses)
LOGIN_FAILURES_PER_NAME = 50
#: failed logins from one address whatever the names (unknown names cost a hash too)
LOGIN_FAILURES_PER_ADDRESS = 100
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
#: scrypt runs on these threads only (one per core here): logins queue for them, and never hold
#: the threads that serve the rest of the API
HASHING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="scrypt")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        _, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


_DUMMY_HASH = hash_password(secrets.token_hex(8))  # unknown names cost the same time as known ones


def check_password_rules(password: str) -> None:
    if len(password) < 10:
        raise InvalidRequest("password", "at least 10 characters; use a passphrase")


def create_user(session: Session, name: str, role: Role | str, password: str | None = None) -> User:
    name = name.strip().lower()
    if not NAME.match(name):
        raise InvalidRequest(
            "name", "1-100 characters: lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    try:
        role = Role(role)
    except ValueError:
        raise InvalidRequest("role", f"one of {', '.join(r.value for r in Role)}") from None
    if session.execute(select(User.id).where(User.name == name)).first():
        raise InvalidRequest("name", f"user {name!r} exists already; choose another name")
    if password is not None:
        check_password_rules(password)
    user = User(name=name, role=role, password_hash=hash_password(password) if password else None)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, name: str) -> User:
    user = session.execute(select(User).where(User.name == name.strip().lower())).scalar_one_or_none()
    if user is None:
        raise NotFound(f"user {name!r} not found")
    return user


def users(session: Session) -> list[User]:
    """Every account, by name."""
    return list(session.execute(select(User).order_by(User.name)).scalars())


def set_password(session: Session, user: User, password: str) -> None:
    check_password_rules(password)
    user.password_hash = hash_password(password)
    user.session_epoch += 1  # every dashboard session of the old password ends


def end_sessions(session: Session, user_id: str) -> None:
    """Sign a user out everywhere: the session cookies carry the epoch they were issued in."""
    session.execute(update(User).where(User.id == user_id).values(session_epoch=User.session_epoch + 1))


def login(session: Session, name: str, password: str, address: str) -> User | None:
    """The user if name and password match; None otherwise. Commits as it goes.

    Every attempt is written (and committed) before the limits are checked and before the
    password is, so parallel guesses count against each other: of any number sent at once,
    at most the limit are tried. A success clears its own. Refused with TooManyAttempts: a
    name tried LOGIN_FAILURES times from one address, or LOGIN_FAILURES_PER_NAME from
    anywhere, or LOGIN_FAILURES_PER_ADDRESS names from one address, within LOGIN_WINDOW."""
    user, stored = begin_login(session, name, address)
    return end_login(session, user, address, verify_password(password, stored))


async def login_async(factory: sessionmaker[Session], name: str, password: str, address: str) -> User | None:
    """`login` for the API: the database work on the server's threads, the hash on HASHING."""
    from starlette.concurrency import run_in_threadpool

    with factory() as session:
        user, stored = await run_in_threadpool(begin_login, session, name, address)
    # no database connection is held while the login waits for its hash
    ok = await asyncio.wrap_future(HASHING.submit(verify_password, password, stored))
    with factory() as session:
        return await run_in_threadpool(end_login, session, user, address, ok)


def begin_login(session: Session, name: str, address: str) -> tuple[User | None, str]:
    """Record the attempt and check the limits; the user (None if unknown) and the hash to
    check the password against (a dummy one for unknown names: they cost the same time)."""
    name, address = name.strip().lower()[:100], address[:64]
    now = utcnow()
    since = now - LOGIN_WINDOW
    session.add(LoginFailure(name=name, address=address))
    session.execute(delete(LoginFailure).where(LoginFailure.at < since))  # keep the table small
    session.commit()
    for where, limit, what in (
        ((LoginFailure.name == name, LoginFailure.address == address), LOGIN_FAILURES, f"for {name!r}"),
        ((LoginFailure.name == name,), LOGIN_FAILURES_PER_NAME, f"for {name!r}"),
        ((LoginFailure.address == address,), LOGIN_FAILURES_PER_ADDRESS, "from this address"),
    ):
        count, oldest = session.execute(
            select(func.count(), func.min(LoginFailure.at)).where(*where, LoginFailure.at > since)
        ).one()
        if count > limit:
            wait = max(int((as_utc(oldest) + LOGIN_WINDOW - now).total_seconds()) + 1, 1)
            raise TooManyAttempts(f"too many failed logins {what}; try again in {wait} s", wait)
    user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    return user, (user.password_hash if user and user.password_hash else _DUMMY_HASH)


def end_login(session: Session, user: User | None, address: str, password_ok: bool) -> User | None:
    """The user when the password matched and the account is enabled; a success clears its
    own failures."""
    if user is None or not password_ok or user.disabled:
        return None
    session.execute(delete(LoginFailure).where(LoginFailure.name == user.name, LoginFailure.address == address[:64]))
    session.commit()
    return user


def create_token(session: Session, user: User, name: str = "cli") -> str:
    """A new API token for the user; the plain value is returned once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=name[:100], token_sha256=_token_digest(token)))
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_sha256 == _token_digest(token), ApiToken.revoked.is_(False))
    ).first()
    if row is None or row.User.disabled:
        return None
    now, last = utcnow(), row.ApiToken.last_used_at
    if last is None or now - as_utc(last) > timedelta(minutes=1):
        session.execute(update(ApiToken).where(ApiToken.id == row.ApiToken.id).values(last_used_at=now))
        session.commit()
    return row.User


def revoke_tokens(session: Session, user: User) -> int:
    stmt = update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked.is_(False)).values(revoked=True)
    return cast(CursorResult, session.execute(stmt)).rowcount


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
