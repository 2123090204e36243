"""Actions on a whole batch over the API (cancel, retry the failed, priority, pause, resume,
select for hero), the estimate shown before a big sweep, the warning for a checkpoint no live
worker holds, and a cancel that comes too late. On Postgres, through the real app."""

from __future__ import annotations

from datetime import timedelta

from farm import states
from farm.db import transaction
from farm.release import next_takes
from farm.tables import Attempt, AttemptState, Take, TakeState, Worker, utcnow

from ..helpers import make_batch


def sweep(n_prompts: int, seeds: int = 3, checkpoint: str = "tiny", producer: str = "ana") -> dict:
    return {
        "project": "p",
        "name": "sweep",
        "producer": producer,
        "defaults": {"checkpoint": checkpoint, "mode": "T", "steps": 2},
        "sweep": {"prompts": [f"prompt {i}" for i in range(n_prompts)], "seeds": list(range(seeds))},
    }


def set_states(sessions, ids: list[str], state: TakeState) -> None:
    with transaction(sessions) as s:
        for take_id in ids:
            s.get(Take, take_id).state = state


def by_state(client, batch_id) -> dict:
    return client.get(f"/batches/{batch_id}").json()["counts"]


def test_cancel_a_whole_sweep_at_once(client_as, sessions):
    ana = client_as("ana")
    batch = ana.post("/batches", json=sweep(20)).json()  # the 60-take sweep typed by mistake
    ids = batch["take_ids"]
    assert len(ids) == 60
    set_states(sessions, ids[:2], TakeState.running)  # two already rendering
    set_states(sessions, ids[2:3], TakeState.done)
    r = ana.post(f"/batches/{batch['id']}/cancel")
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["changed"], out["stopping"]) == (57, 2)
    assert out["message"] == "57 takes canceled; 2 takes rendering stop after the current step"
    assert out["batch"]["counts"] == {**out["batch"]["counts"], "canceled": 57, "running": 2, "done": 1, "queued": 0}
    with sessions() as s:
        assert all(s.get(Take, t).cancel_requested for t in ids[:2])
    again = ana.post(f"/batches/{batch['id']}/cancel").json()
    assert again["changed"] == 0 and again["stopping"] == 0 and "nothing to cancel" in again["message"]


def test_retry_queues_only_the_failed(client_as, sessions):
    ana = client_as("ana")
    batch = ana.post("/batches", json=sweep(2, seeds=2)).json()
    ids = batch["take_ids"]
    set_states(sessions, ids[:2], TakeState.failed)
    set_states(sessions, ids[2:3], TakeState.canceled)
    out = ana.post(f"/batches/{batch['id']}/retry").json()
    assert out["changed"] == 2 and out["message"] == "2 failed takes queued again"
    counts = out["batch"]["counts"]
    assert (counts["queued"], counts["canceled"], counts["failed"]) == (3, 1, 0)
    assert "no failed takes" in ana.post(f"/batches/{batch['id']}/retry").json()["message"]


def test_pause_holds_the_batch_back_and_resume_keeps_its_order(client_as, sessions, clean):
    ana = client_as("ana")
    paused = ana.post("/batches", json=sweep(2, seeds=2)).json()
    other = ana.post("/batches", json={**sweep(1, seeds=1), "name": "other"}).json()
    set_states(sessions, paused["take_ids"][:1], TakeState.released)  # its message is in flight
    out = ana.post(f"/batches/{paused['id']}/pause").json()
    assert out["changed"] == 4 and out["batch"]["counts"]["paused"] == 4 and not out["batch"]["finished"]
    with sessions() as s:
        assert next_takes(s, "explore", 10) == other["take_ids"]  # only the other batch is released
        # a worker that gets the released take's message claims nothing
        assert states.claim(s, paused["take_ids"][0], "w", "h", "cpu") is None
    assert "nothing to pause" in ana.post(f"/batches/{paused['id']}/pause").json()["message"]
    out = ana.post(f"/batches/{paused['id']}/resume").json()
    assert out["changed"] == 4 and out["message"] == "4 takes queued again, in their old order"
    with sessions() as s:
        assert next_takes(s, "explore", 10) == paused["take_ids"] + other["take_ids"]  # older first, as before
    # a paused take can be canceled too
    ana.post(f"/batches/{paused['id']}/pause")
    assert ana.post(f"/takes/{paused['take_ids'][1]}/cancel").json()["state"] == "canceled"


def test_priority_and_select_for_hero_on_a_batch(client_as, sessions):
    ana = client_as("ana")
    batch = ana.post("/batches", json=sweep(2, seeds=2)).json()
    ids = batch["take_ids"]
    set_states(sessions, ids[:2], TakeState.done)
    set_states(sessions, ids[2:3], TakeState.running)
    out = ana.post(f"/batches/{batch['id']}/priority", json={"priority": 7}).json()
    assert out["changed"] == 1 and out["message"] == "priority 7 on 1 take not yet rendering"
    with sessions() as s:
        assert [s.get(Take, t).priority for t in ids] == [0, 0, 0, 7]
    bad = ana.post(f"/batches/{batch['id']}/priority", json={"priority": 5000})
    assert bad.status_code == 422 and "priority" in bad.json()["field"]
    out = ana.post(f"/batches/{batch['id']}/select", json={"selected": True}).json()
    assert out["changed"] == 2 and out["message"] == "2 finished takes selected for hero"
    assert client_as("olga").get("/takes", params={"selected": "true"}).json()["count"] == 2


def test_batch_actions_are_the_owners_or_an_operators(client_as):
    batch = client_as("ana").post("/batches", json=sweep(1, seeds=2)).json()
    r = client_as("bo").post(f"/batches/{batch['id']}/cancel")
    assert r.status_code == 403 and "belongs to ana" in r.json()["detail"]
    assert client_as("vic").post(f"/batches/{batch['id']}/pause").status_code == 403
    assert client_as("olga").post(f"/batches/{batch['id']}/pause").json()["changed"] == 2
    missing = client_as("ana").post("/batches/nope/cancel")
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]


def test_the_estimate_counts_takes_and_measures_gpu_time_before_submitting(client_as, sessions, clean):
    ana = client_as("ana")
    first = ana.post("/batches/estimate", json=sweep(20)).json()
    assert first["takes"] == 60 and first["confirm"] is True
    assert first["gpu_seconds"] is None and first["checkpoints"][0]["measured_from"] == 0  # nothing rendered yet
    assert client_as("olga").get("/takes").json()["count"] == 0  # an estimate submits nothing
    # one finished attempt of 2 steps took 3 GPU seconds: a 60-take sweep of the same takes, 180
    [take] = make_batch(sessions, clean, [{"prompt": "x", "seed": 1, "checkpoint": "tiny", "mode": "T", "steps": 2}])
    with transaction(sessions) as s:
        s.add(Attempt(take_id=take, number=1, worker_id="w", host="h", gpu="cpu", state=AttemptState.done,
                      finished_at=utcnow(), gpu_seconds=3.0))  # fmt: skip
    measured = ana.post("/batches/estimate", json=sweep(20)).json()
    assert measured["checkpoints"][0]["measured_from"] == 1
    assert abs(measured["gpu_seconds"] - 180.0) < 1e-6
    small = ana.post("/batches/estimate", json=sweep(1, seeds=2)).json()
    assert small["takes"] == 2 and small["confirm"] is False
    bad = ana.post("/batches/estimate", json={**sweep(1), "defaults": {"checkpoint": "tiny", "frames": 20}})
    assert bad.status_code == 422 and bad.json()["field"] == "takes[0].frames"  # validated as a submit is


def test_a_checkpoint_no_live_worker_holds_waits_and_the_submit_says_so(client_as, sessions, clean):
    with transaction(sessions) as s:
        alive = utcnow() + timedelta(hours=1)  # heartbeating all test long
        s.add(Worker(id="w1", pool="explore", host="h", gpu="cpu", holding="tiny", heartbeat_at=alive))
    ana = client_as("ana")
    ok = ana.post("/batches", json=sweep(1, seeds=1)).json()
    assert ok["warnings"] == []
    body = {**sweep(1, seeds=2), "defaults": {"checkpoint": "humo-1.7b", "mode": "T", "steps": 2}}
    assert (
        "no live worker of the explore pool holds humo-1.7b"
        in ana.post("/batches/estimate", json=body).json()["warnings"][0]
    )
    waiting = ana.post("/batches", json=body).json()
    assert waiting["warnings"] == [
        "2 takes of humo-1.7b: no live worker of the explore pool holds humo-1.7b: its takes wait, queued, "
        "until one starts (or choose a checkpoint a live worker holds)"
    ]
    from farm import capacity

    with sessions() as s:
        held = sorted({c for _, c in capacity.live(s, utcnow(), clean, "explore")})
        assert held == ["tiny"]
        assert next_takes(s, "explore", 10, None, held) == ok["take_ids"]  # humo-1.7b takes wait, queued
    checkpoints = {c["name"]: c["live_workers"] for c in ana.get("/checkpoints").json()}
    assert checkpoints["tiny"] == 1 and checkpoints["humo-1.7b"] == 0


def test_cancel_after_the_take_finished_says_too_late(client_as, sessions, clean):
    ana = client_as("ana")
    [take] = make_batch(sessions, clean, [{"prompt": "x", "seed": 1, "checkpoint": "tiny", "mode": "T"}])
    with transaction(sessions) as s:
        attempt = states.claim(s, take, "w", "h", "cpu")
    assert ana.post(f"/takes/{take}/cancel").json()["cancel_requested"] is True  # during its last step
    with transaction(sessions) as s:
        attempt = s.get(Attempt, attempt.id)
        out = {"clip_key": "c", "thumbnail_key": "t", "manifest_key": "m", "clip_sha256": "0" * 64, "clip_size": 1}
        assert states.finish(s, take, attempt, out, 1.0)  # the worker finished anyway
    done = ana.get(f"/takes/{take}").json()
    assert done["state"] == "done" and done["cancel_requested"] is True  # the record says the cancel came late
    r = ana.post(f"/takes/{take}/cancel")
    assert r.status_code == 409 and r.json()["detail"].startswith("too late, it finished")


def test_the_cli_confirms_a_big_sweep_and_acts_on_a_batch(tmp_path, api, tokens, client_as):
    from .test_cli import farm

    big = tmp_path / "big.yaml"
    big.write_text(
        "defaults: {checkpoint: tiny, mode: T, steps: 2}\nsweep: {prompts: [a, b, c, d, e], seed_count: 4}\n"
    )
    login = ("--api", api, "--token", tokens["ana"])
    r = farm("submit", str(big), *login, "--no-wait")  # no terminal to ask on: refused, saying how
    assert r.returncode == 1 and "error: this batch is 20 takes, GPU time not known yet" in r.stderr
    assert "pass --yes to submit it" in r.stderr
    assert client_as("ana").get("/takes").json()["count"] == 0
    r = farm("submit", str(big), *login, "--no-wait", "--yes")
    assert r.returncode == 0, r.stderr
    batch_id = r.stdout.split()[1].rstrip(":")
    r = farm("batch", "pause", batch_id, *login)
    assert r.returncode == 0 and r.stdout.strip().endswith("20 takes paused; rendering ones finish")
    r = farm("batch", "priority", batch_id, "9", *login)
    assert r.returncode == 0 and "priority 9 on 20 takes" in r.stdout
    r = farm("batch", "priority", batch_id, *login)
    assert r.returncode == 1 and "give the new priority" in r.stderr
    r = farm("batch", "cancel", batch_id, *login)
    assert r.returncode == 0 and "20 takes canceled" in r.stdout
    r = farm("batch", "resume", "nope", *login)
    assert (
        r.returncode == 1 and r.stderr.strip() == "error: batch: batch nope not found" and "Traceback" not in r.stderr
    )
