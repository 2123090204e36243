"""Unique-key races in the record resolve to the right answer: concurrent submits over HTTP."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import func, select

from farm.tables import Batch, Project

CALLERS = 8


def race(api: str, token: str, bodies: list[tuple[dict, str | None]]) -> list[httpx.Response]:
    """Send every (body, Idempotency-Key) at once, from threads released together."""
    start = threading.Barrier(len(bodies))

    def post(item: tuple[dict, str | None]) -> httpx.Response:
        body, key = item
        headers = {"Authorization": f"Bearer {token}"} | ({"Idempotency-Key": key} if key else {})
        with httpx.Client(base_url=api, timeout=60) as client:
            start.wait()
            return client.post("/batches", json=body, headers=headers)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


def test_concurrent_submits_with_one_idempotency_key_make_one_batch(api, tokens, sessions):
    for round_ in range(4):
        body = {"project": "races", "takes": [{"prompt": f"round {round_}", "mode": "T", "checkpoint": "tiny"}]}
        answers = race(api, tokens["ana"], [(body, f"key-{round_}")] * CALLERS)
        assert sorted(r.status_code for r in answers) == [200] * (CALLERS - 1) + [201], [r.text for r in answers]
        assert len({r.json()["id"] for r in answers}) == 1
    with sessions() as session:
        assert session.execute(select(func.count()).select_from(Batch)).scalar_one() == 4


def test_concurrent_submits_into_one_new_project_make_one_project(api, tokens, sessions):
    bodies = [({"project": "brand new", "takes": [{"prompt": f"p{i}", "mode": "T"}]}, None) for i in range(CALLERS)]
    answers = race(api, tokens["ana"], bodies)
    assert [r.status_code for r in answers] == [201] * CALLERS, [r.text for r in answers]
    assert {r.json()["project"] for r in answers} == {"brand new"}
    with sessions() as session:
        assert (
            session.execute(select(func.count()).select_from(Project).where(Project.name == "brand new")).scalar_one()
            == 1
        )


def test_a_key_reused_for_another_body_while_racing_is_a_conflict(api, tokens):
    first = {"takes": [{"prompt": "one", "mode": "T"}]}
    other = {"takes": [{"prompt": "another", "mode": "T"}]}
    answers = race(api, tokens["ana"], [(first, "shared"), (other, "shared")] * (CALLERS // 2))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(201) == 1 and set(codes) <= {200, 201, 409} and 409 in codes, [r.text for r in answers]
    winner = next(r for r in answers if r.status_code == 201).json()["id"]
    assert all(r.json()["id"] == winner for r in answers if r.status_code == 200)
    assert all("different batch" in r.json()["detail"] for r in answers if r.status_code == 409)
