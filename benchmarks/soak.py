"""Soak: many takes on `tiny` with 3 worker processes, one of them SIGKILLed every few
seconds (and replaced), on the real Postgres, Redis and an S3 server. At the end every
invariant is checked: each take done exactly once, no orphaned or missing objects, attempts
consistent. Prints the figures and writes JSON.

Usage: python benchmarks/soak.py [--takes 500] [--workers 3] [--kill-every 4] [--out soak.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from farm import batches  # noqa: E402
from farm.db import session_factory, transaction  # noqa: E402
from farm.queue import make_celery  # noqa: E402
from farm.release import Releaser  # noqa: E402
from farm.settings import Settings  # noqa: E402
from farm.storage import open_storage, output_keys  # noqa: E402
from farm.tables import Attempt, AttemptState, Output, Take, TakeState, Worker  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from services import temp_database  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Workers:
    """N worker processes; kill() SIGKILLs one at random and starts a replacement."""

    def __init__(self, settings: Settings, n: int, logs: Path):
        self.env = {
            **os.environ,
            **{f"FARM_{k.upper()}": str(v) for k, v in settings.model_dump().items() if v is not None},
        }
        self.logs, self.procs, self.kills, self.started = logs, [], 0, 0
        for _ in range(n):
            self.spawn()

    def spawn(self) -> None:
        log = open(self.logs / f"worker-{self.started}.log", "w")
        self.started += 1
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "workers", "--pool", "explore", "--loglevel", "WARNING"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        log.close()

    def kill(self) -> None:
        alive = [p for p in self.procs if p.poll() is None]
        if alive:
            victim = random.choice(alive)
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
            self.procs.remove(victim)
            self.kills += 1
            self.spawn()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def check(factory, storage, take_ids: list[str]) -> dict:
    """Every invariant, counted: each is 0 in a correct farm."""
    problems = {
        "not_done": 0,
        "duplicated_outputs": 0,
        "done_attempts_not_one": 0,
        "attempt_count_mismatch": 0,
        "attempts_left_running": 0,
        "missing_objects": 0,
        "orphaned_objects": 0,
        "manifest_mismatch": 0,
    }
    with factory() as s:
        takes = {t.id: t for t in s.execute(select(Take).where(Take.id.in_(take_ids))).scalars()}
        attempts: dict[str, list[Attempt]] = {}
        for a in s.execute(select(Attempt).where(Attempt.take_id.in_(take_ids))).scalars():
            attempts.setdefault(a.take_id, []).append(a)
        outputs: dict[str, list[Output]] = {}
        for o in s.execute(select(Output).where(Output.take_id.in_(take_ids))).scalars():
            outputs.setdefault(o.take_id, []).append(o)
    for take_id in take_ids:
        take, tries, outs = takes[take_id], attempts.get(take_id, []), outputs.get(take_id, [])
        problems["not_done"] += take.state != TakeState.done
        problems["duplicated_outputs"] += len(outs) > 1
        problems["done_attempts_not_one"] += sum(a.state == AttemptState.done for a in tries) != 1
        problems["attempt_count_mismatch"] += take.attempt_count != len(tries)
        problems["attempts_left_running"] += sum(a.state == AttemptState.running for a in tries)
        keys = [outs[0].clip_key, outs[0].thumbnail_key, outs[0].manifest_key] if outs else []
        present = [storage.exists(k) for k in keys] or [False] * 3
        problems["missing_objects"] += (take.state == TakeState.done) * present.count(False)
        if all(present) and outs:
            manifest = json.loads(storage.get_bytes(keys[2]))
            problems["manifest_mismatch"] += (
                manifest["take_id"] != take_id or manifest["outputs"]["clip"]["sha256"] != outs[0].clip_sha256
            )
    listed = storage.client.get_paginator("list_objects_v2").paginate(
        Bucket=storage.bucket, Prefix=f"{storage.prefix}/takes/"
    )
    current = {storage._key(k) for outs in outputs.values() for o in outs
               for k in (o.clip_key, o.thumbnail_key, o.manifest_key)}  # fmt: skip
    outputs_named = {key.rsplit("/", 1)[1] for key in output_keys("take", 1).values()}  # not previews or logs
    for page in listed:
        for obj in page.get("Contents", []):
            if obj["Key"].rsplit("/", 1)[1] in outputs_named:
                problems["orphaned_objects"] += obj["Key"] not in current  # an output no done take names
    return problems


def run(
    takes: int,
    workers: int,
    kill_every: float,
    timeout: float,
    redis_url: str,
    s3_endpoint: str,
    weights: str | None = None,
) -> dict:
    with temp_database("farm_soak") as url:
        return _run(url, takes, workers, kill_every, timeout, redis_url, s3_endpoint, weights)


def _run(
    url: str,
    takes: int,
    workers: int,
    kill_every: float,
    timeout: float,
    redis_url: str,
    s3_endpoint: str,
    weights: str | None,
) -> dict:
    redis.Redis.from_url(redis_url).flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="farm-soak-"))
    settings = Settings(
        data_dir=tmp,
        database_url=url,
        broker_url=redis_url,
        storage_url=f"s3://soak-{uuid.uuid4().hex[:6]}/r",
        s3_endpoint_url=s3_endpoint,
        weights_dir=weights,
        device="cpu",
        heartbeat_interval=0.3,
        worker_timeout=3.0,
        release_timeout=10.0,
        release_interval=0.1,
        max_attempts=20,
        progress_interval=1.0,
    )
    pool = None
    try:
        factory = session_factory(url)
        storage = open_storage(settings)
        with transaction(factory) as s:
            body = {"takes": [{"prompt": f"soak {i}", "mode": "T", "steps": 2, "seed": i} for i in range(takes)]}
            batch = batches.create_batch(s, body, "soak", settings)
            s.flush()
            ids = [t.id for t in batch.takes]
        pool = Workers(settings, workers, tmp)
        releaser = Releaser(factory, make_celery(settings), settings)
        stop = threading.Event()
        loop = threading.Thread(target=releaser.run, args=(stop,), daemon=True)
        loop.start()
        clock = time.monotonic()
        next_kill = clock + kill_every
        while time.monotonic() - clock < timeout:
            with factory() as s:
                left = s.execute(
                    select(func.count())
                    .select_from(Take)
                    .where(Take.id.in_(ids), Take.state.not_in([TakeState.done, TakeState.failed]))
                ).scalar_one()
            if left == 0:
                break
            if time.monotonic() >= next_kill:
                pool.kill()
                next_kill = time.monotonic() + kill_every
            time.sleep(0.2)
        wall = time.monotonic() - clock
        stop.set()
        loop.join(10)
        pool.stop()
        with factory() as s:
            lost_attempts = s.execute(
                select(func.count()).select_from(Attempt).where(Attempt.state == AttemptState.lost)
            ).scalar_one()
            all_attempts = s.execute(select(func.count()).select_from(Attempt)).scalar_one()
            workers_seen = s.execute(select(func.count()).select_from(Worker)).scalar_one()
        problems = check(factory, storage, ids)
        return {
            "takes": takes,
            "workers": workers,
            "kills": pool.kills,
            "worker_processes": workers_seen,
            "attempts": all_attempts,
            "lost_attempts": lost_attempts,
            "wall_s": round(wall, 1),
            "takes_per_s": round(takes / wall, 2),
            "lost_takes": problems["not_done"],
            "duplicated": problems["duplicated_outputs"] + problems["done_attempts_not_one"],
            "problems": problems,
        }
    finally:
        if pool:
            pool.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--takes", type=int, default=500)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between SIGKILLs")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--redis", default=os.environ.get("FARM_BENCH_REDIS", "redis://127.0.0.1:6379/12"))
    parser.add_argument("--out", default="soak.json")
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "soak")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "soak")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        result = run(args.takes, args.workers, args.kill_every, args.timeout, args.redis, f"http://127.0.0.1:{port}")
    finally:
        server.stop()
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(
        f"\nsoak: {result['takes']} takes, {result['workers']} workers, {result['kills']} SIGKILLs "
        f"in {result['wall_s']} s"
    )
    for key in ("attempts", "lost_attempts", "lost_takes", "duplicated", "takes_per_s"):
        print(f"  {key:16s} {result[key]}")
    print("  invariants      " + ", ".join(f"{k}={v}" for k, v in result["problems"].items()))
    return 0 if not any(result["problems"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
