"""The real services the farm's and the workers' tests run on (Postgres, Redis, worker
processes) and the one way tests wait for them. CI starts Postgres and Redis; nothing here is skipped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from farm.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


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


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"FARM_{name.upper()}"] = str(value)
    return env


def password(name: str) -> str:
    return f"{name}-password-1"


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
