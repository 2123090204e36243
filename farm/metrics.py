"""The farm's figures, read from the record when asked: Prometheus metrics (/metrics), the
autoscalers' demand (/metrics/demand), `farm workers` and `farm pools`.

Postgres is the record, so each figure is an aggregated query at scrape time and no process
keeps counters: every dispatcher replica reports the same numbers, restarts lose nothing.

- farm_takes{pool,state} (gauge): takes by state.
- farm_queue_depth{pool} (gauge): takes waiting for a GPU: queued (in Postgres) plus released
  (sent to the pool's Redis queue, not yet claimed). Redis itself is not asked: the release
  loop sends a pool only as many takes as it has free workers, so its list is near empty
  whatever the backlog; the backlog is in Postgres.
- farm_pool_slots{pool} (gauge): slots of the live, not draining workers.
- farm_release_latency_seconds{pool} (gauge histogram): release -> claim of the takes claimed
  in the last WINDOW seconds. A window, not cumulative: read it with histogram_quantile on the
  buckets directly, without rate(). (A take keeps only its latest release time, so a
  cumulative count would drop whenever a take is retried.)
- farm_render_seconds{pool} (histogram, cumulative): claim -> record of every attempt that
  ended on its worker (done, failed, canceled; lost attempts have no real end).
- farm_gpu_seconds_total{producer,pool} (counter): GPU seconds of every ended attempt, by the
  producer of the take's batch.
- farm_worker_heartbeat_age_seconds{worker,pool} (gauge) and farm_workers{pool,state} (gauge,
  farm.fleet.STATES): the workers seen in the last fleet.SEEN seconds.

A scrape runs six queries; the two cumulative families scan `attempts` once each.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from sqlalchemy import ColumnElement, case, extract, func, select
from sqlalchemy.orm import Session, sessionmaker

from . import fleet, states, usage
from .queue import POOLS
from .settings import Settings
from .tables import Attempt, AttemptState, Take, TakeState, utcnow

WINDOW = 900.0  #: seconds of claims the release-latency histogram covers
#: seconds; explore renders take minutes, hero renders up to hours
RENDER_BUCKETS = (1, 5, 15, 30, 60, 120, 180, 300, 600, 1200, 1800, 3600, 7200, 10800)
#: seconds between a take's release to Redis and a worker's claim
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
ENDED = (AttemptState.done, AttemptState.failed, AttemptState.canceled)


@dataclass(frozen=True)
class PoolFigures:
    pool: str
    workers: int  #: live and not draining
    slots: int  #: their slots: what the release loop fills
    draining: int
    queued: int
    released: int
    running: int

    @property
    def depth(self) -> int:
        """Takes waiting for a GPU."""
        return self.queued + self.released

    @property
    def demand(self) -> int:
        """Takes that want a GPU now: what an autoscaler sizes the pool to (one take per slot)."""
        return self.queued + self.released + self.running


def takes_by_state(session: Session) -> dict[tuple[str, str], int]:
    return {(pool, state.value): n for pool, by_state in states.counts(session, Take.pool).items()
            for state, n in by_state.items()}  # fmt: skip


def pools(
    session: Session, now: datetime, timeout: float, counts: dict[tuple[str, str], int] | None = None
) -> list[PoolFigures]:
    """Each pool's live workers and takes (`counts`: takes_by_state, if already read)."""
    counts = takes_by_state(session) if counts is None else counts
    live = fleet.workers(session, now, timeout, seen=timeout)
    out = []
    for pool in _pools(p for p, _ in counts):
        mine = [w for w in live if w.pool == pool]
        serving = [w for w in mine if w.state in fleet.SERVING]
        out.append(
            PoolFigures(
                pool,
                len(serving),
                sum(w.slots for w in serving),
                sum(w.state == "draining" for w in mine),
                *(counts.get((pool, s.value), 0) for s in (TakeState.queued, TakeState.released, TakeState.running)),
            )
        )
    return out


def _pools(found: Iterable[str]) -> list[str]:
    return list(POOLS) + sorted(set(found) - set(POOLS))


def _seconds(session: Session, end, start) -> ColumnElement[float]:
    """end - start in seconds, never negative (worker and dispatcher clocks may differ a little)."""
    diff: ColumnElement[Any]
    if session.get_bind().dialect.name == "sqlite":  # julianday's doubles: exact to ~50 us, so to the ms
        diff = func.round((func.julianday(end) - func.julianday(start)) * 86400.0, 3)
    else:
        diff = extract("epoch", end - start)
    return case((diff < 0, 0.0), else_=diff)


