"""The engine and sessions. SQLite (embedded default) and Postgres through one URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


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
    # pre_ping: survive a database restart without handing out dead connections
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


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

    from sqlalchemy.exc import DBAPIError

    log = logging.getLogger(__name__)
    deadline, delay = time.monotonic() + seconds, 0.2
    while True:
        try:
            with transaction(factory) as session:
                return work(session)
        except DBAPIError as exc:
            unreachable = exc.connection_invalidated or _is_disconnect(exc)
            if not unreachable or time.monotonic() > deadline:
                raise
            log.warning("%s: database unreachable (%s); retrying in %.1fs", what, type(exc.orig).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _is_disconnect(exc) -> bool:
    from sqlalchemy.exc import InterfaceError, OperationalError

    return isinstance(exc, (OperationalError, InterfaceError))
