"""The release loop's order and capacity, and the reconciler, on Postgres and Redis."""

from __future__ import annotations

from datetime import timedelta

import redis
from sqlalchemy import update

from farm import states
from farm.db import transaction
from farm.queue import make_celery
from farm.release import Releaser, next_takes
from farm.tables import Take, Worker, utcnow

from ..helpers import age, make_batch, state
from ..services import REDIS_URL


def add_workers(sessions, n: int, pool: str = "explore", heartbeat_age: float = 0.0) -> list[str]:
    ids = [f"host{'-dead' if heartbeat_age else ''}:{i}:{pool}" for i in range(n)]
    with transaction(sessions) as s:
        for wid in ids:
            s.add(
                Worker(
                    id=wid, pool=pool, host="host", gpu="cpu", heartbeat_at=utcnow() - timedelta(seconds=heartbeat_age)
                )
            )
    return ids


def queued_ids_in_redis(pool: str = "explore") -> list[str]:
    import json

    r = redis.Redis.from_url(REDIS_URL)
    return [json.loads(m)["headers"]["id"] for m in r.lrange(pool, 0, -1)]


def test_priority_then_fair_share_then_age(sessions, clean):
    ana = make_batch(sessions, clean, [{"prompt": f"a{i}", "mode": "T"} for i in range(4)], producer="ana")
    bo = make_batch(sessions, clean, [{"prompt": f"b{i}", "mode": "T"} for i in range(2)], producer="bo")
    urgent = make_batch(sessions, clean, [{"prompt": "u", "mode": "T", "priority": 5}], producer="cy")
    for i, take_id in enumerate(ana):  # ana submitted first: her takes are the oldest
        age(sessions, take_id, 100 - i)
    with sessions() as s:
        order = next_takes(s, "explore", 10)
    # the urgent take first; then producers alternate (oldest first within each); then ana's rest
    assert order == [urgent[0], ana[0], bo[0], ana[1], bo[1], ana[2], ana[3]]


def test_fair_share_counts_takes_already_in_flight(sessions, clean):
    ana = make_batch(sessions, clean, [{"prompt": f"a{i}", "mode": "T"} for i in range(3)], producer="ana")
    bo = make_batch(sessions, clean, [{"prompt": f"b{i}", "mode": "T"} for i in range(2)], producer="bo")
    for i, take_id in enumerate(ana):
        age(sessions, take_id, 100 - i)
    with transaction(sessions) as s:
        states.release(s, ana[:2])  # ana already holds two workers
    with sessions() as s:
        assert next_takes(s, "explore", 3) == [bo[0], bo[1], ana[2]]


def test_release_fills_free_capacity_only_and_sends_after_commit(sessions, clean):
    takes = make_batch(sessions, clean, [{"prompt": f"t{i}", "mode": "T"} for i in range(5)])
    releaser = Releaser(sessions, make_celery(clean), clean)
    assert releaser.release_once()["explore"] == []  # no workers: nothing released
    add_workers(sessions, 2)
    add_workers(sessions, 3, heartbeat_age=3600)  # dead ones do not count
    released = releaser.release_once()["explore"]
    assert released == takes[:2]
    assert sorted(queued_ids_in_redis()) == sorted(takes[:2])  # Celery task id = take id
    assert releaser.release_once()["explore"] == []  # the pool is full
    with transaction(sessions) as s:
        states.claim(s, takes[0], "host:0:explore", "host", "cpu")
        states.cancel(s, takes[1])  # frees a slot
    assert releaser.release_once()["explore"] == [takes[2]]


def test_reprioritising_a_queued_take_changes_the_order_only_in_sql(sessions, clean):
    a, b = make_batch(sessions, clean, [{"prompt": "a", "mode": "T"}, {"prompt": "b", "mode": "T"}])
    with transaction(sessions) as s:
        states.reprioritise(s, b, 10)
    add_workers(sessions, 1)
    assert Releaser(sessions, make_celery(clean), clean).release_once()["explore"] == [b]
    assert state(sessions, a) == "queued" and queued_ids_in_redis() == [b]


def test_reconciler_resends_a_lost_message(sessions, clean):
    take = make_batch(sessions, clean, [{"prompt": "p", "mode": "T"}])[0]
    add_workers(sessions, 1)
    clock = [utcnow()]
    releaser = Releaser(sessions, make_celery(clean), clean, clock=lambda: clock[0])
    assert releaser.release_once()["explore"] == [take]
    redis.Redis.from_url(REDIS_URL).flushdb()  # the message is lost (e.g. Redis restarted empty)
    with transaction(sessions) as s:  # keep the worker alive in the injected clock's future
        s.execute(update(Worker).values(heartbeat_at=clock[0] + timedelta(seconds=clean.release_timeout + 1)))
    assert releaser.reconcile_once()["resent"] == []  # not yet overdue
    clock[0] += timedelta(seconds=clean.release_timeout + 1)
    assert releaser.reconcile_once()["resent"] == [take]
    assert queued_ids_in_redis() == [take] and state(sessions, take) == "released"


def test_reconciler_requeues_the_take_of_a_worker_that_stopped_heartbeating(sessions, clean):
    take = make_batch(sessions, clean, [{"prompt": "p", "mode": "T"}])[0]
    (worker,) = add_workers(sessions, 1, heartbeat_age=clean.worker_timeout + 5)
    with transaction(sessions) as s:
        states.claim(s, take, worker, "host", "cpu")
    result = Releaser(sessions, make_celery(clean), clean).reconcile_once()
    assert result["reclaimed"] == [take] and state(sessions, take) == "queued"


def test_broker_down_hands_takes_back_to_queued(sessions, clean):
    takes = make_batch(sessions, clean, [{"prompt": "p", "mode": "T"}])
    add_workers(sessions, 1)
    dead = clean.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    app = make_celery(dead)
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    app.conf.broker_transport_options = {"max_retries": 0}
    Releaser(sessions, app, clean).release_once()
    assert state(sessions, takes[0]) == "queued"
    with sessions() as s:
        assert s.get(Take, takes[0]).released_at is None
