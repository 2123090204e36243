"""The Celery app that carries takes (Redis in production, a folder by default).

Redis only carries work: the dispatcher sends a take's id (= the Celery task id) to its
pool's queue, or to one worker's direct queue (farm/affinity.py), after the release is
committed, and workers claim it in SQL. A worker consumes its direct queue and its pool's.
"""

from __future__ import annotations

import re

from celery import Celery

from .settings import Settings

RENDER_TASK = "farm.render_take"
POOLS = ("explore", "hero")


def make_celery(settings: Settings) -> Celery:
    app = Celery("farm", broker=settings.broker, set_as_current=False)
    options: dict = {
        "visibility_timeout": settings.visibility_timeout,
        # a worker takes from its queues in the order it names them, its direct queue first;
        # Redis's default round robin would let a pool take overtake one sent to this worker
        "queue_order_strategy": "priority",
    }
    if settings.broker.startswith("filesystem://"):
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        # control: kombu's broadcast (pidbox) folder, else `./control` in the working directory
        options.update(
            data_folder_in=str(folder / "queue"),
            data_folder_out=str(folder / "queue"),
            processed_folder=str(folder / "processed"),
            store_processed=False,
            control_folder=str(folder / "control"),
        )
    app.conf.update(
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_acks_late=True,  # a message is acked only after the take is recorded
        task_reject_on_worker_lost=True,  # a killed worker's message goes back on the queue
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # results live in the database
        task_default_queue="explore",
        task_routes={RENDER_TASK: {"queue": "explore"}},
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # Flower shows takes from the moment a worker receives them
        # no "sent" event per task: it doubled the cost of every release (measured)
        task_send_sent_event=False,
    )
    return app


def direct_queue(pool: str, worker_id: str) -> str:
    """The queue only this worker consumes: "explore.host-1234-explore" for host:1234:explore
    (a Redis key, a kombu queue name, a file name for the folder broker, a -Q list entry)."""
    return f"{pool}.{re.sub(r'[^A-Za-z0-9_.-]', '-', worker_id)}"


def send_take(app: Celery, take_id: str, queue: str, producer=None, declare: bool = True) -> None:
    """queue: a pool's (its name) or a worker's (direct_queue). declare=False: the caller
    declared the queue already on this producer (a release pass declares each queue once)."""
    options: dict = {} if declare else {"declare": []}
    app.send_task(RENDER_TASK, args=[take_id], task_id=take_id, queue=queue, producer=producer, **options)
