"""A worker paused (SIGSTOP) after its last denoising step, past the worker timeout: it is
declared lost, another worker finishes the take, and when the paused one resumes and uploads,
no reader ever sees its clip or manifest."""

from __future__ import annotations

import os
import signal

from sqlalchemy import select

from farm.storage import output_keys
from farm.tables import Attempt, Output
from models.probe import file_sha256

from ..helpers import wait_done
from ..services import HoldingProxy, WorkerProcess, wait_for


def unsigned(outputs: dict) -> dict:
    """The outputs with presigned URLs cut to their objects (a signature carries its second)."""
    return {k: v.split("?")[0] if isinstance(v, str) and "?" in v else v for k, v in outputs.items()}


def test_a_paused_worker_that_resumes_never_replaces_the_winners_outputs(
    client, sessions, clean, s3_endpoint, storage, release_loop, tmp_path
):
    proxy = HoldingProxy(s3_endpoint, forward_held=True)  # holds the first clip upload only
    settings = clean.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{proxy.port}"})
    workers = [WorkerProcess(settings, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        for w in workers:
            w.wait_ready(sessions)
        take_id = client.post("/batches", json={"takes": [{"prompt": "pause", "mode": "T", "seed": 3}]}).json()[
            "take_ids"
        ][0]
        wait_for(proxy.holding.is_set, 120, "the first clip upload to start")  # every step is done
        with sessions() as s:
            holder = s.execute(select(Attempt.worker_id).where(Attempt.take_id == take_id)).scalar_one()
        paused = next(w for w in workers if w.id == holder)
        os.killpg(paused.proc.pid, signal.SIGSTOP)  # the whole worker: heartbeat, finisher, child
        take = wait_done(client, [take_id], timeout=180)[0]  # declared lost; the other renders it
        assert [a["state"] for a in take["attempts"]] == ["lost", "done"]
        assert take["attempts"][1]["worker_id"] != paused.id

        os.killpg(paused.proc.pid, signal.SIGCONT)
        proxy.release.set()  # its held upload goes through: the store has the lost attempt's clip
        wait_for(lambda: "another attempt holds the take" in paused.log.read_text(), 120, "the resumed finisher")
        wait_for(
            lambda: not any(storage.exists(k) for k in output_keys(take_id, 1).values()),
            60,
            "the resumed attempt to remove what it wrote",
        )
        after = client.get(f"/takes/{take_id}").json()
        assert unsigned(after["outputs"]) == unsigned(take["outputs"]) and after["attempts"] == take["attempts"]
        with sessions() as s:
            output = s.get(Output, take_id)
        clip = tmp_path / "clip.mp4"
        storage.get_file(output.clip_key, clip)
        assert file_sha256(clip) == output.clip_sha256 == take["outputs"]["clip_sha256"]  # stored = recorded
        manifest = client.get(f"/takes/{take_id}/manifest").json()
        assert manifest["attempt"] == 2 and manifest["outputs"]["clip"]["sha256"] == take["outputs"]["clip_sha256"]
        assert paused.proc.poll() is None  # it carries on serving; only its late outputs are refused
    finally:
        proxy.close()
        for w in workers:
            if w.proc.poll() is None:
                os.killpg(w.proc.pid, signal.SIGCONT)
            w.kill(signal.SIGTERM)
