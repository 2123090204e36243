"""A worker for the dispatch benchmark: claims each take in SQL and finishes it at once
(no render), so the numbers are the dispatcher's, not the model's. Also answers `ping`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from farm import states
from farm.db import session_factory, transaction
from farm.queue import RENDER_TASK, make_celery
from farm.settings import get_settings
from workers.heartbeat import Heartbeat

settings = get_settings()
app = make_celery(settings)
factory = session_factory(settings.database)
heartbeat = Heartbeat(factory, "explore", "none", settings.heartbeat_interval)
marks = redis.Redis.from_url(settings.broker)


@app.task(name=RENDER_TASK)
def render_take(take_id: str) -> str:
    with transaction(factory) as session:
        attempt = states.claim(session, take_id, heartbeat.id, heartbeat.host, "none")
    if attempt is None:
        return "dropped"
    with transaction(factory) as session:
        states.finish(
            session,
            take_id,
            attempt,
            {"clip_key": "-", "thumbnail_key": "-", "manifest_key": "-", "clip_sha256": "0" * 64, "clip_size": 0},
            0.0,
        )
    return "done"


@app.task(name="bench.ping")
def ping(key: str) -> None:
    marks.hset("bench:ping", key, time.time())


if __name__ == "__main__":
    heartbeat.start()
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--queues=explore",
            "--loglevel=WARNING",
            f"--hostname=bench-{heartbeat.id.split(':')[1]}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )
