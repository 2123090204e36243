"""Webhooks with a real receiver process (tests/farm/webhook_receiver.py): every delivery
verified with the Standard Webhooks reference library, retries with backoff delivering once,
a dispatcher killed mid-delivery losing nothing, and destinations checked."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from farm import webhooks
from farm.db import transaction
from farm.errors import InvalidRequest
from farm.settings import Settings
from farm.tables import Batch, WebhookMessage, utcnow

from ..helpers import make_batch
from ..services import wait_for
from . import dispatchers

RECEIVER = Path(__file__).with_name("webhook_receiver.py")


class Receiver:
    """The receiver process: its URL and what it logged."""

    def __init__(self, folder: Path, *flags: str):
        self.log = folder / f"receiver-{len(list(folder.glob('receiver-*')))}.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, str(RECEIVER), str(self.log), *flags], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}/hooks/farm"

    def entries(self, event: str) -> list[dict]:
        if not self.log.exists():
            return []
        return [e for e in map(json.loads, self.log.read_text().splitlines()) if e["event"] == event]

    def accepted(self) -> list[dict]:
        """The requests answered 2xx, as received (headers and body)."""
        ok = [a["id"] for a in self.entries("answered") if a["status"] == 200]
        received = {r["id"]: r for r in self.entries("received")}
        return [received[i] for i in ok]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def receiver(tmp_path):
    started: list[Receiver] = []

    def start(*flags: str) -> Receiver:
        started.append(Receiver(tmp_path, *flags))
        return started[-1]

    yield start
    for r in started:
        r.stop()


def register(client, url: str, **body) -> dict:
    r = client.post("/webhooks", json={"url": url, **body})
    assert r.status_code == 201, r.text
    return r.json()


@contextmanager
def delivering(outbox: webhooks.Outbox) -> Iterator[None]:
    """The leader's delivery duty on a thread, for the block."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            outbox.deliver_once()
            stop.wait(0.1)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def verified(secret: str, request: dict) -> dict:
    """The body, verified with the Standard Webhooks reference library."""
    return Webhook(secret).verify(request["body"], request["headers"])


def test_destinations_and_who_may_register_are_checked(client_as, sessions, settings, receiver):
    ana, bo, vic = client_as("ana"), client_as("bo"), client_as("vic")
    r = ana.post("/webhooks", json={"url": "http://10.1.2.3/hook"})
    assert r.status_code == 422 and r.json()["field"] == "url"
    assert "private address" in r.json()["detail"] and "FARM_WEBHOOK_ALLOW_NETWORKS" in r.json()["detail"]
    for bad in ("ftp://example.com/x", "not a url", "http:///nohost"):
        r = ana.post("/webhooks", json={"url": bad})
        assert r.status_code == 422 and r.json()["field"] == "url", (bad, r.text)
    r = ana.post("/webhooks", json={"url": "http://127.0.0.1:9/x", "events": ["take.exploded"]})
    assert r.status_code == 422 and "take.exploded" in r.text
    assert vic.post("/webhooks", json={"url": "http://127.0.0.1:9/x"}).status_code == 403
    assert ana.post("/webhooks", json={"url": "http://127.0.0.1:9/x", "producer": "bo"}).status_code == 403
    [bo_take] = make_batch(sessions, settings, [{"prompt": "b", "mode": "T"}], producer="bo")
    bo_batch = bo.get(f"/takes/{bo_take}").json()["batch_id"]
    r = ana.post("/webhooks", json={"url": "http://127.0.0.1:9/x", "batch_id": bo_batch})
    assert r.status_code == 403 and r.json()["field"] == "owner"
    assert ana.post("/webhooks", json={"url": "http://127.0.0.1:9/x", "batch_id": "0" * 32}).status_code == 404
    made = register(ana, "http://127.0.0.1:9/x", events=["take.done"])
    assert made["secret"].startswith("whsec_") and made["producer"] == "ana" and made["events"] == ["take.done"]
    assert "secret" not in vic.get("/webhooks").json()[0]  # shown once, never listed
    assert ana.delete(f"/webhooks/{made['id']}").status_code == 204
    assert vic.get("/webhooks").json() == []
    # without the operator's allowance, loopback is refused too (the tests allow it)
    with pytest.raises(InvalidRequest, match="loopback address"):
        webhooks.check_destination("http://127.0.0.1:8080/x", Settings())