def _histograms(session: Session, value, group, where, bounds) -> dict[str, tuple[list[tuple[str, float]], float]]:
    """{group: (cumulative buckets as (le, count), sum)} counted in SQL, one scan."""
    counts = [func.sum(case((value <= b, 1), else_=0)) for b in bounds]
    stmt = select(group, func.count(), func.coalesce(func.sum(value), 0.0), *counts).where(*where).group_by(group)
    out = {}
    for key, n, total, *below in session.execute(stmt):
        buckets = [(floatToGoString(b), float(c or 0)) for b, c in zip(bounds, below)] + [("+Inf", float(n))]
        out[key] = (buckets, float(total))
    return out


class FarmCollector:
    """A prometheus_client collector: every scrape asks the database (a few aggregated queries)."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings, clock=utcnow):
        self.factory, self.settings, self.clock = factory, settings, clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        with self.factory() as session:
            yield from self._takes(session, now)
            yield from self._durations(session, now)
            yield from self._workers(session, now)

    def _takes(self, session: Session, now: datetime) -> Iterator[Metric]:
        takes = GaugeMetricFamily("farm_takes", "Takes by pool and state.", labels=["pool", "state"])
        depth = GaugeMetricFamily(
            "farm_queue_depth",
            "Takes waiting for a GPU: queued in Postgres plus released to the pool's Redis queue and not yet claimed.",
            labels=["pool"],
        )
        slots = GaugeMetricFamily("farm_pool_slots", "Slots of the pool's live, not draining workers.", labels=["pool"])
        counts = takes_by_state(session)
        for p in pools(session, now, self.settings.worker_timeout, counts):
            for state in TakeState:
                takes.add_metric([p.pool, state.value], counts.get((p.pool, state.value), 0))
            depth.add_metric([p.pool], p.depth)
            slots.add_metric([p.pool], p.slots)
        yield from (takes, depth, slots)

    def _durations(self, session: Session, now: datetime) -> Iterator[Metric]:
        latency = GaugeHistogramMetricFamily(
            "farm_release_latency_seconds",
            f"Seconds from release to claim of the takes claimed in the last "
            f"{WINDOW:g} s (a window: use histogram_quantile without rate()).",
            labels=["pool"],
        )
        wait = _seconds(session, Take.started_at, Take.released_at)
        recent = _histograms(
            session,
            wait,
            Take.pool,
            [Take.started_at >= now - timedelta(seconds=WINDOW), Take.released_at.is_not(None)],
            LATENCY_BUCKETS,
        )
        render = HistogramMetricFamily(
            "farm_render_seconds",
            "Seconds from claim to record of the attempts that ended on their worker (done, failed, canceled).",
            labels=["pool"],
        )
        took = _seconds(session, Attempt.finished_at, Attempt.started_at)
        ended = _histograms(
            session,
            took,
            Take.pool,
            [Attempt.take_id == Take.id, Attempt.state.in_(ENDED), Attempt.finished_at.is_not(None)],
            RENDER_BUCKETS,
        )
        empty_latency = [(floatToGoString(b), 0.0) for b in LATENCY_BUCKETS] + [("+Inf", 0.0)]
        empty_render = [(floatToGoString(b), 0.0) for b in RENDER_BUCKETS] + [("+Inf", 0.0)]
        for pool in _pools(list(recent) + list(ended)):
            latency.add_metric([pool], *recent.get(pool, (empty_latency, 0.0)))
            render.add_metric([pool], *ended.get(pool, (empty_render, 0.0)))
        gpu = CounterMetricFamily(
            "farm_gpu_seconds",
            "GPU seconds of ended attempts, by the producer of the take's batch.",
            labels=["producer", "pool"],
        )
        for (producer, pool), used in usage.by(session, Take.producer, Take.pool).items():
            gpu.add_metric([producer, pool], used.gpu_seconds)
        yield from (latency, render, gpu)

    def _workers(self, session: Session, now: datetime) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "farm_worker_heartbeat_age_seconds",
            f"Seconds since each worker's last heartbeat (workers seen in the last {fleet.SEEN:g} s).",
            labels=["worker", "pool"],
        )
        by_state = GaugeMetricFamily(
            "farm_workers", f"Workers seen in the last {fleet.SEEN:g} s, by state.", labels=["pool", "state"]
        )
        count: dict[tuple[str, str], int] = defaultdict(int)
        rows = fleet.workers(session, now, self.settings.worker_timeout)
        for w in rows:
            age.add_metric([w.id, w.pool], w.heartbeat_age)
            count[w.pool, w.state] += 1
        for pool in _pools(w.pool for w in rows):
            for state in fleet.STATES:
                by_state.add_metric([pool, state], count[pool, state])
        yield from (age, by_state)
