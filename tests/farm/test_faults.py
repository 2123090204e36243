"""Faults with real processes: a killed worker, a deploy's SIGTERM, a poison take, a render
past its limit, a GPU out of memory, a hung worker. Nothing is lost, nothing duplicated."""

from __future__ import annotations

import signal
import subprocess
import sys

import torch
from sqlalchemy import select

from farm.storage import LocalStorage
from farm.tables import Attempt, Output, Take, Worker
from workers.explore import ExploreRuntime

from ..helpers import make_batch, missing_asset, take_state, wait_done
from ..services import ROOT, settings_env, wait_for


def holder(sessions, take_id: str) -> str | None:
    with sessions() as s:
        return s.execute(
            select(Attempt.worker_id).where(Attempt.take_id == take_id, Attempt.state == "running")
        ).scalar_one_or_none()


def test_sigkill_mid_render_the_take_completes_once_elsewhere(client, sessions, start_worker, release_loop):
    workers = [start_worker(), start_worker()]
    take_id = client.post("/batches", json={"takes": [{"prompt": "long", "mode": "T", "steps": 400}]}).json()[
        "take_ids"
    ][0]
    wait_for(lambda: take_state(client, take_id)["progress"]["step"] >= 3, 60, "the render to make progress")
    victim = next(w for w in workers if w.id == holder(sessions, take_id))
    victim.kill(signal.SIGKILL)
    take = wait_done(client, [take_id], timeout=180)[0]
    assert take["state"] == "done"
    assert [a["state"] for a in take["attempts"]] == ["lost", "done"]
    assert take["attempts"][0]["worker_id"] == victim.id and take["attempts"][1]["worker_id"] != victim.id
    assert take["attempts"][0]["error_class"] == "WorkerLost"
    with sessions() as s:
        assert len(s.execute(select(Output).where(Output.take_id == take_id)).scalars().all()) == 1


def test_sigterm_finishes_the_in_flight_take(client, sessions, start_worker, release_loop):
    worker = start_worker()
    take_id = client.post("/batches", json={"takes": [{"prompt": "deploy", "mode": "T", "steps": 300}]}).json()[
        "take_ids"
    ][0]
    wait_for(lambda: take_state(client, take_id)["progress"]["step"] >= 2, 60, "the render to make progress")
    worker.proc.send_signal(signal.SIGTERM)  # a deploy: warm shutdown
    assert worker.proc.wait(120) == 0
    take = take_state(client, take_id)
    assert take["state"] == "done" and [a["state"] for a in take["attempts"]] == ["done"]
    with sessions() as s:
        assert s.get(Worker, worker.id).stopped is True


def test_a_poison_take_fails_after_its_attempts_without_blocking_others(client, sessions, start_worker, release_loop):
    start_worker()
    missing_asset(sessions, "e" * 64)  # an input whose object vanished from the store: no attempt can succeed
    body = {
        "takes": [
            {"prompt": "poison", "mode": "TI", "image": "e" * 64},
            {"prompt": "good 1", "mode": "T"},
            {"prompt": "good 2", "mode": "T"},
        ]
    }
    ids = client.post("/batches", json=body).json()["take_ids"]
    takes = wait_done(client, ids, timeout=180)
    assert [t["state"] for t in takes] == ["failed", "done", "done"]
    # no retry brings the object back: it fails on its first attempt, naming the input
    assert len(takes[0]["attempts"]) == 1 and takes[0]["error_class"] == "InputError"
    assert "image" in takes[0]["error_message"] and "missing from the store" in takes[0]["error_message"]


def runtime(settings, tmp_path, **changes) -> ExploreRuntime:
    return ExploreRuntime(settings.model_copy(update=changes), storage=LocalStorage(tmp_path / "o")).start()


def test_a_render_past_its_time_limit_is_stopped_and_classified(sessions, clean, tmp_path):
    rt = runtime(clean, tmp_path, render_time_limit=0.3, finish_in_background=False)
    try:
        (take_id,) = make_batch(sessions, clean, [{"prompt": "slow", "mode": "T", "steps": 1000}])
        assert rt.run(take_id) == "failed (queued)"  # retried while attempts remain
    finally:
        rt.stop()
    with sessions() as s:
        attempt = s.execute(select(Attempt).where(Attempt.take_id == take_id)).scalar_one()
        assert attempt.error_class == "RenderTimeout" and "limit" in attempt.error_message
        assert s.get(Take, take_id).progress_step < 1000


def test_gpu_out_of_memory_is_classified_and_retried(sessions, clean, tmp_path, monkeypatch):
    rt = runtime(clean, tmp_path, finish_in_background=False)
    try:

        def oom(*args, **kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

        monkeypatch.setattr(rt.pipeline, "render", oom)  # a GPU cannot run out here: the model raises it
        (take_id,) = make_batch(sessions, clean, [{"prompt": "big", "mode": "T"}])
        assert rt.run(take_id) == "failed (queued)"
    finally:
        rt.stop()
    with sessions() as s:
        take = s.get(Take, take_id)
        assert take.error_class == "GPUOutOfMemory" and "Tried to allocate 20.00 GiB" in take.error_message


def test_a_hung_worker_exits_so_its_take_can_be_reclaimed(clean):
    code = (
        "import threading\n"
        "from farm.db import session_factory\n"
        "from farm.settings import get_settings\n"
        "from workers.heartbeat import Heartbeat\n"
        "hb = Heartbeat(session_factory(get_settings().database), 'explore', 'cpu', 0.05).start()\n"
        "hb.watch(0.3)\n"
        "threading.Event().wait()\n"  # a GPU call that never returns: only the watchdog ends this process
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=settings_env(clean), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 70 and "the worker is hung" in proc.stderr


def test_a_worker_that_keeps_failing_is_kept_off_the_batch(client, sessions, clean, release_loop, tmp_path):
    from ..services import WorkerProcess

    bad = WorkerProcess(
        clean.model_copy(update={"render_time_limit": 0.01}), tmp_path / "bad.log"
    )  # every render times out
    good = WorkerProcess(clean, tmp_path / "good.log")
    try:
        bad.wait_ready(sessions)
        good.wait_ready(sessions)
        ids = client.post(
            "/batches", json={"takes": [{"prompt": f"t{i}", "mode": "T", "steps": 40} for i in range(4)]}
        ).json()["take_ids"]
        takes = wait_done(client, ids, timeout=240)
        assert [t["state"] for t in takes] == ["done"] * 4
        attempts = [a for t in takes for a in t["attempts"]]
        failed_on_bad = [a for a in attempts if a["worker_id"] == bad.id and a["state"] == "failed"]
        assert len(failed_on_bad) == clean.blocklist_failures  # it failed the batch that often, then no more
        assert "handing it to another worker" in bad.log.read_text()  # it was offered the batch again, and declined
        assert all(a["worker_id"] == good.id for a in attempts if a["state"] == "done")
        assert {a["error_class"] for a in failed_on_bad} <= {"RenderTimeout"}
    finally:
        bad.kill(signal.SIGTERM)
        good.kill(signal.SIGTERM)
