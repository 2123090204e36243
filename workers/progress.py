"""The render's per-step callback: progress, cooperative cancel, the time limit, the stall watchdog.

The engine calls it after every denoising step; what it raises stops the render between
steps (RenderCanceled: the take was canceled; RenderTimeout: it ran past its limit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from farm import states
from farm.db import run_with_retry, transaction
from farm.settings import Settings
from farm.storage import preview_key
from models import RenderCanceled

from .errors import RenderTimeout, Stalled
from .heartbeat import Heartbeat
from .job import Job
from .previews import Previews

log = logging.getLogger(__name__)


class Progress:
    """on_step(i, n) for one render. Inside `with Progress(...) as on_step:` the render must
    keep making steps (the heartbeat's watchdog) and end within FARM_RENDER_TIME_LIMIT."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        heartbeat: Heartbeat,
        job: Job,
        previews: Previews | None = None,
        windows: int = 1,
    ):
        """windows: a long take's count; the engine's steps (i of n) run over all of them."""
        self.factory, self.settings, self.heartbeat, self.job = factory, settings, heartbeat, job
        self.windows = windows
        self.previews = previews
        self.deadline = 0.0
        self.reported = 0.0  #: monotonic time of the last progress write
        self.previewed = 0.0  #: monotonic time of the last preview
        self.step = 0  #: the last step that finished

    def __enter__(self) -> Progress:
        self.deadline = time.monotonic() + self.settings.render_time_limit
        self.heartbeat.watch(self.settings.stall_timeout, self._hung)
        return self

    def _hung(self) -> None:
        """The watchdog is about to end the process: the attempt fails naming its cause
        (`Stalled`, retried while attempts remain), not as a worker lost for no reason."""
        take_id, attempt, seconds = self.job.take.id, self.job.attempt, self.job.gpu_seconds()
        error = Stalled(f"no denoising step finished in {self.settings.stall_timeout:g} s after step {self.step}; "
                        "the worker exited")  # fmt: skip
        run_with_retry(
            self.factory, lambda s: states.fail(s, take_id, attempt, error, retryable=True, gpu_seconds=seconds),
            seconds=5,  # the process is leaving
        )  # fmt: skip

    def __exit__(self, *exc) -> None:
        self.heartbeat.watch(None)  # idle: nothing expected

    def __call__(self, i: int, n: int) -> None:
        now = time.monotonic()
        self.heartbeat.watch(self.settings.stall_timeout, self._hung)  # a step finished: not hung
        self.step = i
        if now > self.deadline:
            raise RenderTimeout(f"the render passed its {self.settings.render_time_limit:g} s limit at step {i}/{n}")
        if i < n and now - self.reported < self.settings.progress_interval:
            return
        self.reported = now
        take_id = self.job.take.id
        try:
            with transaction(self.factory) as session:
                stop = states.progress(session, take_id, self.job.attempt, i, n, self.windows)
        except DBAPIError as exc:  # the database is away: keep rendering, report later
            log.warning("progress of take %s not recorded (%s)", take_id, type(exc.orig).__name__)
            return
        if stop:
            raise RenderCanceled(f"take {take_id} canceled at step {i}/{n}")

    def preview(self, i: int, n: int, make: Callable[[], bytes]) -> None:
        """The engine's on_preview: every preview_interval seconds, the prediction's JPEG to
        the attempt's preview key (not after the last step: the clip itself comes next)."""
        if self.previews is not None and i < n:
            key = preview_key(self.job.take.id, self.job.attempt.number)
            self.previewed = self.previews.offer(key, self.previewed, make)
