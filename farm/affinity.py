"""Affinity: a released take goes to an idle worker that already holds its weights.

A worker's DiT holds one checkpoint with one LoRA stack at a time; switching stacks patches
the weights, the same stack again costs nothing. Workers record what they hold
(`workers.holding`, a `stack_key`); the release loop sends each take it released to the
direct queue of an idle worker holding the take's key, else to the pool's queue. It changes
only where a take goes, never which takes are released or when: nothing waits for a holder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import fleet
from .tables import Take

log = logging.getLogger(__name__)


def stack_key(checkpoint: str, loras: list[dict] | None) -> str:
    """What a DiT holds, as one string: the checkpoint, then each LoRA and its strength, in
    order (a stack is applied in order, and a strength changes the weights): "tiny",
    "tiny+<sha256>@0.8+<sha256>@-0.5". The one definition, for workers and the release loop."""
    return "+".join([checkpoint, *(f"{use['sha256']}@{float(use['strength'])!r}" for use in loras or ())])


def parse_stack_key(key: str) -> dict:
    """stack_key's inverse: {"checkpoint", "loras": [{"sha256", "strength"}]}, for the people
    who read what a worker holds (the dashboard, `farm pools`)."""
    checkpoint, *uses = key.split("+")
    loras = [{"sha256": sha, "strength": float(strength)} for sha, strength in (u.rsplit("@", 1) for u in uses)]
    return {"checkpoint": checkpoint, "loras": loras}


def choose(takes: Iterable[tuple[str, str]], idle: dict[str, str]) -> dict[str, str | None]:
    """(take id, its stack key) in release order; idle: worker id -> what it holds, in order
    of preference. Each take gets the first idle worker holding its key that no earlier take
    got, or None (the pool's queue)."""
    free = dict(idle)
    out: dict[str, str | None] = {}
    for take_id, key in takes:
        worker = next((w for w, held in free.items() if held == key), None)
        if worker is not None:
            del free[worker]  # one take per idle worker: a second waits behind the first
        out[take_id] = worker
    return out


def route(session: Session, pool: str, take_ids: list[str], now: datetime, timeout: float) -> dict[str, str | None]:
    """Where each released take of the pool goes: a worker id (its direct queue) or None."""
    if not take_ids:
        return {}
    rows = session.execute(select(Take.id, Take.checkpoint, Take.loras).where(Take.id.in_(take_ids)))
    keys = {take_id: stack_key(checkpoint, loras) for take_id, checkpoint, loras in rows}
    routes = choose([(t, keys[t]) for t in take_ids], fleet.idle_holdings(session, pool, now, timeout))
    for take_id, worker in routes.items():
        if worker is None:
            log.info("take %s to the %s queue: no idle worker holds %s", take_id, pool, keys[take_id])
        else:
            log.info("take %s to worker %s, which holds %s", take_id, worker, keys[take_id])
    return routes
