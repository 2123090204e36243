"""Service restarts with real processes: Redis losing its queues, Postgres going away mid-run.
Each test runs its own Redis or Postgres server so the restart touches nothing else."""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy import select

from farm.db import get_engine, session_factory, transaction
from farm.migrate import upgrade
from farm.queue import make_celery
from farm.release import Releaser
from farm.tables import Attempt, Take, TakeState, Worker, utcnow

from ..helpers import make_batch
from ..services import WorkerProcess, free_port, wait_for

PG_BIN = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])


class RedisServer:
    def __init__(self):
        self.port = free_port()
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: self._ping(), 20, "redis to start")

    def _ping(self) -> bool:
        try:
            return redis.Redis(port=self.port).ping()
        except redis.ConnectionError:
            return False

    def restart(self):
        self.proc.terminate()
        self.proc.wait(20)
        self.start()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(20)


class PostgresServer:
    """A private cluster (initdb as the postgres user), trust auth, on its own port."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="farm-pg-", dir="/tmp"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self._pg("initdb", "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE farm")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/farm"

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
            check=True,
            capture_output=True,
            cwd=self.dir,
        )

    def _ctl(self, action: str) -> None:
        self._pg(
            "pg_ctl",
            "-D",
            str(self.dir / "data"),
            "-w",
            "-m",
            "fast",
            "-l",
            str(self.dir / "log"),
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
            action,
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart")

    def stop(self) -> None:
        self._ctl("stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def run_loop(settings):
    releaser = Releaser(session_factory(settings.database), make_celery(settings), settings)
    stop = threading.Event()
    thread = threading.Thread(target=releaser.run, args=(stop,), daemon=True)
    thread.start()
    return releaser, stop, thread


def test_redis_restart_loses_released_messages_and_the_reconciler_sends_them_again(clean, sessions, tmp_path):
    server = RedisServer()
    settings = clean.model_copy(update={"broker_url": f"redis://127.0.0.1:{server.port}/0", "release_timeout": 3.0})
    worker = None
    try:
        ids = make_batch(sessions, settings, [{"prompt": f"t{i}", "mode": "T"} for i in range(3)])
        with transaction(sessions) as s:  # capacity from a worker that is about to appear
            s.add(
                Worker(id="placeholder:0:explore", pool="explore", host="h", gpu="cpu", slots=3, heartbeat_at=utcnow())
            )
        released = Releaser(sessions, make_celery(settings), settings).release_once()["explore"]
        assert sorted(released) == sorted(ids)
        assert redis.Redis(port=server.port).llen("explore") == 3
        server.restart()  # an unpersisted Redis comes back empty: the messages are gone
        assert redis.Redis(port=server.port).llen("explore") == 0
        with transaction(sessions) as s:
            s.delete(s.get(Worker, "placeholder:0:explore"))
        worker = WorkerProcess(settings, tmp_path / "worker.log")
        worker.wait_ready(sessions)
        _, stop, thread = run_loop(settings)
        try:
            wait_for(lambda: all(_state(sessions, t) == TakeState.done for t in ids), 120, "the lost takes to render")
        finally:
            stop.set()
            thread.join(10)
        with sessions() as s:
            for take_id in ids:  # rendered once each: no duplicate from the re-send
                assert len(s.execute(select(Attempt).where(Attempt.take_id == take_id)).scalars().all()) == 1
    finally:
        if worker:
            worker.kill()
        server.stop()


def _state(sessions, take_id):
    with sessions() as s:
        return s.get(Take, take_id).state


@pytest.fixture
def private_pg():
    server = PostgresServer()
    yield server
    get_engine(server.url).dispose()
    server.stop()


def test_postgres_restart_mid_run_leaves_no_take_stuck(clean, private_pg, tmp_path):
    settings = clean.model_copy(update={"database_url": private_pg.url})
    upgrade(private_pg.url)
    factory = session_factory(private_pg.url)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.wait_ready(factory)
    _, stop, thread = run_loop(settings)
    try:
        ids = make_batch(factory, settings, [{"prompt": f"t{i}", "mode": "T", "steps": 250} for i in range(2)])

        def progressing():
            with factory() as s:
                return s.execute(select(Take).where(Take.state == TakeState.running, Take.progress_step >= 2)).first()

        wait_for(progressing, 120, "a render to make progress")
        private_pg.restart()  # every connection of the dispatcher and the worker drops
        wait_for(
            lambda: all(_state(factory, t) in (TakeState.done, TakeState.failed) for t in ids),
            180,
            "every take to finish after the restart",
        )
        with factory() as s:
            takes = [s.get(Take, t) for t in ids]
            assert [t.state for t in takes] == [TakeState.done, TakeState.done]
            assert all(s.get(Worker, worker.id).heartbeat_at > t.started_at for t in takes)  # heartbeats resumed
        assert "not recorded (OperationalError)" in worker.log.read_text()  # the outage hit a render
    finally:
        stop.set()
        thread.join(10)
        worker.kill()
