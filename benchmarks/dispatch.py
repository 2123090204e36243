"""Dispatch benchmark on the real Postgres and Redis.

  1. submit 10,000 takes over HTTP as one batch, and as 100 batches of 100;
  2. release throughput (takes/s) of the leader's release loop over 20,000 queued takes: this
     process holds the release lock (farm.leader) while two `farm up --no-worker` replicas
     stand by and serve the API to a load process; ours against today's code (the send of
     2026-11-24: a publish and a queue declaration per take, TodaysReleaser) in the same run,
     and against a plain priority-then-age order;
  3. claim latency p50/p99 with idle workers (release -> claimed in SQL by a real Celery
     worker process), ours and today's, against a bare Celery round trip (send -> task start).
Prints a table and writes JSON. Usage: python benchmarks/dispatch.py [--out dispatch.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402
import redis  # noqa: E402
import uvicorn  # noqa: E402
from services import PG_ADMIN, temp_database  # noqa: E402
from sqlalchemy import select, text, update  # noqa: E402

from farm import states  # noqa: E402
from farm.db import get_engine, session_factory, transaction  # noqa: E402
from farm.leader import lock_for  # noqa: E402
from farm.queue import direct_queue, make_celery, send_take  # noqa: E402
from farm.release import Releaser, free_capacity  # noqa: E402
from farm.settings import Settings  # noqa: E402
from farm.storage import LocalStorage  # noqa: E402
from farm.tables import Take, TakeState, Worker, utcnow  # noqa: E402

REDIS = os.environ.get("FARM_BENCH_REDIS", "redis://127.0.0.1:6379/12")

NAIVE = text(
    "SELECT id FROM takes WHERE pool = :pool AND state = 'queued' ORDER BY priority DESC, created_at, id LIMIT :n"
)


class TodaysReleaser(Releaser):
    """The release loop as it was before several replicas (2026-11-24): each take published on
    its own (a Redis round trip, and a queue declaration, per take). The baseline."""

    def _send(self, take_ids: list[str], pool: str, workers: dict[str, str | None] | None = None) -> None:
        workers = workers or {}
        take_ids = sorted(take_ids, key=lambda t: workers.get(t) is None)
        sent = 0
        try:
            with self.app.producer_or_acquire() as producer:
                for take_id in take_ids:
                    worker = workers.get(take_id)
                    send_take(self.app, take_id, direct_queue(pool, worker) if worker else pool, producer)
                    sent += 1
        except Exception:
            with transaction(self.factory) as session:
                states.unrelease(session, take_ids[sent:], self.clock())


RELEASERS = {"ours": Releaser, "today": TodaysReleaser}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def start_api(settings: Settings, storage_dir: Path) -> tuple[httpx.Client, uvicorn.Server]:
    """The API over HTTP, and a client signed in as an operator (who may submit for any producer)."""
    import socket

    from farm import accounts
    from farm.api.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, LocalStorage(storage_dir)), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    with transaction(session_factory(settings.database)) as session:
        token = accounts.create_token(session, accounts.create_user(session, "bench", "operator"))
    return httpx.Client(
        base_url=f"http://127.0.0.1:{port}", timeout=600, headers={"Authorization": f"Bearer {token}"}
    ), server


def submit(client: httpx.Client, batches: int, per_batch: int) -> float:
    body = lambda b: {
        "producer": f"p{b % 7}",
        "defaults": {"checkpoint": "tiny", "mode": "T"},
        "takes": [{"prompt": f"take {b}-{i}", "seed": i} for i in range(per_batch)],
    }
    start = time.perf_counter()
    for b in range(batches):
        client.post("/batches", json=body(b)).raise_for_status()
    return time.perf_counter() - start


def vacuum(url: str) -> None:
    with get_engine(url).connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE takes"))


def release_all(settings: Settings, factory, order: str, capacity: int, code: str = "ours") -> dict:
    """Release every queued take, `capacity` per pass, finishing each pass's takes in between."""
    with transaction(factory) as s:  # every run starts from the same queued takes
        s.execute(update(Take).values(state=TakeState.queued, released_at=None))
    vacuum(settings.database)  # and an equally clean table
    app = make_celery(settings)
    releaser = RELEASERS[code](factory, app, settings)
    if order == "plain":  # the baseline order: no fair share
        import farm.release as release_module

        saved = release_module._ORDER
        release_module._ORDER = NAIVE
    with transaction(factory) as s:
        s.execute(update(Worker).values(slots=capacity, heartbeat_at=utcnow()))
    released, seconds, passes = 0, 0.0, 0
    try:
        while True:
            start = time.perf_counter()
            out = releaser.release_once()["explore"]
            seconds += time.perf_counter() - start
            if not out:
                break
            released += len(out)
            passes += 1
            with transaction(factory) as s:  # the workers finish them (not timed)
                s.execute(update(Take).where(Take.state == TakeState.released).values(state=TakeState.done))
                s.execute(update(Worker).values(heartbeat_at=utcnow()))
    finally:
        if order == "plain":
            release_module._ORDER = saved
    redis.Redis.from_url(settings.broker).flushdb()
    return {"takes": released, "passes": passes, "seconds": seconds, "takes_per_s": released / seconds}


