"""The release loop: keep each pool's queue topped up to its free capacity, in SQL's order.

Order: priority (high first), then fair share across producers (round-robin, counting the
takes each producer already has in flight), then age. Affinity (farm/affinity.py) then picks
where each released take goes: an idle worker holding its stack, or the pool's queue. The
reconciler sends again, to the pool's queue, a take whose message was lost (or whose worker
died before claiming it) and requeues the takes of workers that stopped heartbeating.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta

from celery import Celery
from sqlalchemy import Date, String, bindparam, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from . import affinity, capacity, fleet, nightly, states
from .db import transaction
from .queue import POOLS, direct_queue, send_take
from .settings import Settings
from .tables import Take, utcnow

log = logging.getLogger(__name__)

_ORDER = text("""
WITH active AS (
    SELECT producer, COUNT(*) AS n FROM takes
    WHERE pool = :pool AND state IN :active GROUP BY producer
), ranked AS (
    SELECT id, producer, priority, created_at,
           ROW_NUMBER() OVER (PARTITION BY producer, priority ORDER BY created_at, id) AS rn
    FROM takes WHERE pool = :pool AND state = :queued
      AND (:any_checkpoint OR checkpoint IN :checkpoints)  -- one a serving worker holds (farm/capacity.py)
      AND (hero_night IS NULL OR (hero_night = :night  -- a night's hero takes: inside its window only,
           AND NOT EXISTS (SELECT 1 FROM hero_nights h    -- and not once the budget stopped it
                           WHERE h.night = takes.hero_night AND h.state = :stopped)))
)
SELECT ranked.id FROM ranked LEFT JOIN active ON active.producer = ranked.producer
ORDER BY ranked.priority DESC, ranked.rn + COALESCE(active.n, 0), ranked.created_at, ranked.id
LIMIT :n
""").bindparams(
    bindparam("night", type_=Date),
    bindparam("checkpoints", type_=String(), expanding=True),
    bindparam("active", value=[s.value for s in states.ACTIVE], expanding=True),
    bindparam("queued", value=states.S.queued.value),
    bindparam("stopped", value=nightly.STOPPED),
)


def next_takes(
    session: Session, pool: str, n: int, night: date | None = None, checkpoints: list[str] | None = None
) -> list[str]:
    """The next n queued takes of a pool, in release order; of the nightly hero takes only
    those of `night`, the night whose window is open (None: none of them); only those of
    `checkpoints` (None: any), so a take nobody can render waits instead of failing."""
    if n <= 0:
        return []
    wanted = {"any_checkpoint": checkpoints is None, "checkpoints": checkpoints or []}
    return list(session.execute(_ORDER, {"pool": pool, "n": n, "night": night, **wanted}).scalars())


def free_capacity(session: Session, pool: str, now: datetime, settings: Settings) -> int:
    slots = fleet.serving_slots(session, pool, now, settings.worker_timeout)
    if slots == 0:
        return 0
    busy = session.execute(
        select(func.count()).select_from(Take).where(Take.pool == pool, Take.state.in_(states.ACTIVE))
    ).scalar_one()
    return max(0, slots + settings.release_ahead - busy)


class Releaser:
    def __init__(
        self, factory: sessionmaker[Session], app: Celery, settings: Settings, clock: Callable[[], datetime] = utcnow
    ):
        self.factory, self.app, self.settings, self.clock = factory, app, settings, clock
        #: where the last pass sent each take it released: a worker's id (its direct queue)
        #: or None (the pool's queue)
        self.routed: dict[str, str | None] = {}

    def release_once(self) -> dict[str, list[str]]:
        """Release and send each pool's next takes; the ids released, per pool, in release order."""
        out, self.routed = {}, {}
        for pool in POOLS:
            now = self.clock()
            with transaction(self.factory) as session:
                n = free_capacity(session, pool, now, self.settings)
                night = nightly.night_at(now, self.settings)
                held = sorted({c for _, c in capacity.live(session, now, self.settings, pool)})
                order = next_takes(session, pool, n, night, held)
                released = set(states.release(session, order, now))
                order = [t for t in order if t in released]
                routes = affinity.route(session, pool, order, now, self.settings.worker_timeout)
            self._send(order, pool, routes)  # only after the release is committed
            self.routed.update(routes)
            out[pool] = order
        return out

    def _send(self, take_ids: list[str], pool: str, workers: dict[str, str | None] | None = None) -> None:
        """Send each take to the direct queue of the worker `workers` names for it, else to the
        pool's queue. Direct ones go first: an idle holder waiting on both of its queues gets
        its own take, and a pool take goes to a worker with none."""
        workers = workers or {}
        take_ids = sorted(take_ids, key=lambda t: workers.get(t) is None)  # stable: release order within each
        try:
            # one connection and, on Redis, one pipeline for the pass (kombu's publish batch: a
            # round trip per pass, not per take); the folder broker sends each at once
            with self.app.producer_or_acquire() as producer, producer.batch():
                declared: set[str] = set()
                for take_id in take_ids:
                    worker = workers.get(take_id)
                    queue = direct_queue(pool, worker) if worker else pool
                    send_take(self.app, take_id, queue, producer, declare=queue not in declared)
                    declared.add(queue)
        except Exception:  # broker down: which were sent is uncertain, so hand them all back to the
            # queue in SQL (a take sent twice is claimed once, states.claim)
            log.exception("could not send takes to %s; returning %d takes to queued", pool, len(take_ids))
            with transaction(self.factory) as session:
                states.unrelease(session, take_ids, self.clock())

    def reconcile_once(self) -> dict[str, list]:
        now = self.clock()
        with transaction(self.factory) as session:
            lost = states.rerelease(session, now - timedelta(seconds=self.settings.release_timeout), now)
        for take_id, pool in lost:
            log.warning(
                "take %s was released %ss ago and never claimed: sending it again",
                take_id,
                self.settings.release_timeout,
            )
            self._send([take_id], pool)
        with transaction(self.factory) as session:
            dead = fleet.dead_ids(session, now, self.settings.worker_timeout)
            reclaimed = states.reclaim_from_dead_workers(session, dead, now)
        if reclaimed:
            log.warning("requeued %d takes of workers that stopped heartbeating: %s", len(reclaimed), reclaimed)
        return {"resent": [t for t, _ in lost], "reclaimed": reclaimed}

    def tick(self) -> None:
        """One pass of the loop: release, then reconcile (what the leader runs, farm.leader)."""
        self.release_once()
        self.reconcile_once()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # a database or broker outage: log, wait, try again
                log.exception("release loop pass failed; retrying")
            stop.wait(self.settings.release_interval)
