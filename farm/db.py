"""The engine and sessions. SQLite (embedded default) and Postgres through one URL.

A Postgres that is away is an error within seconds, never a hang (the API answers it with a
503): connecting, sign-in included, has FARM_DB_CONNECT_TIMEOUT; the server cancels a
statement after FARM_DB_STATEMENT_TIMEOUT; TCP keepalives and tcp_user_timeout end a
connection the network has lost; and the client closes a connection that stays silent (a
partition, a frozen server) a little longer than the server would let a statement run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .settings import Settings, get_settings

#: TCP on every Postgres connection: an idle one is probed after 10 s, every 5 s, and dead
#: after 3 unanswered probes; data the network leaves unacknowledged for 15 s ends it (Linux)
TCP_ARGS = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
TCP_USER_TIMEOUT_MS = 15_000


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # several processes share the file
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return postgres_engine(url, get_settings())


class AnsweringConnection(psycopg.Connection):
    """A psycopg connection that gives up on a silent server: a wait for the server (a
    statement, a commit, a ping) that passes `answer_timeout` seconds closes the connection
    and raises OperationalError (SQLAlchemy then takes it for a disconnect and discards it).
    A partition the kernel cannot see, or a frozen server, would otherwise wait forever."""

    answer_timeout: float | None = None

    def wait(self, gen, interval: float = 0.1, timeout: float | None = None):
        if timeout is not None or self.answer_timeout is None:
            return super().wait(gen, interval, timeout)  # psycopg's own deadlines: its own handling
        try:
            return super().wait(gen, interval, self.answer_timeout)
        except psycopg.errors._WaitTimeout as exc:  # internal to psycopg (pinned in requirements.lock)
            self.pgconn.finish()  # mid-exchange: the connection's state is unknown
            raise psycopg.OperationalError(
                f"the database did not answer within {self.answer_timeout:g} s; connection closed"
            ) from exc


def postgres_connect_args(url: str, settings: Settings) -> dict[str, Any]:
    """libpq parameters for the timeouts; those the URL sets itself win (`options` are
    joined: the URL's come last, so its `-c statement_timeout=...` wins)."""
    given = make_url(url).query
    args: dict[str, Any] = {
        "connect_timeout": settings.db_connect_timeout,
        **TCP_ARGS,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
    }
    args = {k: v for k, v in args.items() if k not in given}
    if settings.db_statement_timeout:
        ours = f"-c statement_timeout={int(settings.db_statement_timeout * 1000)}"
        theirs = given.get("options")
        args["options"] = f"{ours} {theirs}" if isinstance(theirs, str) else ours
    return args


def postgres_engine(url: str, settings: Settings) -> Engine:
    """An engine with the timeouts of `settings` (get_engine: the process's settings, cached)."""
    # pre_ping: survive a database restart without handing out dead connections
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=settings.db_pool_timeout,
        connect_args=postgres_connect_args(url, settings),
    )
    # a statement may run db_statement_timeout on the server; its cancellation needs a round trip
    answer = settings.db_statement_timeout + settings.db_connect_timeout if settings.db_statement_timeout else None
    ping = float(settings.db_connect_timeout)

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect, _record, cargs, cparams):
        conn = AnsweringConnection.connect(*cargs, **cparams)
        conn.answer_timeout = answer
        return conn

    @event.listens_for(engine, "checkin")
    def _idle(dbapi_conn, _record):  # the pre-ping at its next check-out: a ping answers quickly
        if isinstance(dbapi_conn, AnsweringConnection):
            dbapi_conn.answer_timeout = ping

    @event.listens_for(engine, "checkout")
    def _busy(dbapi_conn, _record, _proxy):  # after the pre-ping: statements may take their time
        if isinstance(dbapi_conn, AnsweringConnection):
            dbapi_conn.answer_timeout = answer

    return engine


def insert(session: Session, table):
    """INSERT with ON CONFLICT support (`on_conflict_do_nothing`) in the session's dialect:
    how a unique-key race resolves to the row that won."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session


def run_with_retry(factory: sessionmaker[Session], work, *, seconds: float = 120.0, what: str = "database write"):
    """Run work(session) in a transaction, retrying while the database is unreachable.

    A restarting database must not turn a finished render into a lost record: connection
    errors are retried with backoff for up to `seconds`; any other error raises at once.
    """
    import logging
    import time

    log = logging.getLogger(__name__)
    deadline, delay = time.monotonic() + seconds, 0.2
    while True:
        try:
            with transaction(factory) as session:
                return work(session)
        except DBAPIError as exc:
            if not unreachable(exc) or time.monotonic() > deadline:
                raise
            log.warning("%s: database unreachable (%s); retrying in %.1fs", what, type(exc.orig).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def unreachable(exc: DBAPIError) -> bool:
    """The database could not be reached or stopped answering (not: it refused a value)."""
    return exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))
