"""Which checkpoints the live workers can render, decided here only.

A worker's DiT holds one checkpoint: its row says which (`workers.holding`, a
farm.affinity.stack_key, the checkpoint first). One that says nothing (after a failed render)
holds its pool's configured checkpoint, as workers load it. A take whose checkpoint no serving
worker of its pool holds is not released: it waits, queued, and the submit says so.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import fleet
from .settings import Settings
from .tables import Worker

#: (pool, checkpoint) -> serving workers
Live = Counter[tuple[str, str]]


def checkpoint_of(holding: str | None, pool: str, settings: Settings) -> str:
    if holding:
        return holding.split("+", 1)[0]
    return settings.explore_checkpoint if pool == "explore" else settings.hero_checkpoint


def live(session: Session, now: datetime, settings: Settings, pool: str | None = None) -> Live:
    """The serving workers of each pool, by the checkpoint they hold."""
    out: Live = Counter()
    for worker_pool in [pool] if pool else sorted(set(session.execute(select(Worker.pool)).scalars())):
        rows = session.execute(select(Worker.holding).where(fleet.serving(worker_pool, now, settings.worker_timeout)))
        out.update((worker_pool, checkpoint_of(holding, worker_pool, settings)) for holding in rows.scalars())
    return out


def waiting(pool: str, checkpoint: str) -> str:
    """Why a take of this checkpoint waits, and the fix, in a producer's words."""
    return (
        f"no live worker of the {pool} pool holds {checkpoint}: its takes wait, queued, until one starts "
        f"(or choose a checkpoint a live worker holds)"
    )


def warnings(rows: list[dict], workers: Live) -> list[str]:
    """One line per checkpoint of a batch's takes (batches.plan's rows) that nobody can render now."""
    wanted = Counter((r["pool"], r["checkpoint"]) for r in rows)
    return [
        f"{n} take{'s' if n != 1 else ''} of {checkpoint}: {waiting(pool, checkpoint)}"
        for (pool, checkpoint), n in sorted(wanted.items())
        if not workers[(pool, checkpoint)]
    ]
