"""SIGKILL a worker while its clip is uploading: the take is rendered again elsewhere, once."""

from __future__ import annotations

import signal

from sqlalchemy import select

from farm.tables import Attempt, Output

from ..helpers import wait_done
from ..services import HoldingProxy, WorkerProcess, wait_for


def test_sigkill_mid_upload_rerenders_once(client, sessions, clean, s3_endpoint, release_loop, tmp_path):
    proxy = HoldingProxy(s3_endpoint)
    settings = clean.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{proxy.port}"})
    workers = [WorkerProcess(settings, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        for w in workers:
            w.wait_ready(sessions)
        take_id = client.post("/batches", json={"takes": [{"prompt": "upload", "mode": "T"}]}).json()["take_ids"][0]
        wait_for(proxy.holding.is_set, 120, "the clip upload to start")
        with sessions() as s:
            holder = s.execute(select(Attempt.worker_id).where(Attempt.take_id == take_id)).scalar_one()
        victim = next(w for w in workers if w.id == holder)
        victim.kill(signal.SIGKILL)
        proxy.release.set()
        take = wait_done(client, [take_id], timeout=180)[0]
        assert take["state"] == "done" and [a["state"] for a in take["attempts"]] == ["lost", "done"]
        assert take["attempts"][1]["worker_id"] != victim.id
        with sessions() as s:
            assert len(s.execute(select(Output).where(Output.take_id == take_id)).scalars().all()) == 1
        manifest = client.get(f"/takes/{take_id}/manifest").json()
        assert manifest["attempt"] == 2 and manifest["outputs"]["clip"]["sha256"] == take["outputs"]["clip_sha256"]
    finally:
        proxy.close()
        for w in workers:
            w.kill(signal.SIGTERM)
