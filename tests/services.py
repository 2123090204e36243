"""The real services the farm's and the workers' tests run on (Postgres, Redis, worker
processes) and the one way tests wait for them. CI starts Postgres and Redis; nothing here is skipped."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from farm.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


PG_ADMIN = os.environ.get("FARM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


REDIS_URL = os.environ.get("FARM_TEST_REDIS", "redis://127.0.0.1:6379/11")


TABLES = (
    "webhook_attempts",
    "webhook_messages",
    "webhook_endpoints",
    "outbox_cursors",
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
    "consent_events",
    "consent_links",
    "consent_records",
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


class TcpProxy:
    """A TCP proxy between a client and a server, which the test turns into a fault:

    - refuse(): the port is closed (connecting is refused) and every open connection reset;
    - freeze(): a network partition as the client sees it: connections, open and new, are
      accepted and kept open, and nothing is forwarded either way;
    - heal(): forwarding again; connections held through a freeze or refusal are reset
      (as a long partition's would be), new ones reach the server.

    One asyncio loop on a thread of its own; the controls return once the proxy is in the
    new mode."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = free_port()
        self.mode = "forward"
        self._links: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="tcp-proxy")
        self._thread.start()
        self._call(self._listen)

    def refuse(self) -> None:
        self._call(self._refuse)

    def freeze(self) -> None:
        self._call(self._freeze)

    def heal(self) -> None:
        self._call(self._heal)

    def close(self) -> None:
        self._call(self._refuse)
        self._call(self._cancel_pumps)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    def _call(self, step) -> None:
        asyncio.run_coroutine_threadsafe(step(), self._loop).result(30)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _refuse(self) -> None:
        self.mode = "refuse"
        if self._server is not None:
            self._server.close()
            self._server = None
        self._reset_all()

    async def _cancel_pumps(self) -> None:
        pumps = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)

    async def _freeze(self) -> None:
        self.mode = "freeze"

    async def _heal(self) -> None:
        self._reset_all()
        self.mode = "forward"
        if self._server is None:
            await self._listen()

    def _reset_all(self) -> None:
        for writer in list(self._links):
            sock = writer.get_extra_info("socket")
            if sock is not None:  # an RST, not a FIN: the connection is gone, not ended
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":  # accepted before the port closed
            writer.transport.abort()
            return
        self._links.add(writer)
        if self.mode == "freeze":  # the server is out of reach: take the bytes, answer nothing
            await self._pump(reader, None)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._links.discard(writer)
            writer.transport.abort()
            return
        self._links.add(up_writer)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> None:
        try:
            while data := await reader.read(65536):
                if writer is not None and self.mode == "forward":
                    writer.write(data)
                    await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if writer is not None and writer in self._links:
                self._links.discard(writer)
                writer.transport.abort()


@contextmanager
def releasing(settings: Settings) -> Iterator:
    """The release loop on a thread, with the farm's settings (those its workers run with:
    the checkpoint a pool's worker holds after a failed render is the settings' one)."""
    from farm.db import session_factory
    from farm.queue import make_celery
    from farm.release import Releaser

    releaser = Releaser(session_factory(settings.database), make_celery(settings), settings)
    stop = threading.Event()
    thread = threading.Thread(target=releaser.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield releaser
    finally:
        stop.set()
        thread.join(10)


class HoldingProxy:
    """A TCP proxy to the S3 server that holds the first PUT of a clip (or of any key ending in
    `key`) until released; then it drops that upload (its sender is gone) or, with
    forward_held, lets it through (its sender resumed)."""

    def __init__(self, target: str, forward_held: bool = False, key: bytes = b"/clip.mp4", every: bool = False):
        """every: hold each PUT of the key, not only the first (a client's retry of it too)."""
        url = urlsplit(target)
        self.target = (url.hostname, url.port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.holding, self.release, self.used = threading.Event(), threading.Event(), False
        self.forward_held, self.key, self.every = forward_held, key, every
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, outbound: bool) -> None:
        try:
            while data := src.recv(65536):
                hold = not self.used or self.every
                if outbound and hold and data.startswith(b"PUT ") and self.key in data.split(b"\r\n", 1)[0]:
                    self.used = True
                    self.holding.set()
                    self.release.wait(120)
                    if not self.forward_held:
                        return  # this upload never reaches the store
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.release.set()
        self.server.close()


@contextmanager
def serving(app, join: float = 10) -> Iterator[str]:
    """The app on a free loopback port in a thread of this process, for the block: its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "the API to start")
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(join)
