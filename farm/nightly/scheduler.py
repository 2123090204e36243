"""`farm beat`: plans the current night on every pass while it holds the one scheduler
lock (a Postgres advisory lock; a file lock on the embedded SQLite)."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from ..db import get_engine, session_factory, transaction
from ..settings import Settings
from ..tables import HeroNight, utcnow
from .planning import plan_night
from .window import night_at

log = logging.getLogger(__name__)
LOCK_KEY = 0x6661726D6E697465  #: the scheduler's Postgres advisory lock ("farmnite")


class SchedulerLock(Protocol):
    def acquire(self) -> bool:
        """Take the lock if it is free, never waiting; True while this holder has it."""

    def release(self) -> None: ...


class PostgresLock:
    """A session-level advisory lock on a connection of its own: Postgres frees it when the
    holder's connection ends, however its process died."""

    def __init__(self, engine: Engine, key: int = LOCK_KEY):
        self.engine, self.key = engine, key
        self.conn: Connection | None = None

    def acquire(self) -> bool:
        try:
            if self.conn is not None:
                self.conn.execute(text("SELECT 1"))  # the connection lives: the lock is still ours
                return True
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar_one():
                self.conn = conn
                return True
            conn.close()
            return False
        except DBAPIError:
            log.warning("scheduler lock: database unreachable; not leading until it answers")
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
    it when the holder's process ends."""

    def __init__(self, path: Path):
        self.path = path
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
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def scheduler_lock(settings: Settings) -> SchedulerLock:
    if settings.database.startswith("postgresql"):
        return PostgresLock(get_engine(settings.database))
    return FileLock(settings.data_dir / "beat.lock")


class Scheduler:
    """Plans the current night on every pass while it holds the scheduler lock; a second
    scheduler waits on standby and takes over when the first one's lock is freed."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        lock: SchedulerLock,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.factory, self.settings, self.lock, self.clock = factory, settings, lock, clock
        self.leading: bool | None = None

    def tick(self) -> HeroNight | None:
        leading = self.lock.acquire()
        if leading != self.leading:
            log.info(
                "leading: this scheduler holds the lock and plans the nights"
                if leading
                else "standby: another scheduler holds the lock; taking over when it is freed"
            )
            self.leading = leading
        now = self.clock()
        night = night_at(now, self.settings) if leading else None
        if night is None:
            return None
        with transaction(self.factory) as session:
            return plan_night(session, self.settings, night, now)

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    self.tick()
                except Exception:  # a database outage: log, wait, try again
                    log.exception("nightly pass failed; retrying")
                stop.wait(self.settings.beat_interval)
        finally:
            self.lock.release()


def serve(settings: Settings) -> int:
    """`farm beat` until SIGTERM or Ctrl-C."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "farm beat: nightly hero runs %s-%s %s, budget %.1f GPU hours a night, a pass every %gs",
        settings.nightly_window_start,
        settings.nightly_window_end,
        settings.nightly_timezone,
        settings.nightly_budget_gpu_hours,
        settings.beat_interval,
    )
    Scheduler(session_factory(settings.database), settings, scheduler_lock(settings)).run(stop)
    return 0
