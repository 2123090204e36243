"""Several dispatcher replicas: one leads (the release lock in Postgres), the others serve the
API; when the leader dies another takes over within seconds and no take renders twice."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import httpx
from sqlalchemy import func, select

from farm.db import get_engine
from farm.leader import FileLock, PostgresLock, holder, lock_for
from farm.settings import Settings
from farm.tables import Attempt, Output, Take

from ..services import ROOT, settings_env, wait_for
from . import dispatchers


def test_the_lock_names_its_holder_and_passes_on_when_freed(clean, tmp_path):
    engine = get_engine(clean.database)
    a, b = PostgresLock(engine, "release", holder="host-a:1"), PostgresLock(engine, "release", holder="host-b:2")
    beat = PostgresLock(engine, "beat", holder="host-c:3")
    assert holder(clean, "release") is None
    assert a.acquire() and not b.acquire() and beat.acquire()  # one lock per name
    assert holder(clean, "release") == "host-a:1" and holder(clean, "beat") == "host-c:3"
    a.release()
    assert holder(clean, "release") is None
    assert b.acquire() and holder(clean, "release") == "host-b:2"
    assert b.conn is not None
    b.conn.invalidate()  # the holder's connection dies with its process
    b.conn = None
    wait_for(lambda: holder(clean, "release") is None, 10, "the dead holder's lock to be freed")
    beat.release()
    embedded = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/farm.db")
    first, second = lock_for(embedded, "release"), FileLock(tmp_path / "release.lock", holder="other:9")
    assert holder(embedded, "release") is None
    assert first.acquire() and not second.acquire()
    assert holder(embedded, "release") == f"{socket.gethostname()}:{os.getpid()}"
    first.release()
    assert second.acquire() and holder(embedded, "release") == "other:9"
    second.release()


def farm_pools(settings: Settings) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "farm.cli", "pools"], cwd=ROOT, env=settings_env(settings), capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout


class Poller:
    """GETs the API of some replicas over and over on a thread: every answer's status and time."""

    def __init__(self, replicas: list[dispatchers.Dispatcher], token: str):
        self.replicas, self.token = replicas, token
        self.answers: list[tuple[str, int, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        clients = [
            httpx.Client(base_url=d.url, headers={"Authorization": f"Bearer {self.token}"}) for d in self.replicas
        ]
        while not self.stop.is_set():
            for d, c in zip(self.replicas, clients):
                start = time.monotonic()
                try:
                    status = c.get("/pools", timeout=20).status_code
                except httpx.HTTPError:
                    status = 0
                self.answers.append((d.url, status, time.monotonic() - start))
            self.stop.wait(0.2)
        for c in clients:
            c.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


def test_sigkill_the_leader_of_three_mid_batch_every_take_renders_once(clean, sessions, tokens, start_worker, tmp_path):
    replicas = dispatchers.start(clean, tmp_path, 3)
    poller = None
    try:
        leader = dispatchers.the_leader(replicas)
        assert [d.leading() for d in replicas].count(True) == 1
        assert f"release leader: {socket.gethostname()}:{leader.proc.pid}" in farm_pools(clean)
        for _ in range(3):
            start_worker()
        api = httpx.Client(base_url=leader.url, headers={"Authorization": f"Bearer {tokens['ana']}"}, timeout=60)
        body = {"takes": [{"prompt": f"take {i}", "mode": "T", "steps": 1, "seed": i} for i in range(200)]}
        take_ids = api.post("/batches", json=body).json()["take_ids"]
        api.close()

        def done() -> int:
            with sessions() as s:
                return s.execute(select(func.count()).where(Take.state == "done")).scalar_one()

        wait_for(lambda: done() >= 40, 300, "the batch to be under way")
        others = [d for d in replicas if d is not leader]
        poller = Poller(others, tokens["vic"])
        killed_at = time.time()
        leader.stop(signal.SIGKILL)
        successor = dispatchers.the_leader(others, 15)
        taken_over = time.time() - killed_at

        def released_since_kill() -> float | None:
            with sessions() as s:
                after = datetime.fromtimestamp(killed_at, UTC)
                first = s.execute(select(func.min(Take.released_at)).where(Take.released_at > after)).scalar()
            return None if first is None else first.timestamp() - killed_at

        resumed = wait_for(released_since_kill, 30, "releasing to resume")
        assert resumed < 10, resumed
        assert f"release leader: {socket.gethostname()}:{successor.proc.pid}" in farm_pools(clean)

        wait_for(lambda: done() == len(take_ids), 600, "every take to render", interval=0.5)
        poller.close()
    finally:
        if poller is not None:
            poller.close()
        for d in replicas:
            d.stop()
    with sessions() as s:
        attempts = dict(s.execute(select(Attempt.take_id, func.count()).group_by(Attempt.take_id)).all())
        outputs = s.execute(select(func.count()).select_from(Output)).scalar_one()
    assert outputs == 200 and set(attempts) == set(take_ids) and set(attempts.values()) == {1}  # each rendered once
    assert poller.answers and {status for _, status, _ in poller.answers} == {200}  # the API answered throughout
    assert {url for url, _, _ in poller.answers} == {d.url for d in others}
    slowest = max(seconds for _, _, seconds in poller.answers)
    print(f"takeover {taken_over:.1f}s, first release after the kill {resumed:.1f}s, slowest API answer {slowest:.2f}s")
    assert slowest < 5, slowest


def test_a_leader_stopped_by_a_deploy_hands_over_at_once(clean, tmp_path):
    """SIGTERM (a rolling update): the leader frees the lock as it stops; the standby leads
    within a couple of its one-second asks."""
    replicas = dispatchers.start(clean, tmp_path, 2)
    try:
        leader = dispatchers.the_leader(replicas)
        [standby] = [d for d in replicas if d is not leader]
        assert standby.health() == {**standby.health(), "ok": True, "release_leader": False}
        stopped_at = time.monotonic()
        leader.stop(signal.SIGTERM)
        assert leader.proc.returncode == 0
        wait_for(standby.leading, 10, "the standby to lead")
        assert time.monotonic() - stopped_at < 10
        assert f"release leader: {socket.gethostname()}:{standby.proc.pid}" in farm_pools(clean)
    finally:
        for d in replicas:
            d.stop()
