"""A job: a take this worker claimed, from the claim in SQL to the one record of how its attempt ended.

A duplicate or stale delivery claims nothing. A claimed attempt ends exactly once: done (the
finisher), canceled or failed; a failure goes to the state machine, which requeues a
retryable one while attempts remain.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from farm import states
from farm.db import run_with_retry
from farm.tables import Asset, Attempt, Take
from models import RenderCanceled

from .attempt_logs import AttemptLog
from .errors import classify
from .heartbeat import Heartbeat

log = logging.getLogger(__name__)


@dataclass
class Job:
    take: Take  #: detached from its session: read-only here
    attempt: Attempt
    inputs: dict[str, Asset]  #: "image", "audio" -> the stored input
    loras: list[tuple[Asset, float]]  #: the take's LoRA stack: (the stored LoRA, its strength), in order
    gpus: int  #: GPUs the take holds: GPU seconds = wall seconds x this
    started: float = field(default_factory=time.monotonic)
    scratch: tempfile.TemporaryDirectory = field(init=False)  #: the inputs and outputs on local disk
    log: AttemptLog = field(init=False)  #: the worker's log lines of this attempt (workers/attempt_logs.py)

    def __post_init__(self) -> None:
        self.scratch = tempfile.TemporaryDirectory(prefix=f"take-{self.take.id}-")
        self.log = AttemptLog(self.take.id, self.attempt.number)

    @property
    def folder(self) -> Path:
        return Path(self.scratch.name)

    def gpu_seconds(self) -> float:
        return (time.monotonic() - self.started) * self.gpus

    def finished(self, factory: sessionmaker[Session], output: dict) -> str:
        """Record the uploaded outputs: the attempt is done."""
        seconds = self.gpu_seconds()
        done = run_with_retry(
            factory,
            lambda s: states.finish(s, self.take.id, self.attempt, output, gpu_seconds=seconds),
            what=f"record of take {self.take.id}",
        )
        return "done" if done else "finished, but another attempt holds the take"

    def failed(self, factory: sessionmaker[Session], exc: BaseException) -> str:
        """Record why the attempt ended without a clip; KeyboardInterrupt and SystemExit are
        recorded and raised again."""
        take_id, attempt, seconds = self.take.id, self.attempt, self.gpu_seconds()
        if isinstance(exc, RenderCanceled):
            run_with_retry(factory, lambda s: states.mark_canceled(s, take_id, attempt, seconds))
            outcome = "canceled"
        elif isinstance(exc, Exception):
            error, retryable = classify(exc)
            log.error(
                "take %s attempt %d failed: %s",
                take_id,
                attempt.number,
                type(error).__name__,
                exc_info=exc if retryable else None,
            )
            state = run_with_retry(
                factory, lambda s: states.fail(s, take_id, attempt, error, retryable=retryable, gpu_seconds=seconds)
            )
            outcome = f"failed ({state.value if state else 'no longer ours'})"
        else:
            stopped = RuntimeError(f"worker stopped: {exc!r}")
            run_with_retry(
                factory,
                lambda s: states.fail(s, take_id, attempt, stopped, retryable=True, gpu_seconds=seconds),
                seconds=10,  # the process is leaving: don't hold it up for long
            )
            raise exc
        log.info("take %s attempt %d: %s", take_id, attempt.number, outcome)
        return outcome


def claim(factory: sessionmaker[Session], take_id: str, worker: Heartbeat, gpus: int) -> Job | None:
    """Claim a delivered take for this worker; None (and logged) when it is not claimable."""

    def work(session: Session):
        attempt = states.claim(session, take_id, worker.id, worker.host, worker.gpu)
        if attempt is None:
            state = session.execute(select(Take.state).where(Take.id == take_id)).scalar_one_or_none()
            return None, state
        take = session.get_one(Take, take_id)
        shas = (("image", take.image_sha256), ("audio", take.audio_sha256))
        inputs = {kind: session.get(Asset, sha) for kind, sha in shas if sha}
        loras = [(session.get_one(Asset, use["sha256"]), use["strength"]) for use in take.loras or []]
        session.expunge(take)
        return (take, attempt, inputs, loras), None

    claimed, state = run_with_retry(factory, work, what=f"claim of take {take_id}")
    if claimed is None:
        log.info("take %s is %s: duplicate or stale delivery dropped", take_id, getattr(state, "value", "unknown"))
        return None
    take, attempt, inputs, loras = claimed  # the scratch folder and the clock start once the claim committed
    return Job(take, attempt, inputs, loras, gpus)
