"""What a batch will cost before it is accepted: its takes and their GPU time, measured.

A take's work is its steps x DiT passes a step x DiT tokens over its windows (what a step's time grows with).
Each checkpoint's GPU seconds per unit of work is the median over its last MEASURED finished
attempts on this farm; a checkpoint nothing has rendered yet has no estimate (said so).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import InputError, RenderRequest
from models.request import ResolvedRequest

from .tables import Attempt, AttemptState, Take

MEASURED = 50  #: finished attempts per checkpoint the rate is taken from
#: a batch of at least this many takes is shown with its cost and confirmed before it is sent
CONFIRM_AT = 20


def resolve(
    checkpoint: str, params: dict, image: str | None, audio: str | None, audio_seconds: float | None = None
) -> ResolvedRequest | None:
    """A take's request with the checkpoint's defaults applied (None: it no longer resolves,
    e.g. one recorded under older rules). audio_seconds: its audio's length, where known."""
    try:
        request = RenderRequest(checkpoint=checkpoint, image=image, audio=audio, **params)
        return request.resolved(probe_files=False, audio_seconds=audio_seconds)
    except (InputError, TypeError, ValueError):
        return None


def work(checkpoint: str, params: dict, image: str | None, audio: str | None) -> float:
    """Steps x DiT passes a step x tokens of one take (0 when it no longer resolves)."""
    r = resolve(checkpoint, params, image, audio)
    if r is None:  # left out of the measure
        return 0.0
    passes = 1 if r.guidance == "off" else r.spec.passes_per_step[r.mode]
    return float(r.steps * passes * r.step_tokens)  # every window of a long take


def rate(session: Session, checkpoint: str) -> tuple[float | None, int]:
    """GPU seconds per unit of work on this checkpoint, and how many attempts it is measured from."""
    rows = session.execute(
        select(Attempt.gpu_seconds, Take.params, Take.image_sha256, Take.audio_sha256)
        .join(Take, Take.id == Attempt.take_id)
        .where(Take.checkpoint == checkpoint, Attempt.state == AttemptState.done, Attempt.gpu_seconds > 0)
        .order_by(Attempt.finished_at.desc())
        .limit(MEASURED)
    ).all()
    rates = [r.gpu_seconds / w for r in rows if (w := work(checkpoint, r.params, r.image_sha256, r.audio_sha256))]
    return (statistics.median(rates) if rates else None), len(rates)


@dataclass(frozen=True)
class CheckpointCost:
    checkpoint: str
    takes: int
    gpu_seconds: float | None  #: None: nothing measured on this checkpoint yet
    measured_from: int  #: finished attempts the rate comes from


@dataclass(frozen=True)
class Estimate:
    takes: int
    gpu_seconds: float | None  #: of the checkpoints measured (None: none is)
    checkpoints: list[CheckpointCost]

    @property
    def confirm(self) -> bool:
        return self.takes >= CONFIRM_AT


#: what changes a take's text but not its work
TEXT = ("prompt", "negative_prompt", "seed")


def _shared_work(checkpoint: str, rows: list[dict]) -> list[float]:
    """Each row's work, resolved once per shape (a sweep's takes differ in text and seed only)."""
    seen: dict[tuple, float] = {}
    out = []
    for r in rows:
        shape = (bool(r["image_sha256"]), bool(r["audio_sha256"]),
                 *sorted((k, v) for k, v in r["params"].items() if k not in TEXT))  # fmt: skip
        if shape not in seen:
            seen[shape] = work(checkpoint, r["params"], r["image_sha256"], r["audio_sha256"])
        out.append(seen[shape])
    return out


def estimate(session: Session, rows: list[dict]) -> Estimate:
    """The cost of the takes a batch makes (batches.plan's rows)."""
    by: dict[str, list[dict]] = {}
    for row in rows:
        by.setdefault(row["checkpoint"], []).append(row)
    costs = []
    for checkpoint, mine in by.items():
        per_unit, n = rate(session, checkpoint)
        seconds = None
        if per_unit is not None:
            seconds = per_unit * sum(_shared_work(checkpoint, mine))
        costs.append(CheckpointCost(checkpoint, len(mine), seconds, n))
    known = [c.gpu_seconds for c in costs if c.gpu_seconds is not None]
    return Estimate(len(rows), sum(known) if known else None, costs)
