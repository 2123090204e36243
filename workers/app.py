"""The worker's Celery app: farm.queue's app with the render task registered."""

from __future__ import annotations

import logging
import time

from celery import Celery
from celery.exceptions import Reject
from celery.signals import worker_shutdown

from farm.queue import RENDER_TASK, make_celery, send_take
from farm.settings import get_settings

from .errors import Declined, Draining, TakeFailed
from .explore import ExploreRuntime
from .runtime import Runtime

log = logging.getLogger(__name__)
app: Celery = make_celery(get_settings())
_runtime: Runtime | None = None


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("worker runtime not started")
    return _runtime


def start_runtime(pool: str) -> Runtime:
    global _runtime
    if pool == "hero":
        from .hero import HeroRuntime

        _runtime = HeroRuntime(get_settings()).start()
    else:
        _runtime = ExploreRuntime(get_settings(), pool).start()
    return _runtime


@worker_shutdown.connect
def _stop_runtime(**_kwargs) -> None:
    if _runtime is not None:
        _runtime.stop()


#: what a run answers when the take ended failed (farm.states.fail moved it to failed)
ENDED_FAILED = "failed (failed)"


@app.task(name=RENDER_TASK, bind=True, throws=(TakeFailed,))
def render_take(self, take_id: str) -> str:
    """Render one take: the runtime claims, renders, uploads and records it."""
    try:
        outcome = runtime().run(take_id)
    except Declined as exc:
        why = "draining" if isinstance(exc, Draining) else "blocklisted for its batch"
        if (self.request.delivery_info or {}).get("routing_key") == runtime().direct_queue:
            # no other worker reads this worker's queue: the take goes to the pool's instead
            send_take(app, take_id, runtime().pool)
            log.info("take %s: declined on this worker's own queue; sent to the %s queue", take_id, runtime().pool)
            return f"declined ({why}): sent to the {runtime().pool} queue"
        # back on the queue, where a worker already waiting gets it first; the pause keeps
        # a lone blocked worker from spinning on it
        time.sleep(1.0)
        raise Reject(f"take {take_id}: worker {why}", requeue=True) from None
    if outcome == ENDED_FAILED:  # recorded; the task fails too, so Flower's count is the farm's
        raise TakeFailed(f"take {take_id} failed; GET /takes/{take_id} says why")
    return outcome
