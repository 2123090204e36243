"""Shared fixtures: tiny weights written in the official formats, generated media, and the real
services the farm and the workers are tested on (Postgres, Redis, an S3 API, the API over
HTTP, worker processes), each started once per session."""

from __future__ import annotations

import os
import signal
import uuid
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
import redis
from PIL import Image, ImageDraw
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from farm.db import get_engine, session_factory
from farm.migrate import upgrade
from farm.release import Releaser
from farm.settings import Settings
from models.specs import TINY, TINY_CONCAT
from models.tiny import write_weights

from .services import PG_ADMIN, REDIS_URL, TABLES, USERS, WorkerProcess, free_port, password, releasing, serving


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """A weights folder in the official layout for both tiny specs."""
    folder = tmp_path_factory.mktemp("weights")
    write_weights(folder, TINY, seed=0)
    write_weights(folder, TINY_CONCAT, seed=0)
    return folder


@pytest.fixture(scope="session")
def pipelines(weights):
    from models.pipeline import Pipeline

    return {name: Pipeline.load(name, weights, device="cpu") for name in ("tiny", "tiny-concat")}


def write_wav(path: Path, seconds: float, rate: int = 22_050, freq: float = 220.0) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * freq * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())
    return path


def draw_portrait(path: Path, size=(120, 160)) -> Path:
    img = Image.new("RGB", size, (90, 120, 170))
    d = ImageDraw.Draw(img)
    w, h = size
    d.ellipse((w * 0.25, h * 0.15, w * 0.75, h * 0.6), fill=(230, 190, 160))
    d.rectangle((w * 0.2, h * 0.7, w * 0.8, h), fill=(50, 50, 70))
    img.save(path)
    return path


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    return {
        "image": draw_portrait(folder / "portrait.png"),
        "audio": write_wav(folder / "speech.wav", seconds=1.5),
        "short_audio": write_wav(folder / "short.wav", seconds=0.3),
        "folder": folder,
    }


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
        consent_policy="off",  # tests of other features use assets nobody consented for; test_consent*.py set it
        webhook_allow_networks="127.0.0.0/8",  # the tests' webhook receivers listen on loopback
    )


@pytest.fixture
def clean(settings) -> Settings:
    """Empty tables and queues before a test. A request of the previous test still reading two
    tables (a closed page's last call) can deadlock with the TRUNCATE, and Postgres may end the
    TRUNCATE: it is made again, the reader having gone on."""
    for attempt in range(5):
        try:
            with get_engine(settings.database).begin() as conn:
                conn.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
            break
        except OperationalError as exc:
            if not isinstance(exc.orig, psycopg.errors.DeadlockDetected) or attempt == 4:
                raise
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

    with serving(create_app(settings, storage)) as url:
        yield url


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
    with releasing(clean) as releaser:
        yield releaser


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


#: Debian's Chromium, driven through Playwright (its own browser download cannot reach its servers)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--autoplay-policy=no-user-gesture-required",  # the dashboard tests play clips
]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """A headless Chromium for a module's browser tests. Per module, not per session: while
    Playwright's sync API is open it holds an event loop on this thread, and later tests that
    run asyncio themselves would fail."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()
