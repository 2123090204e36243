"""A worker's row in the farm: registered at start, heartbeating, marked stopped at exit."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from farm.db import transaction
from farm.tables import Worker, utcnow

log = logging.getLogger(__name__)


def gpu_name(device: str | None) -> str:
    import torch

    if (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return "cpu"


class Heartbeat:
    def __init__(
        self, factory: sessionmaker[Session], pool: str, gpu: str, interval: float, holding: str | None = None
    ):
        """holding: what the model holds once loaded (farm.affinity.stack_key; None: not known)."""
        self.factory, self.pool, self.gpu, self.interval, self.holding = factory, pool, gpu, interval, holding
        self.host = socket.gethostname()
        self.id = f"{self.host}:{os.getpid()}:{pool}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._deadline: float | None = None  #: monotonic time by which the render must make progress
        self._on_hang: Callable[[], None] | None = None

    def start(self) -> Heartbeat:
        with transaction(self.factory) as session:
            session.merge(
                Worker(
                    id=self.id,
                    pool=self.pool,
                    host=self.host,
                    gpu=self.gpu,
                    slots=1,
                    started_at=utcnow(),
                    heartbeat_at=utcnow(),
                    holding=self.holding,
                    stopped=False,
                )
            )
        self._thread.start()
        return self

    def beat(self, **values) -> None:
        with transaction(self.factory) as session:
            session.execute(update(Worker).where(Worker.id == self.id).values(heartbeat_at=utcnow(), **values))

    def watch(self, seconds: float | None, on_hang: Callable[[], None] | None = None) -> None:
        """Expect progress within `seconds` (None: idle, nothing expected); `on_hang` records
        why before the process leaves if none comes."""
        self._on_hang = on_hang if seconds is not None else None
        self._deadline = None if seconds is None else time.monotonic() + seconds

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self._deadline is not None and time.monotonic() > self._deadline:
                # a hung GPU call never returns to Python: only leaving frees the take
                log.critical("no denoising step finished in time: the worker is hung; exiting so its take is requeued")
                if self._on_hang is not None:
                    try:
                        self._on_hang()
                    except Exception:  # leaving matters more than the record: the reconciler still finds it
                        log.exception("could not record the hang")
                logging.shutdown()
                os._exit(70)
            try:
                self.beat()
            except Exception:  # the database is away: keep trying, the sweeper judges by time
                log.warning("heartbeat failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        try:
            self.beat(stopped=True, current_take_id=None)
        except Exception:
            log.warning("could not mark worker %s stopped", self.id, exc_info=True)
