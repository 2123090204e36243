"""Flower behind /flower, as operators use it: its own POSTs (the tasks table, the worker
controls) pass from a page of the dashboard's origin and stay refused from anywhere else or
for anyone but an operator; its worker names are the farm's worker ids and its failed tasks
are the farm's failed takes. A real Flower, a real worker, the real broker."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from farm.api.app import create_app

from ..helpers import missing_asset, wait_done
from ..services import ROOT, free_port, password, serving, settings_env, wait_for

TABLE = {"draw": "1", "start": "0", "length": "10", "order[0][column]": "0", "columns[0][data]": "name"}


@pytest.fixture
def farm_with_flower(clean, storage, tmp_path) -> Iterator[str]:
    """This farm's dispatcher (its URL) with its own Flower on a free loopback port."""
    settings = clean.model_copy(update={"flower_port": free_port()})
    log = open(tmp_path / "flower.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "farm.cli", "flower"], cwd=ROOT, env=settings_env(settings), stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip

    def up():
        assert proc.poll() is None, (tmp_path / "flower.log").read_text()[-2000:]
        try:
            return httpx.get(f"http://127.0.0.1:{settings.flower_port}/flower/healthcheck", timeout=2).status_code
        except httpx.HTTPError:
            return None

    try:
        wait_for(up, 60, "Flower to listen")
        with serving(create_app(settings, storage)) as url:
            yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.fixture
def clients() -> Iterator[list[httpx.Client]]:
    opened: list[httpx.Client] = []
    yield opened
    for c in opened:
        c.close()


def signed_in(clients: list[httpx.Client], url: str, name: str) -> httpx.Client:
    """A browser-like client: the dashboard's session cookie (no CSRF header is sent)."""
    clients.append(httpx.Client(base_url=url, timeout=30))
    assert clients[-1].post("/auth/login", json={"name": name, "password": password(name)}).status_code == 200
    return clients[-1]


def test_flower_works_for_operators_and_agrees_with_the_farm(
    farm_with_flower, tokens, start_worker, release_loop, sessions, clients
):
    url = farm_with_flower
    worker = start_worker()
    clients.append(httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {tokens['olga']}"}))
    operator = clients[-1]
    missing_asset(sessions, "ab" * 32)  # its object is gone: the take fails once, on the worker
    body = {
        "producer": "ana",
        "defaults": {"checkpoint": "tiny", "steps": 2},
        "takes": [{"prompt": "renders", "mode": "T"}, {"prompt": "fails", "mode": "TI", "image": "ab" * 32}],
    }
    good, bad = operator.post("/batches", json=body).json()["take_ids"]
    assert [t["state"] for t in wait_done(operator, [good, bad])] == ["done", "failed"]

    # worker names: Flower calls the worker by the farm's id for it
    flower_workers = wait_for(lambda: operator.get("/flower/api/workers?refresh=1").json(), 60, "Flower's workers")
    assert list(flower_workers) == [f"{worker.id}@{socket.gethostname()}"]
    assert [w["id"] for w in operator.get("/workers").json()] == [worker.id]

    # failed tasks: Flower's are the farm's failed takes, its successes the done ones
    farm_failed = {t["id"] for t in operator.get("/takes", params={"state": "failed"}).json()["data"]}
    flower_failed = wait_for(
        lambda: set(operator.get("/flower/api/tasks", params={"state": "FAILURE"}).json()) or None,
        60,
        "Flower to see the failed task",
    )
    assert flower_failed == farm_failed == {bad}
    assert set(operator.get("/flower/api/tasks", params={"state": "SUCCESS"}).json()) == {good}

    # Flower's tasks table is a POST from its own page: it passes, signed in as an operator
    olga = signed_in(clients, url, "olga")
    table = olga.post("/flower/tasks/datatable", data=TABLE, headers={"Sec-Fetch-Site": "same-origin"})
    assert table.status_code == 200, table.text
    assert {t["uuid"] for t in table.json()["data"]} == {good, bad}
    assert olga.post("/flower/tasks/datatable", data=TABLE, headers={"Origin": url}).status_code == 200
    # ... and its worker controls too (a pool grow, answered by the worker)
    control = olga.post(
        f"/flower/api/worker/queue/add-consumer/{worker.id}@{socket.gethostname()}",
        params={"queue": "flower-check"},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert control.status_code == 200 and "flower-check" in control.text, control.text

    # from another site, or with no sign of the page's origin, the cookie alone is refused
    cross = olga.post("/flower/tasks/datatable", data=TABLE, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403 and cross.json()["field"] == "csrf"
    bare = olga.post("/flower/tasks/datatable", data=TABLE)
    assert bare.status_code == 403 and bare.json()["field"] == "csrf"
    other = olga.post("/flower/tasks/datatable", data=TABLE, headers={"Origin": "https://evil.example"})
    assert other.status_code == 403
    # and the dashboard's own API keeps its CSRF rule: a same-origin POST without the header is refused
    api = olga.post("/batches", json=body, headers={"Sec-Fetch-Site": "same-origin"})
    assert api.status_code == 403 and api.json()["field"] == "csrf"

    # anyone but an operator: refused, however the request is sent
    ana = signed_in(clients, url, "ana")
    refused = ana.post("/flower/tasks/datatable", data=TABLE, headers={"Sec-Fetch-Site": "same-origin"})
    assert refused.status_code == 403 and refused.json()["field"] == "role"
    assert httpx.post(f"{url}/flower/tasks/datatable", data=TABLE).status_code == 401
