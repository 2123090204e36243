"""`farm beat`: plans the current night on every pass while it holds the one scheduler
lock (farm.leader's "beat" lock: a Postgres advisory lock; a file lock on the embedded SQLite);
on each pass it also expires consent records and deletes ended long takes' stored windows."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from .. import consent, retention
from ..db import session_factory, transaction
from ..leader import LOCKS, FileLock, PostgresLock, lock_for
from ..leader import Lock as SchedulerLock
from ..settings import Settings
from ..storage import Storage, open_storage
from ..tables import HeroNight, utcnow
from .planning import close_ended, plan_night
from .window import night_at

log = logging.getLogger(__name__)
LOCK_KEY = LOCKS["beat"]  #: the scheduler's Postgres advisory lock (farm.leader)
__all__ = ["LOCK_KEY", "FileLock", "PostgresLock", "Scheduler", "SchedulerLock", "scheduler_lock", "serve"]


def scheduler_lock(settings: Settings) -> SchedulerLock:
    return lock_for(settings, "beat")


class Scheduler:
    """Plans the current night on every pass while it holds the scheduler lock; a second
    scheduler waits on standby and takes over when the first one's lock is freed."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        lock: SchedulerLock,
        clock: Callable[[], datetime] = utcnow,
        storage: Storage | None = None,
    ):
        """storage: where ended long takes' windows are deleted from (default: the settings' store)."""
        self.factory, self.settings, self.lock, self.clock = factory, settings, lock, clock
        self._storage = storage
        self.leading: bool | None = None

    @property
    def storage(self) -> Storage:
        if self._storage is None:  # opened when first needed: most passes delete nothing
            self._storage = open_storage(self.settings)
        return self._storage

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
        if leading:  # consent records whose validity ended: their takes are withdrawn (farm.consent)
            with transaction(self.factory) as session:
                consent.expire_due(session, now)
                close_ended(session, now)  # every pass, inside a window or not
            with transaction(self.factory) as session:  # then their stored windows go (farm.retention)
                expired = retention.expired_windows(session, self.settings, now)
            if expired:
                retention.delete_windows(self.storage, expired)
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
