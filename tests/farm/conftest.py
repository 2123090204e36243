"""Real services for the farm's tests: Postgres, Redis, an S3 API (moto's server), the API
over HTTP, and real worker processes. CI starts Postgres and Redis; nothing here is skipped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
import uvicorn
from sqlalchemy import text

from farm.db import get_engine, session_factory
from farm.migrate import upgrade
from farm.queue import make_celery
from farm.release import Releaser
from farm.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN = os.environ.get("FARM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("FARM_TEST_REDIS", "redis://127.0.0.1:6379/11")
TABLES = (
    "outputs",
    "attempts",
    "takes",
    "batches",
    "projects",
    "assets",
    "workers",
    "api_tokens",
    "users",
    "login_failures",
    "hero_nights",
)
#: the accounts every farm test has: name -> role (password: "{name}-password-1")
USERS = {"olga": "operator", "ana": "producer", "bo": "producer", "vic": "viewer"}


def wait_for(predicate: Callable[[], object], timeout: float = 60.0, what: str = "condition", interval: float = 0.05):
    """Poll until predicate() is truthy; the synchronisation every farm test uses."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"farm_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    upgrade(url)
    yield url
    get_engine(url).dispose()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "farm-tests")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", f"secret-{uuid.uuid4().hex}")  # distinctive: grep-able in logs
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def settings(pg_url, s3_endpoint, weights, tmp_path_factory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("farm"),
        database_url=pg_url,
        broker_url=REDIS_URL,
        storage_url=f"s3://farm-test-{uuid.uuid4().hex[:6]}/renders",
        s3_endpoint_url=s3_endpoint,
        weights_dir=weights,
        explore_checkpoint="tiny",
        device="cpu",
        heartbeat_interval=0.3,
        worker_timeout=4.0,
        release_timeout=30.0,
        release_interval=0.1,
        progress_interval=0.0,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"FARM_{name.upper()}"] = str(value)
    return env


@pytest.fixture
def clean(settings) -> Settings:
    """Empty tables and queues before a test."""
    with get_engine(settings.database).begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
    redis.Redis.from_url(REDIS_URL).flushdb()
    return settings


@pytest.fixture
def sessions(clean):
    return session_factory(clean.database)


@pytest.fixture(scope="session")
def storage(settings):
    from farm.storage import open_storage

    return open_storage(settings)


@pytest.fixture(scope="session")
def api(settings, storage) -> Iterator[str]:
    from farm.api.app import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, storage), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "the API to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def tokens(clean) -> dict[str, str]:
    """USERS created afresh; name -> API token."""
    from farm import accounts
    from farm.db import transaction

    out = {}
    with transaction(session_factory(clean.database)) as session:
        for name, role in USERS.items():
            out[name] = accounts.create_token(session, accounts.create_user(session, name, role, password(name)))
    return out


def password(name: str) -> str:
    return f"{name}-password-1"


@pytest.fixture
def client_as(api, tokens) -> Iterator[Callable[[str | None], httpx.Client]]:
    """client_as("ana"): an API client with ana's token; client_as(None): anonymous."""
    opened = []

    def make(name: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {tokens[name]}"} if name else {}
        opened.append(httpx.Client(base_url=api, timeout=30, headers=headers))
        return opened[-1]

    yield make
    for c in opened:
        c.close()


@pytest.fixture
def client(client_as) -> httpx.Client:
    """An operator's client (operators may submit on any producer's behalf)."""
    return client_as("olga")


@pytest.fixture
def release_loop(clean) -> Iterator[Releaser]:
    releaser = Releaser(session_factory(clean.database), make_celery(clean), clean)
    stop = threading.Event()
    thread = threading.Thread(target=releaser.run, args=(stop,), daemon=True)
    thread.start()
    yield releaser
    stop.set()
    thread.join(10)


class WorkerProcess:
    def __init__(self, settings: Settings, log: Path, pool: str = "explore"):
        self.log = log
        self._out = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workers", "--pool", pool, "--loglevel", "INFO"],
            cwd=ROOT,
            env=settings_env(settings),
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.settings = settings

    def wait_ready(self, sessions) -> str:
        from sqlalchemy import select

        from farm.tables import Worker

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            with sessions() as s:
                return s.execute(select(Worker.id).where(Worker.id.like(f"%:{self.proc.pid}:%"))).scalar_one_or_none()

        self.id = wait_for(ready, 120, "the worker to load its model and register")
        wait_for(lambda: "ready." in self.log.read_text(), 60, "the Celery consumer to start")
        return self.id

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        self.proc.wait(60)
        self._out.close()


@pytest.fixture
def start_worker(clean, sessions, tmp_path):
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        w = WorkerProcess(clean, tmp_path / f"worker-{len(started)}.log")
        started.append(w)
        w.wait_ready(sessions)
        return w

    yield start
    for w in started:
        w.kill(signal.SIGTERM)
