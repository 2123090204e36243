"""Each attempt keeps its worker's log lines (takes/<id>/<n>/log.txt) and its duration; the
lines of two takes never mix, though one renders while the other finishes on another thread."""

from __future__ import annotations

from datetime import timedelta

from farm.db import transaction
from farm.storage import log_key
from farm.tables import Attempt, AttemptState, Take, TakeState, utcnow

from ..helpers import make_batch, missing_asset, wait_done
from ..services import wait_for

SMALL = {"mode": "T", "steps": 3, "width": 64, "height": 48}


def wait_log(client, take_id: str, number: int = 1) -> str:
    def stored():
        r = client.get(f"/takes/{take_id}/attempts/{number}/log")
        return r.text if r.status_code == 200 else None

    return wait_for(stored, 60, f"the log of take {take_id} attempt {number}")


def test_each_attempt_keeps_its_own_log_lines_and_duration(client, start_worker, release_loop):
    start_worker()
    ids = client.post(
        "/batches", json={"takes": [{"prompt": "first", "seed": 1, **SMALL}, {"prompt": "second", "seed": 2, **SMALL}]}
    ).json()["take_ids"]
    for t in wait_done(client, ids):
        assert t["state"] == "done", t
        (attempt,) = t["attempts"]
        assert 0 < attempt["seconds"] < 300 and attempt["finished_at"] is not None
    for mine, other in (ids, ids[::-1]):
        text = wait_log(client, mine)
        assert f"take {mine} attempt 1: rendering tiny on" in text
        assert f"take {mine} attempt 1: rendered in" in text
        assert "content credentials signed" in text  # the finisher thread's lines are the take's too
        assert text.rstrip().endswith(f"take {mine} attempt 1: done")
        assert other not in text  # the second take rendered while the first finished: no mixing


def test_a_failed_attempt_keeps_the_error_in_its_log(client, sessions, clean, start_worker, release_loop):
    missing_asset(sessions, "ab" * 32)
    take_id = make_batch(sessions, clean, [{"prompt": "lost input", "seed": 1, "image": "ab" * 32, "mode": "TI"}])[0]
    start_worker()
    (t,) = wait_done(client, [take_id])
    assert t["state"] == "failed" and t["attempts"][0]["seconds"] is not None
    text = wait_log(client, take_id)
    assert f"take {take_id} attempt 1 failed: InputError" in text
    assert text.rstrip().endswith(f"take {take_id} attempt 1: failed (failed)")


def test_an_attempt_without_a_log_says_why(client, client_as, sessions, clean, storage):
    take_id = make_batch(sessions, clean, [{"prompt": "killed", "seed": 1}])[0]
    with transaction(sessions) as session:
        session.get(Take, take_id).state = TakeState.queued
        for number, state, ended in (
            (1, AttemptState.lost, utcnow() - timedelta(minutes=5)),
            (2, AttemptState.failed, utcnow()),
            (3, AttemptState.running, None),
        ):
            session.add(Attempt(take_id=take_id, number=number, worker_id="w", host="h", gpu="g", state=state,
                                started_at=utcnow() - timedelta(minutes=6), finished_at=ended))  # fmt: skip
    storage.delete(log_key(take_id, 1))
    r = client.get(f"/takes/{take_id}/attempts/1/log")
    assert r.status_code == 404 and r.json()["field"] == "number"
    assert "ended lost with no log: its worker stopped" in r.json()["detail"]
    r = client.get(f"/takes/{take_id}/attempts/2/log")  # its worker stores it a moment after the end
    assert r.status_code == 404 and "ended just now: its log is being kept; ask again" in r.json()["detail"]
    r = client.get(f"/takes/{take_id}/attempts/3/log")
    assert r.status_code == 404 and "still running" in r.json()["detail"]
    r = client.get(f"/takes/{take_id}/attempts/7/log")
    assert r.status_code == 404 and "has no attempt 7" in r.json()["detail"]
    assert client.get(f"/takes/{take_id}/attempts/0/log").status_code == 422
    assert client.get("/takes/nope/attempts/1/log").status_code == 404
    assert client_as(None).get(f"/takes/{take_id}/attempts/1/log").status_code == 401
    assert client_as("vic").get(f"/takes/{take_id}/attempts/3/log").status_code == 404  # viewers read logs too
    attempts = client.get(f"/takes/{take_id}").json()["attempts"]
    assert attempts[0]["seconds"] == 60.0 and attempts[2]["seconds"] is None
