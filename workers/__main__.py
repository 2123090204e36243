"""`python -m workers --pool explore|hero`: one worker process (solo pool: CUDA does not fork).
An explore worker renders on one GPU; a hero worker supervises a group of FARM_HERO_GPUS ranks."""

from __future__ import annotations

import argparse
import logging
import socket

from .app import app, start_runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers")
    parser.add_argument("--pool", choices=("explore", "hero"), default="explore")
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = start_runtime(args.pool)  # load the model before taking any message
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--concurrency=1",
            # its own queue first: with the queue order farm/queue.py sets, a take the release
            # loop sent to this worker (it holds the take's stack) is taken before a pool take
            f"--queues={runtime.direct_queue},{args.pool}",
            f"--loglevel={args.loglevel}",
            # the farm's worker id as Celery's (and so Flower's) name for it: one name everywhere
            f"--hostname={runtime.heartbeat.id}@{socket.gethostname()}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
