"""The database away is a 503, never a 500 or a hang: an API whose Postgres is behind a TCP
proxy the test turns into a fault, refused (the port closed, connections reset) or frozen
(a partition: connections stay open, nothing answers), and then healed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from farm.api.app import create_app
from farm.db import get_engine, postgres_connect_args, postgres_engine
from farm.settings import Settings

from ..services import TcpProxy, password, serving

AWAY = {"detail": "the farm's database is not answering; try again shortly", "field": None}
#: seconds an answer may take with the database away (the defaults: a ping of a pooled
#: connection, then a new connection, each given up on after FARM_DB_CONNECT_TIMEOUT = 5 s)
BOUND = 15.0


@pytest.fixture
def proxy(clean) -> Iterator[TcpProxy]:
    url = make_url(clean.database)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    yield proxy
    proxy.close()


def through(proxy: TcpProxy, url: str) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


@pytest.fixture
def proxied_api(clean, storage, proxy) -> Iterator[str]:
    """An API whose database URL goes through the proxy (the schema is migrated directly)."""
    url = through(proxy, clean.database)
    with serving(create_app(clean.model_copy(update={"database_url": url}), storage), join=30) as base:
        yield base
        proxy.heal()  # nothing left waiting on a frozen connection while the server stops
    get_engine(url).dispose()


def requests(token: str) -> list[tuple[str, str, dict | None, dict[str, str]]]:
    """Open, signed-in (a bearer token: auth opens a session first), a list, a submit, a sign-in."""
    bearer = {"Authorization": f"Bearer {token}"}
    return [
        ("GET", "/healthz", None, {}),
        ("GET", "/auth/me", None, bearer),
        ("GET", "/takes", None, bearer),
        ("POST", "/batches", {"takes": [{"prompt": "the database away", "mode": "T"}]}, bearer),
        ("POST", "/auth/login", {"name": "ana", "password": password("ana")}, {}),
    ]


def answers(base: str, token: str) -> list[tuple[str, int, object, float, httpx.Headers]]:
    """Each request's (what, status, body, seconds, headers); a request past BOUND fails the test."""
    out = []
    with httpx.Client(base_url=base, timeout=httpx.Timeout(BOUND + 30)) as http:
        for method, path, body, headers in requests(token):
            start = time.monotonic()
            try:
                r = http.request(method, path, json=body, headers=headers)
            except httpx.TimeoutException:
                pytest.fail(f"{method} {path} hung: no answer in {BOUND + 30:g} s")
            seconds = time.monotonic() - start
            out.append((f"{method} {path}", r.status_code, r.json(), seconds, r.headers))
    return out


def assert_away(base: str, token: str, how: str) -> None:
    for what, status, body, seconds, headers in answers(base, token):
        assert (status, body) == (503, AWAY), f"database {how}: {what} answered {status} {body}"
        assert seconds < BOUND, f"database {how}: {what} took {seconds:.1f} s (bound {BOUND:g} s)"
        assert headers.get("retry-after", "").isdigit(), f"database {how}: {what} has no Retry-After"


def assert_served(base: str, token: str, how: str) -> None:
    for what, status, body, _seconds, _headers in answers(base, token):
        assert status in (200, 201), f"database {how}: {what} answered {status} {body}"


def test_the_database_refused_or_frozen_is_a_503_within_seconds_and_healed_serves_again(proxied_api, proxy, tokens):
    token = tokens["ana"]
    assert_served(proxied_api, token, "up")  # the pool now holds connections through the proxy

    proxy.freeze()  # those connections stay open and go silent; new ones are never answered
    assert_away(proxied_api, token, "frozen")
    proxy.heal()
    assert_served(proxied_api, token, "healed after the freeze")

    proxy.refuse()
    assert_away(proxied_api, token, "refused")
    proxy.heal()
    assert_served(proxied_api, token, "healed after the refusal")


def test_a_statement_is_cancelled_by_the_server_and_a_silent_one_given_up_by_the_client(clean, proxy):
    settings = clean.model_copy(update={"db_statement_timeout": 2.0, "db_connect_timeout": 2})
    engine = postgres_engine(through(proxy, clean.database), settings)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "2s"
            with pytest.raises(OperationalError, match="statement timeout"):
                conn.execute(text("SELECT pg_sleep(10)"))
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            proxy.freeze()  # mid-session: the checked-out connection goes silent
            start = time.monotonic()
            with pytest.raises(OperationalError, match="did not answer within 4 s") as caught:
                conn.execute(text("SELECT 1"))
            seconds = time.monotonic() - start
        # the statement's deadline (2 s on the server + 2 s for its cancellation), not a hang
        assert 4.0 <= seconds < BOUND and caught.value.connection_invalidated
    finally:
        proxy.heal()
        engine.dispose()


def test_timeouts_the_database_url_names_itself_win():
    settings = Settings(db_connect_timeout=5, db_statement_timeout=30)
    args = postgres_connect_args(
        "postgresql+psycopg://h/farm?connect_timeout=9&options=-c%20statement_timeout%3D0", settings
    )
    assert "connect_timeout" not in args and args["tcp_user_timeout"] == 15_000
    assert args["options"] == "-c statement_timeout=30000 -c statement_timeout=0"  # the last -c wins
    assert postgres_connect_args("postgresql+psycopg://h/farm", settings)["connect_timeout"] == 5
