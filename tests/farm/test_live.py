"""A take while it waits or renders: its place in the release order, its ETA, and the live
preview of its current prediction, through the API and on the take page in Chromium."""

from __future__ import annotations

import io
import signal
from datetime import timedelta

from PIL import Image

from farm import live
from farm.storage import preview_key
from farm.tables import Attempt, Take, utcnow
from models.preview import UPSCALE

from ..helpers import make_batch, wait_done
from ..services import HoldingProxy, WorkerProcess, wait_for
from .test_dashboard import SHOTS, open_page, sign_in


def test_a_queued_take_knows_its_place_in_the_release_order(client, sessions, clean):
    low = make_batch(sessions, clean, [{"prompt": "low", "seed": 1}, {"prompt": "low", "seed": 2}], "ana")
    places = [client.get(f"/takes/{t}/live").json()["queue_position"] for t in low]
    assert sorted(places) == [1, 2]  # one batch: created together, in id order
    urgent = make_batch(sessions, clean, [{"prompt": "urgent", "seed": 3, "priority": 9}], "bob")[0]
    assert client.get(f"/takes/{urgent}/live").json()["queue_position"] == 1  # priority first
    assert [client.get(f"/takes/{t}/live").json()["queue_position"] for t in low] == [p + 1 for p in places]
    body = client.get(f"/takes/{low[0]}/live").json()
    assert body["state"] == "queued" and body["eta_seconds"] is None and body["preview_step"] is None
    assert client.get(f"/takes/{low[0]}/preview.jpg").status_code == 404


def test_the_eta_is_the_pace_so_far_over_the_steps_left():
    now = utcnow()
    take = Take(progress_step=5, progress_total=20)
    assert live.eta_seconds(take, Attempt(started_at=now - timedelta(seconds=10)), now) == 30.0  # 2 s a step, 15 left
    assert live.eta_seconds(Take(progress_step=0, progress_total=20), Attempt(started_at=now), now) is None  # no pace
    # a long take resumed at window 3 of 4 (10 steps each): its pace counts from step 20
    resumed = Take(progress_step=25, progress_total=40, progress_windows=4)
    attempt = Attempt(started_at=now - timedelta(seconds=10), start_window=2)
    assert live.eta_seconds(resumed, attempt, now) == 30.0
    assert live.eta_seconds(Take(progress_step=20, progress_total=40, progress_windows=4), attempt, now) is None


def test_a_long_take_s_progress_is_window_i_of_n_and_step_j_of_m():
    def at(step: int, saved: int) -> tuple:
        p = live.progress(Take(progress_step=step, progress_total=30, progress_windows=3, windows_saved=saved))
        assert (p["windows"], p["window_steps"], p["windows_saved"]) == (3, 10, saved)
        return p["window"], p["window_step"]

    # (step, windows saved) -> (window, its step): a window stepped through but not yet stored
    # is still the current one; once stored, the next one is, at step 0
    cases = {(0, 0): (1, 0), (1, 0): (1, 1), (9, 0): (1, 9), (10, 0): (1, 10), (10, 1): (2, 0), (11, 1): (2, 1),
             (20, 2): (3, 0), (29, 2): (3, 9), (30, 2): (3, 10), (30, 3): (3, 10)}  # fmt: skip
    assert {case: at(*case) for case in cases} == cases
    clip = live.progress(Take(progress_step=3, progress_total=4, progress_windows=1))
    assert clip == {"step": 3, "total": 4, "fraction": 0.75}  # a clip: no windows named


def jpeg_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image.size


def test_a_rendering_take_shows_its_preview_and_then_its_clip(
    browser, api, tokens, client, sessions, clean, s3_endpoint, storage, release_loop, tmp_path
):
    """The worker's clip upload is held at an S3 proxy: every step is done and the take is still
    running, so its preview (made after step 1, uploaded on the worker's preview thread) is
    there to see, deterministically. Released, the take page swaps it for the clip."""
    proxy = HoldingProxy(s3_endpoint, forward_held=True)
    settings = clean.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{proxy.port}"})
    worker = WorkerProcess(settings, tmp_path / "w.log")
    try:
        worker.wait_ready(sessions)
        take_id = client.post(
            "/batches",
            json={"takes": [{"prompt": "live", "mode": "T", "seed": 5, "steps": 4, "width": 64, "height": 48}]},
        ).json()["take_ids"][0]
        wait_for(proxy.holding.is_set, 120, "the clip upload to start")  # every step is done
        state = wait_for(
            lambda: (b := client.get(f"/takes/{take_id}/live").json())["preview_step"] and b, 60, "a preview"
        )
        assert state["state"] == "running" and state["step"] == state["total"] == 4 and state["eta_seconds"] == 0
        assert storage.exists(preview_key(take_id, 1))
        r = client.get(f"/takes/{take_id}/preview.jpg")
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        assert jpeg_size(r.content) == (64 // 8 * UPSCALE, 48 // 8 * UPSCALE)

        page, problems = open_page(browser, api)
        sign_in(page, "olga")
        page.goto(f"/#/take/{take_id}")
        preview = page.locator(f'[data-live="{take_id}"] img.preview')
        preview.wait_for(state="visible")
        page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=preview.element_handle())
        assert page.locator(".live-text").inner_text() == "step 4 of 4 · about 0 s left"
        page.screenshot(path=SHOTS / "20-take-live-preview.png", full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=SHOTS / "20-take-live-preview-390.png", full_page=True)

        proxy.release.set()
        wait_done(client, [take_id], timeout=120)
        page.locator(f'video[data-clip="{take_id}"]').wait_for()  # the page redraws on the state change
        assert page.locator(f'[data-live="{take_id}"]').count() == 0
        assert client.get(f"/takes/{take_id}/preview.jpg").status_code == 404  # a done take shows its clip
        assert not problems, problems
    finally:
        proxy.close()
        worker.kill(signal.SIGTERM)
