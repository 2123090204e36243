"""Dispatcher replicas for the tests: `farm up --no-worker --no-flower` processes on the
tests' Postgres and Redis, each on a port of its own, each in a session of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from farm.settings import Settings

from ..services import ROOT, free_port, settings_env, wait_for


class Dispatcher:
    def __init__(self, settings: Settings, log: Path):
        self.port, self.log = free_port(), log
        self._out = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "farm.cli", "up", "--no-worker", "--no-flower", "--port", str(self.port)],
            cwd=ROOT,
            env=settings_env(settings),
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def health(self, timeout: float = 5.0) -> dict | None:
        """/healthz's answer, or None when the process does not answer."""
        try:
            response = httpx.get(f"{self.url}/healthz", timeout=timeout)
        except httpx.TransportError:
            return None
        return response.json() if response.status_code == 200 else None

    def wait_ready(self) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"farm up exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            return self.health()

        wait_for(ready, 120, "farm up to serve /healthz")

    def leading(self) -> bool:
        return bool((self.health() or {}).get("release_leader"))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        self.proc.wait(60)
        self._out.close()


def start(settings: Settings, folder: Path, n: int) -> list[Dispatcher]:
    replicas = [Dispatcher(settings, folder / f"dispatcher-{i}.log") for i in range(n)]
    for d in replicas:
        d.wait_ready()
    return replicas


def the_leader(replicas: list[Dispatcher], timeout: float = 30) -> Dispatcher:
    """The one replica that says it leads (exactly one, once they agree)."""

    def one():
        leading = [d for d in replicas if d.proc.poll() is None and d.leading()]
        return leading[0] if len(leading) == 1 else None

    return wait_for(one, timeout, "exactly one replica to lead")