def test_take_and_batch_events_are_signed_the_standard_webhooks_way(
    client_as, sessions, clean, receiver, start_worker, release_loop
):
    """A real worker renders one take, the other is canceled: take.done, take.canceled and
    batch.finished arrive, each verified with the reference library; a tampered body is not."""
    hooks = receiver()
    ana = client_as("ana")
    made = register(ana, hooks.url)
    with delivering(webhooks.Outbox(sessions, clean)):
        start_worker()
        batch = ana.post(
            "/batches",
            json={
                "takes": [{"prompt": "done", "mode": "T", "steps": 1}, {"prompt": "off", "mode": "T", "priority": -5}]
            },
        ).json()
        done_id, canceled_id = batch["take_ids"]
        assert ana.post(f"/takes/{canceled_id}/cancel").status_code == 200
        wait_for(lambda: len(hooks.accepted()) == 3, 240, "three events to be delivered")
    events = {}
    for request in hooks.accepted():
        body = verified(made["secret"], request)
        assert request["headers"]["webhook-id"].startswith("msg_")
        events[body["type"]] = body["data"]
        with pytest.raises(WebhookVerificationError):
            Webhook(made["secret"]).verify(request["body"].replace('"ana"', '"bo"'), request["headers"])
    assert events["take.done"]["take_id"] == done_id and events["take.done"]["state"] == "done"
    assert events["take.canceled"]["take_id"] == canceled_id
    assert events["batch.finished"] == {"batch_id": batch["id"], "producer": "ana", "takes": 2,
                                        "done": 1, "failed": 0, "canceled": 1}  # fmt: skip
    listed = ana.get(f"/webhooks/{made['id']}/messages").json()
    assert sorted(m["type"] for m in listed) == ["batch.finished", "take.canceled", "take.done"]
    assert all(m["state"] == "delivered" and [a["status_code"] for a in m["attempts"]] == [200] for m in listed)
    assert ana.get("/webhooks").json()[0]["messages"] == {"delivered": 3}


def test_a_receiver_failing_three_times_gets_the_event_once_with_a_2xx(client_as, sessions, clean, receiver):
    """Retries back off (doubling from FARM_WEBHOOK_RETRY_BASE); the fourth try is answered
    200 and nothing is sent after it; a secret rotated meanwhile signs beside the old one."""
    hooks = receiver("--fail-first", "3")
    ana = client_as("ana")
    made = register(ana, hooks.url, events=["take.canceled"])
    [take_id] = make_batch(sessions, clean, [{"prompt": "one", "mode": "T"}])
    assert ana.post(f"/takes/{take_id}/cancel").status_code == 200
    now = [utcnow()]
    outbox = webhooks.Outbox(sessions, clean, clock=lambda: now[0])

    def attempt() -> int:
        tried = outbox.deliver_once()
        wait_for(lambda: len(hooks.entries("answered")) == len(hooks.entries("received")), 30, "the answer")
        return tried

    assert attempt() == 1
    for n in (1, 2, 3):
        wait = webhooks.delay(n, clean)
        assert wait == clean.webhook_retry_base * 2 ** (n - 1)
        now[0] += timedelta(seconds=wait * 0.9)
        assert attempt() == 0  # not yet: it backs off
        if n == 3:
            rotated = ana.post(f"/webhooks/{made['id']}/rotate", json={"keep_old_hours": 1}).json()
        now[0] += timedelta(seconds=wait * 0.2)
        assert attempt() == 1
    now[0] += timedelta(days=2)
    assert attempt() == 0  # delivered: never sent again
    answers = hooks.entries("answered")
    assert [a["status"] for a in answers] == [500, 500, 500, 200]
    assert len({a["id"] for a in answers}) == 1  # one message, the same webhook-id each time
    last = hooks.accepted()[0]
    assert len(last["headers"]["webhook-signature"].split(" ")) == 2
    assert verified(rotated["secret"], last) == verified(made["secret"], last)  # either secret verifies it
    assert verified(rotated["secret"], last)["data"]["take_id"] == take_id
    [message] = ana.get(f"/webhooks/{made['id']}/messages").json()
    assert message["state"] == "delivered" and message["id"] == answers[0]["id"]
    assert [(a["number"], a["status_code"]) for a in message["attempts"]] == [(1, 500), (2, 500), (3, 500), (4, 200)]
    assert (
        all("answered 500" in a["error"] for a in message["attempts"][:3]) and message["attempts"][3]["error"] is None
    )