def claim_latency(settings: Settings, factory, client: httpx.Client, n_workers: int, n_takes: int) -> dict:
    return {code: _claim_latency(settings, factory, client, n_workers, n_takes, code) for code in RELEASERS}


def _claim_latency(settings: Settings, factory, client: httpx.Client, n_workers: int, n_takes: int, code: str) -> dict:
    env = {**os.environ, **{f"FARM_{k.upper()}": str(v) for k, v in settings.model_dump().items() if v is not None}}
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "dispatch_worker.py")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n_workers)
    ]
    try:
        with transaction(factory) as s:
            s.execute(text("TRUNCATE outputs, attempts, takes, batches, projects, workers CASCADE"))
        deadline = time.monotonic() + 120
        while True:  # the workers register themselves
            with factory() as s:
                if s.execute(select(Worker).where(Worker.stopped.is_(False))).scalars().all().__len__() >= n_workers:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("bench workers did not start")
            time.sleep(0.2)
        time.sleep(2)  # let every consumer connect to the broker before timing
        # baseline: a bare Celery round trip (send -> task start) on the same workers
        app = make_celery(settings)
        r = redis.Redis.from_url(settings.broker)
        sent = {}
        for _ in range(n_takes):
            key = uuid.uuid4().hex
            sent[key] = time.time()
            app.send_task("bench.ping", args=[key], queue="explore")
            time.sleep(0.01)
        while r.hlen("bench:ping") < n_takes:
            time.sleep(0.05)
        bare = [float(r.hget("bench:ping", k)) - t for k, t in sent.items()]
        # the farm: release loop + SQL claim, workers idle, takes trickling in
        releaser = RELEASERS[code](factory, app, settings)
        stop = threading.Event()
        loop = threading.Thread(target=releaser.run, args=(stop,), daemon=True)
        loop.start()
        for i in range(n_takes):
            client.post("/batches", json={"producer": "lat", "takes": [{"prompt": f"l{i}", "mode": "T"}]})
            time.sleep(0.01)
        while True:
            with factory() as s:
                left = s.execute(select(Take).where(Take.state != TakeState.done)).scalars().all()
            if not left:
                break
            time.sleep(0.2)
        stop.set()
        loop.join()
        with factory() as s:
            rows = s.execute(
                text(
                    "SELECT EXTRACT(EPOCH FROM a.started_at - t.released_at), "
                    "EXTRACT(EPOCH FROM a.started_at - t.created_at) "
                    "FROM attempts a JOIN takes t ON t.id = a.take_id"
                )
            ).all()
        claim = [float(a) for a, _ in rows]
        submit_to_claim = [float(b) for _, b in rows]
        return {
            "workers": n_workers,
            "takes": len(rows),
            "release_to_claim_ms": {"p50": pct(claim, 0.5) * 1e3, "p99": pct(claim, 0.99) * 1e3},
            "submit_to_claim_ms": {"p50": pct(submit_to_claim, 0.5) * 1e3, "p99": pct(submit_to_claim, 0.99) * 1e3},
            "bare_celery_ms": {"p50": pct(bare, 0.5) * 1e3, "p99": pct(bare, 0.99) * 1e3},
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="dispatch.json")
    parser.add_argument("--takes", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--latency-takes", type=int, default=400)
    parser.add_argument("--replicas", type=int, default=2, help="standby dispatchers serving the API meanwhile")
    parser.add_argument("--api-rate", type=float, default=40.0, help="requests a second to the standbys' API")
    parser.add_argument("--repeat", type=int, default=2, help="release runs of each code (the best is reported)")
    args = parser.parse_args()

    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())  # the machine is shared: say how busy it was
    with temp_database("farm_bench") as url:
        results = measure(url, args)
    meta = {
        "machine": f"{platform.node()} ({os.cpu_count()} cores)",
        "load_average": load_before,
        "python": platform.python_version(),
        "postgres": PG_ADMIN.split("@")[-1],
        "redis": REDIS,
    }
    report(meta, results, args.out)
    return 0


