"""The worker's Celery app: farm.queue's app with the render task registered."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_shutdown

from farm.queue import RENDER_TASK, make_celery
from farm.settings import get_settings

from .explore import ExploreRuntime

app: Celery = make_celery(get_settings())
_runtime: ExploreRuntime | None = None


def runtime() -> ExploreRuntime:
    if _runtime is None:
        raise RuntimeError("worker runtime not started")
    return _runtime


def start_runtime(pool: str) -> ExploreRuntime:
    global _runtime
    _runtime = ExploreRuntime(get_settings(), pool).start()
    return _runtime


@worker_shutdown.connect
def _stop_runtime(**_kwargs) -> None:
    if _runtime is not None:
        _runtime.stop()


@app.task(name=RENDER_TASK)
def render_take(take_id: str) -> str:
    """Render one take: the runtime claims, renders, uploads and records it."""
    return runtime().run(take_id)
