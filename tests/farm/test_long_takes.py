"""A long take through the farm: one take of 5 windows, its progress as window i of n on the
API and the dashboard, each finished window's latents in storage, and a worker SIGKILLed in
window 3 of 5 whose take the next attempt resumes at window 3, ending on the same frames as
an uninterrupted render."""

from __future__ import annotations

import json
import signal

from sqlalchemy import select

from farm.storage import window_key
from farm.tables import Output

from ..helpers import take_state, wait_done
from ..services import HoldingProxy, WorkerProcess, wait_for
from .test_dashboard import SHOTS, open_page, sign_in

#: 5 windows of 25 latent frames, 5 shared: 25 + 4 x 20 = 105 latent frames = 417 frames
LONG = {"prompt": "a long take", "mode": "T", "seed": 11, "steps": 3, "width": 64, "height": 48, "frames": 417}


def manifest(sessions, storage, take_id: str) -> dict:
    with sessions() as s:
        out = s.execute(select(Output).where(Output.take_id == take_id)).scalar_one()
    return json.loads(storage.get_bytes(out.manifest_key))


def test_a_worker_killed_in_window_3_of_5_costs_one_window(
    browser, api, tokens, client, sessions, clean, s3_endpoint, storage, release_loop, tmp_path
):
    # the store holds window 3's upload: the worker has rendered windows 1-3 and saved 1-2
    proxy = HoldingProxy(s3_endpoint, key=b"/windows/0002.safetensors", every=True)  # boto's retries too
    through_proxy = clean.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{proxy.port}"})
    victim = WorkerProcess(through_proxy, tmp_path / "v.log")
    rescuer = None
    try:
        victim.wait_ready(sessions)
        take_id = client.post("/batches", json={"takes": [LONG]}).json()["take_ids"][0]
        wait_for(proxy.holding.is_set, 180, "window 3's latents to be uploaded")
        progress = take_state(client, take_id)["progress"]
        where = (progress["window"], progress["windows"], progress["window_step"], progress["window_steps"])
        assert where == (3, 5, 3, 3)  # window 3 of 5, its 3 steps done
        assert progress["windows_saved"] == 2 and progress["step"] == 9 and progress["total"] == 15
        assert storage.exists(window_key(take_id, 0)) and storage.exists(window_key(take_id, 1))
        assert not storage.exists(window_key(take_id, 2))

        page, problems = open_page(browser, api)
        sign_in(page, "olga")
        page.goto(f"/#/take/{take_id}")
        step = page.locator("[data-step]")
        step.wait_for()
        assert step.inner_text() == "window 3 of 5 · step 3 of 3"
        assert page.locator("[data-saved]").inner_text().strip() == "· 2 of 5 windows stored"
        page.wait_for_function("() => /window 3 of 5/.test(document.querySelector('.live-text').textContent)")
        page.screenshot(path=SHOTS / "50-long-take-window-3-of-5.png", full_page=True)

        victim.kill(signal.SIGKILL)  # mid-take: window 3 rendered, not yet stored
        rescuer = WorkerProcess(clean, tmp_path / "r.log")
        rescuer.wait_ready(sessions)
        take = wait_done(client, [take_id], timeout=240)[0]
        assert take["state"] == "done"
        assert [a["state"] for a in take["attempts"]] == ["lost", "done"]
        assert [a["start_window"] for a in take["attempts"]] == [0, 2]  # the second began at window 3
        resumed = manifest(sessions, storage, take_id)
        windows = resumed["engine"]["windows"]
        assert windows["count"] == 5 and windows["resumed_at"] == 2
        assert [(w["window"], w["attempt"]) for w in windows["resumed_from"]] == [(0, 1), (1, 1)]
        assert resumed["request"]["frames"] == 417
        # done: its windows served their purpose and are gone
        assert not any(storage.exists(window_key(take_id, i)) for i in range(5))

        page.goto(f"/#/take/{take_id}")
        page.locator('[data-resumed="3"]').wait_for()
        assert "resumed at window 3" in page.locator('tr[data-attempt="2"]').inner_text()

        # the same take, never interrupted, on the same kind of device: the same frames
        again = client.post("/batches", json={"takes": [LONG]}).json()["take_ids"][0]
        plain = wait_done(client, [again], timeout=240)[0]
        assert [a["start_window"] for a in plain["attempts"]] == [0]
        uninterrupted = manifest(sessions, storage, again)
        assert uninterrupted["engine"]["windows"]["resumed_at"] == 0
        assert resumed["frames_sha256"] == uninterrupted["frames_sha256"]
        assert not problems, problems
    finally:
        proxy.close()
        victim.kill(signal.SIGKILL)
        if rescuer is not None:
            rescuer.kill(signal.SIGTERM)