def measure(url: str, args) -> dict:
    redis.Redis.from_url(REDIS).flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="farm-bench-"))
    settings = Settings(
        data_dir=tmp,
        database_url=url,
        broker_url=REDIS,
        storage_url=f"file://{tmp}/objects",
        release_interval=0.02,
        heartbeat_interval=1.0,
        worker_timeout=30.0,
    )
    results: dict = {}
    if True:  # the database lives for this block
        factory = session_factory(url)
        client, server = start_api(settings, tmp / "objects")
        n = args.takes
        s1 = submit(client, 1, n)
        results["submit 1 batch"] = {"takes": n, "seconds": s1, "takes_per_s": n / s1}
        s100 = submit(client, 100, n // 100)
        results["submit 100 batches"] = {"takes": n, "seconds": s100, "takes_per_s": n / s100}
        with transaction(factory) as s:
            s.add(Worker(id="bench:0:explore", pool="explore", host="bench", gpu="none", slots=500))
        with factory() as s:
            assert free_capacity(s, "explore", utcnow(), settings) == 500
        lock = lock_for(settings, "release")
        assert lock.acquire(), "another process holds the release lock"  # this process leads
        with standby_replicas(settings, args.replicas, args.api_rate) as load:
            runs: dict[str, list[dict]] = {"ours": [], "today": []}
            for _ in range(args.repeat):  # alternating, so both see the same (shared, busy) machine
                for code in runs:
                    runs[code].append(release_all(settings, factory, "fair", 500, code))
            best = {code: max(r, key=lambda x: x["takes_per_s"]) for code, r in runs.items()}
            results["release, fair-share order (ours), 500 per pass"] = {**best["ours"], "runs": runs["ours"]}
            results["release, fair-share order (today's code)"] = {**best["today"], "runs": runs["today"]}
            results["release, plain priority/age order (ours)"] = release_all(settings, factory, "plain", 500)
        results["API on the standby replicas meanwhile"] = load
        results["claim latency"] = claim_latency(settings, factory, client, args.workers, args.latency_takes)
        lock.release()
        server.should_exit = True
    return results


@contextmanager
def standby_replicas(settings: Settings, n: int, rate: float) -> Iterator[dict]:
    """n `farm up --no-worker` replicas (standbys: this process holds the release lock) and a
    load process GETting their API at `rate` requests a second; the load's figures land in
    the dict yielded, at the end."""
    import socket

    from farm import accounts

    env = {**os.environ, **{f"FARM_{k.upper()}": str(v) for k, v in settings.model_dump().items() if v is not None}}
    ports, procs = [], []
    for _ in range(n):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
        argv = [sys.executable, "-m", "farm.cli", "up", "--no-worker", "--no-flower", "--port", str(ports[-1])]
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    deadline = time.monotonic() + 120
    for url in urls:
        while True:
            try:
                health = httpx.get(f"{url}/healthz", timeout=5).json()
                assert health["release_leader"] is False, "a replica leads: the benchmark must"
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the replicas did not start") from None
                time.sleep(0.2)
    with transaction(session_factory(settings.database)) as session:
        token = accounts.create_token(session, accounts.create_user(session, "bench-viewer", "viewer"))
    load = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "dispatch_load.py"), str(rate), token, *urls],
        stdout=subprocess.PIPE,
        text=True,
    )
    figures: dict = {"replicas": n, "rate_per_s": rate}
    try:
        yield figures
    finally:
        load.terminate()
        out, _ = load.communicate(60)
        figures.update(json.loads(out.strip().splitlines()[-1]))
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)


def report(meta: dict, results: dict, out: str) -> None:
    ours = results["release, fair-share order (ours), 500 per pass"]["takes_per_s"]
    today = results["release, fair-share order (today's code)"]["takes_per_s"]
    results["release rate, ours / today's code"] = ours / today
    Path(out).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"\n{meta['machine']}, load average before the run {meta['load_average']}")
    print(f"\n{'measurement':50s} {'takes':>7s} {'seconds':>8s} {'takes/s':>9s}")
    for key, r in results.items():
        if isinstance(r, dict) and "takes_per_s" in r:
            print(f"{key:50s} {r['takes']:7d} {r['seconds']:8.2f} {r['takes_per_s']:9.0f}")
    print(f"release rate, ours / today's code: {ours / today:.2f}x (each the best of its runs, alternating)")
    api = results["API on the standby replicas meanwhile"]
    print(f"API on {api['replicas']} standby replicas meanwhile ({api['rate_per_s']:g}/s): {api['requests']} requests, "
          f"p50 {api['p50_ms']} ms, "
          f"p99 {api['p99_ms']} ms, statuses {api['statuses']}")  # fmt: skip
    for code, lat in results["claim latency"].items():
        print(f"\nclaim latency ({code}), {lat['workers']} idle workers, {lat['takes']} takes   p50 ms   p99 ms")
        for key in ("release_to_claim_ms", "submit_to_claim_ms", "bare_celery_ms"):
            print(f"  {key:44s} {lat[key]['p50']:7.1f} {lat[key]['p99']:8.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
