"""Leadership: of many dispatcher processes on one record, the one holding a named lock runs
the work only one may run (the release loop, the reconciler, webhook deliveries; `farm beat`'s
nightly planning under a lock of its own).

The lock is a session-level Postgres advisory lock on a connection of its own: Postgres frees
it when that connection ends, however its process died, and a standby that asks again takes
it over. The connection carries the holder's name (`application_name`), so anyone can ask who
leads (`holder`). On the embedded SQLite (one machine) it is flock on a file in the data
folder, which holds the name.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from .db import get_engine
from .settings import Settings

log = logging.getLogger(__name__)

#: each lock's Postgres advisory key: its name's eight bytes ("farmnite" is `farm beat`'s)
LOCKS = {"beat": int.from_bytes(b"farmnite"), "release": int.from_bytes(b"farmlead")}
#: seconds between a standby's asks for the lock: a dead leader's successor starts within this
CHECK_INTERVAL = 1.0
#: seconds: Postgres drops a lock holder whose host vanished (no FIN) after about this long
#: (server-side TCP keepalives and user timeout on the lock's connection)
VANISHED = 20


def identity() -> str:
    """Who this process is, in lock holders' lists: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Lock(Protocol):
    def acquire(self) -> bool:
        """Take the lock if it is free, never waiting; True while this holder has it."""

    def release(self) -> None: ...


class PostgresLock:
    """A session-level advisory lock on a connection of its own."""

    def __init__(self, engine: Engine, name: str, holder: str | None = None):
        self.engine, self.name, self.key = engine, name, LOCKS[name]
        self.holder = holder or identity()
        self.conn: Connection | None = None

    def acquire(self) -> bool:
        try:
            if self.conn is not None:
                self.conn.execute(text("SELECT 1"))  # the connection lives: the lock is still ours
                return True
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar_one():
                # name the holder, and let the server see a vanished holder's host within VANISHED s
                conn.execute(
                    text(
                        "SELECT set_config('application_name', :name, false), "
                        "set_config('tcp_keepalives_idle', '5', false), "
                        "set_config('tcp_keepalives_interval', '5', false), "
                        "set_config('tcp_keepalives_count', '3', false), "
                        "set_config('tcp_user_timeout', :user_timeout, false)"
                    ),
                    {"name": f"farm {self.name} {self.holder}"[:63], "user_timeout": str(VANISHED * 1000)},
                )
                self.conn = conn
                return True
            conn.close()
            return False
        except DBAPIError:
            log.warning("%s lock: database unreachable; not leading until it answers", self.name)
            self._drop()
            return False

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                self.conn.close()
            except DBAPIError:
                self._drop()
            self.conn = None

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.invalidate()  # never back to the pool holding a lock
            self.conn.close()
            self.conn = None


class FileLock:
    """flock on a file in the data folder (the embedded default: one machine); the OS frees
    it when the holder's process ends. The file holds the holder's name."""

    def __init__(self, path: Path, holder: str | None = None):
        self.path, self.holder = path, holder or identity()
        self.fd: int | None = None

    def acquire(self) -> bool:
        if self.fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, self.holder.encode())
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def lock_for(settings: Settings, name: str) -> Lock:
    if settings.database.startswith("postgresql"):
        return PostgresLock(get_engine(settings.database), name)
    return FileLock(settings.data_dir / f"{name}.lock")


def holder(settings: Settings, name: str) -> str | None:
    """Who holds the lock now (host:pid), or None when nobody does."""
    if not settings.database.startswith("postgresql"):
        path = settings.data_dir / f"{name}.lock"
        if not path.exists():
            return None
        with open(path, "rb+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return f.read().decode() or "?"
            return None  # we could take it: nobody holds it
    with get_engine(settings.database).connect() as conn:
        name_ = conn.execute(
            text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND (l.classid::bigint << 32 | l.objid::bigint) = :key"
            ),
            {"key": LOCKS[name]},
        ).scalar_one_or_none()
    if name_ is None:
        return None
    return name_.removeprefix(f"farm {name} ") or "?"


class Leadership:
    """Holds a lock while it can, asking for it every CHECK_INTERVAL seconds on a thread of its
    own (`run`); `leading` is set while this process holds it. `duty` runs a piece of work every
    `interval` seconds on its own thread, only while leading."""

    def __init__(self, lock: Lock, what: str):
        self.lock, self.what = lock, what
        self.leading = threading.Event()

    def check(self) -> bool:
        leading = self.lock.acquire()
        if leading != self.leading.is_set():
            log.info(
                f"leading: this process holds the {self.what} lock and runs the {self.what}"
                if leading
                else f"standby: another process holds the {self.what} lock; taking over when it is freed"
            )
            self.leading.set() if leading else self.leading.clear()
        return leading

    def run(self, stop: threading.Event, interval: float = CHECK_INTERVAL) -> None:
        try:
            while not stop.is_set():
                try:
                    self.check()
                except Exception:  # whatever it is, the next ask decides again
                    log.exception("%s lock check failed", self.what)
                    self.leading.clear()
                stop.wait(interval)
        finally:
            self.leading.clear()
            self.lock.release()  # a standby takes over at its next ask, not after a timeout

    def duty(self, work: Callable[[], object], interval: float, stop: threading.Event) -> None:
        while not stop.is_set():
            if self.leading.wait(min(interval, CHECK_INTERVAL)) and not stop.is_set():
                try:
                    work()
                except Exception:  # a database or broker outage: log, wait, try again
                    log.exception("%s: %s failed; retrying", self.what, getattr(work, "__name__", "a pass"))
                stop.wait(interval)

    def start(self, stop: threading.Event, duties: dict[str, tuple[Callable[[], object], float]]) -> None:
        """The lock's thread and one thread per duty (name -> (work, interval)), daemons all."""
        threading.Thread(target=self.run, args=(stop,), name=f"{self.what}-lock", daemon=True).start()
        for name, (work, interval) in duties.items():
            threading.Thread(target=self.duty, args=(work, interval, stop), name=name, daemon=True).start()