def test_a_message_is_given_up_after_the_retry_hours(client_as, sessions, clean, receiver):
    hooks = receiver("--fail-first", "1000")
    ana = client_as("ana")
    made = register(ana, hooks.url)
    [take_id] = make_batch(sessions, clean, [{"prompt": "one", "mode": "T"}])
    ana.post(f"/takes/{take_id}/cancel")
    now = [utcnow()]
    outbox = webhooks.Outbox(sessions, clean, clock=lambda: now[0])

    def pending() -> bool:
        with sessions() as s:
            return "pending" in set(s.execute(select(WebhookMessage.state)).scalars())

    for _ in range(100):  # an hour apart: the backoff's cap
        outbox.deliver_once()
        if not pending():
            break
        now[0] += timedelta(hours=1)
    messages = ana.get(f"/webhooks/{made['id']}/messages").json()
    assert {m["state"] for m in messages} == {"gave_up"}  # the take's and its batch's
    assert all(len(m["attempts"]) <= clean.webhook_retry_hours + 3 for m in messages)


def test_a_dispatcher_killed_mid_delivery_loses_nothing(client_as, sessions, clean, receiver, tmp_path):
    """Two replicas; the leader is SIGKILLed while the receiver holds its first delivery: the
    other takes over and delivers that message again (its first try was never answered) and
    every later one, each accepted once."""
    hooks = receiver("--hold-first", "120")
    ana = client_as("ana")
    made = register(ana, hooks.url)
    fast = clean.model_copy(update={"webhook_interval": 0.2, "webhook_timeout": 2.0})
    replicas = dispatchers.start(fast, tmp_path, 2)
    try:
        takes = make_batch(sessions, clean, [{"prompt": f"t{i}", "mode": "T"} for i in range(3)])
        assert ana.post(f"/takes/{takes[0]}/cancel").status_code == 200
        wait_for(lambda: hooks.entries("received"), 60, "the first delivery to arrive")
        leader = dispatchers.the_leader(replicas)
        leader.stop(signal.SIGKILL)
        for take_id in takes[1:]:  # events while the old leader is dead and the new one takes over
            assert ana.post(f"/takes/{take_id}/cancel").status_code == 200
        wait_for(lambda: len(hooks.accepted()) == 4, 90, "every event to be accepted")
        [survivor] = [d for d in replicas if d is not leader]
        assert survivor.leading()
    finally:
        for d in replicas:
            d.stop()
    accepted = [verified(made["secret"], r) for r in hooks.accepted()]
    canceled = sorted(b["data"]["take_id"] for b in accepted if b["type"] == "take.canceled")
    assert canceled == sorted(takes) and [b["type"] for b in accepted].count("batch.finished") == 1
    first = hooks.entries("received")[0]["id"]
    assert [r["id"] for r in hooks.entries("received")].count(first) == 2  # tried again: it was never answered
    with transaction(sessions) as s:
        rows = s.execute(select(WebhookMessage)).scalars().all()
        assert {m.state for m in rows} == {"delivered"} and len(rows) == 4
    [cut] = [m for m in ana.get(f"/webhooks/{made['id']}/messages").json() if m["id"] == first]
    assert cut["attempts"][0]["seconds"] is None and cut["attempts"][1]["status_code"] == 200


def test_a_batch_submitted_with_a_webhook_gets_its_events_and_no_other(client_as, sessions, clean, receiver):
    """`webhooks` in the submit body: endpoints for that batch only, their secrets in the
    answer (once: a replay of the submit makes none); a refused URL makes no batch."""
    hooks = receiver()
    ana = client_as("ana")
    r = ana.post("/batches", json={"takes": [{"prompt": "x", "mode": "T"}], "webhooks": [{"url": "http://10.0.0.9/h"}]})
    assert r.status_code == 422 and r.json()["field"] == "webhooks[0].url"
    with sessions() as s:
        assert s.execute(select(func.count()).select_from(Batch)).scalar_one() == 0
    body = {"takes": [{"prompt": "one", "mode": "T"}], "webhooks": [{"url": hooks.url, "events": ["take.canceled"]}]}
    made = ana.post("/batches", json=body, headers={"Idempotency-Key": "with-hook"})
    assert made.status_code == 201, made.text
    [hook] = made.json()["webhooks"]
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["take.canceled"]
    again = ana.post("/batches", json=body, headers={"Idempotency-Key": "with-hook"})
    assert again.status_code == 200 and again.json()["webhooks"] is None  # a replay: no second endpoint
    [other] = make_batch(sessions, clean, [{"prompt": "other", "mode": "T"}])  # ana's too, another batch
    for take_id in (made.json()["take_ids"][0], other):
        assert ana.post(f"/takes/{take_id}/cancel").status_code == 200
    outbox = webhooks.Outbox(sessions, clean)
    assert outbox.deliver_once() == 1
    [request] = hooks.accepted()
    assert verified(hook["secret"], request)["data"]["take_id"] == made.json()["take_ids"][0]
    [listed] = ana.get("/webhooks").json()
    assert listed["batch_id"] == made.json()["id"] and listed["messages"] == {"delivered": 1}
