"""Batches as a producer handles them, in a real headless Chromium with a real worker (tiny):
the submit form offers the checkpoints live workers hold and says when takes would wait; a
big sweep shows its size and GPU time and is confirmed first; the batch is paused, resumed,
selected for hero and canceled from its page, each in one action; a canceled take says it has
no clip; and a session that ends while a form is filled is signed in again in place, with
nothing typed or chosen lost. Screenshots at 1280 and 390 wide in out/test-artifacts/dashboard/."""

from __future__ import annotations

import re

import httpx
import pytest

from farm.db import transaction
from farm.tables import Take

from ..services import password, wait_for
from .test_dashboard import SHOTS, open_page, sign_in

WIDE, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}


@pytest.fixture
def opened(browser, api):
    """opened(): a page of its own at 1280 wide; closed after the test, so no page left open
    keeps calling the API while the next test empties the tables."""
    contexts = []

    def make():
        page, problems = open_page(browser, api)
        contexts.append(page.context)
        page.set_viewport_size(WIDE)
        return page, problems

    yield make
    for context in contexts:
        context.close()


def shots(page, name: str) -> None:
    """The page at 1280 and at 390 wide (full page), then back to 1280."""
    for label, size in (("1280", WIDE), ("390", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=SHOTS / f"{name}-{label}.png", full_page=True)
    page.set_viewport_size(WIDE)


def counts(client, batch_id: str) -> dict:
    return client.get(f"/batches/{batch_id}", params={"with_take_ids": "false"}).json()["counts"]


def fill_sweep(page, prompts: list[str], seeds: str) -> None:
    page.get_by_role("link", name="Submit").click()
    page.get_by_label("Prompt", exact=True).fill("\n".join(prompts))
    page.get_by_label("Seeds", exact=True).fill(seeds)
    page.get_by_label("Mode", exact=True).select_option("T")
    page.get_by_label("Steps", exact=True).fill("2")


def test_checkpoints_a_confirmed_sweep_and_actions_on_the_whole_batch(
    opened, api, tokens, start_worker, release_loop, client_as, sessions
):
    start_worker()  # holds tiny
    ana = client_as("ana")
    page, problems = opened()
    sign_in(page, "ana")

    # the form offers what live workers hold first, chosen; one nobody holds is marked and explained
    fill_sweep(page, ["a presenter nobody can render yet"], "5")
    checkpoint = page.get_by_label("Checkpoint", exact=True)
    assert checkpoint.input_value() == "tiny"
    assert "no live worker" in page.locator("#checkpoint option[value='humo-1.7b']").inner_text()
    assert page.locator("#checkpoint-warn").is_hidden()
    checkpoint.select_option("humo-1.7b")
    warn = page.locator("#checkpoint-warn")
    warn.wait_for()
    assert "No live worker holds humo-1.7b: its takes would wait, queued" in warn.inner_text()
    assert "Live workers hold tiny" in warn.inner_text()
    shots(page, "10-submit-checkpoint-waits")
    page.get_by_role("button", name="Submit batch").click()
    page.wait_for_url("**/#/takes?batch=*")  # one take: sent, and the farm's answer says it waits
    page.get_by_text(
        re.compile(r"^Batch submitted: 1 take\. 1 take of humo-1\.7b: no live worker of the explore pool")
    ).wait_for()
    waiting = ana.get("/takes", params={"checkpoint": "humo-1.7b"}).json()["data"][0]
    page.goto(f"/#/take/{waiting['id']}")
    page.locator("[data-waiting]").wait_for()
    assert (
        "Waiting, not failed: no live worker of the explore pool holds humo-1.7b"
        in page.locator("[data-waiting]").inner_text()
    )
    shots(page, "11-take-waiting-for-a-worker")

    # a 20-take sweep: its size and GPU time, and a way back without submitting
    fill_sweep(page, [f"a singer on stage, take {i}" for i in range(5)], "1, 2, 3, 4")
    assert page.get_by_label("Checkpoint", exact=True).input_value() == "tiny"
    page.get_by_role("button", name="Submit batch").click()
    cost = page.get_by_role("alertdialog")
    cost.wait_for()
    assert page.get_by_role("heading", name="Submit 20 takes?").is_visible()
    assert "20 takes, GPU time not known yet" in cost.inner_text()  # nothing of tiny has finished yet
    assert page.evaluate("document.activeElement.textContent") == "Submit 20 takes"
    shots(page, "12-submit-confirm-sweep")
    page.get_by_role("button", name="Back to the form").click()
    assert cost.is_hidden()
    assert ana.get("/takes", params={"checkpoint": "tiny"}).json()["count"] == 0  # nothing was sent
    page.get_by_role("button", name="Submit batch").click()
    page.get_by_role("button", name="Submit 20 takes").click()
    page.wait_for_url("**/#/takes?batch=*")
    batch_id = page.url.split("batch=")[1]
    page.locator("article.card").nth(19).wait_for()
    wait_for(lambda: counts(ana, batch_id)["done"] >= 1, 180, "a first take to render")

    # pause: the waiting takes are held back in one action; resume queues them again
    page.reload()
    page.get_by_role("button", name=re.compile(r"^Pause \(\d+\)$")).click()
    page.get_by_text(re.compile(r"^\d+ takes? paused; rendering ones finish$")).wait_for()
    paused = counts(ana, batch_id)
    assert paused["paused"] >= 10 and paused["queued"] == paused["released"] == 0
    page.get_by_role("button", name=re.compile(r"^Resume \(\d+\)$")).wait_for()
    shots(page, "13-batch-paused")
    page.get_by_role("button", name=re.compile(r"^Resume \(\d+\)$")).click()
    page.get_by_text(re.compile(r"takes? queued again, in their old order$")).wait_for()
    assert counts(ana, batch_id)["paused"] == 0

    # select the finished ones for hero, in one action
    page.get_by_role("button", name=re.compile(r"^Select finished for hero")).click()
    said = page.get_by_text(re.compile(r"^\d+ finished takes? selected for hero$"))
    said.wait_for()
    selected = int(said.inner_text().split()[0])
    assert selected >= 1
    assert ana.get("/takes", params={"batch_id": batch_id, "selected": "true"}).json()["count"] == selected

    # cancel the rest: asked once more in place, then one action for all of them
    page.get_by_role("button", name=re.compile(r"^Cancel batch \(\d+\)$")).click()
    page.get_by_text("Cancel every take not yet finished?").wait_for()
    shots(page, "14-batch-cancel-confirm")
    page.get_by_role("button", name=re.compile(r"^Cancel \d+ takes?$")).click()
    page.get_by_text(re.compile(r"^\d+ takes? canceled")).wait_for()
    after = wait_for(
        lambda: (c := counts(ana, batch_id))["running"] + c["released"] + c["queued"] == 0 and c,
        120,
        "the batch to end",
    )
    assert after["canceled"] >= 1 and after["done"] + after["canceled"] == 20

    # a canceled take has no half-filled bar and no promise of a clip
    canceled = ana.get("/takes", params={"batch_id": batch_id, "state": "canceled"}).json()["data"][0]
    page.goto(f"/#/take/{canceled['id']}")
    page.get_by_text(re.compile(r"^Canceled (before it started|at step \d+ of \d+): there is no clip\.")).wait_for()
    assert page.locator(".no-clip [role=progressbar]").count() == 0
    assert page.get_by_text("The clip appears here").count() == 0
    shots(page, "15-take-canceled")

    # a take whose cancel came during its last step finished anyway: its page says so
    done = ana.get("/takes", params={"batch_id": batch_id, "state": "done"}).json()["data"][0]
    with transaction(sessions) as s:
        s.get(Take, done["id"]).cancel_requested = True  # as the API leaves it when the cancel came too late
    page.goto(f"/#/take/{done['id']}")
    page.locator("[data-late]").wait_for()
    assert page.locator("[data-late]").inner_text() == (
        "Too late to cancel: it had finished its last step. The clip is kept."
    )
    assert problems == []


def test_a_session_that_ends_mid_form_is_signed_in_again_in_place(opened, api, tokens, client_as, media):
    page, problems = opened()
    sign_in(page, "ana")
    fill_sweep(page, ["a presenter, typed before the session ended"], "7")
    page.get_by_label("Checkpoint", exact=True).select_option("tiny")
    page.get_by_label("Mode", exact=True).select_option("TI")
    page.get_by_label("Reference image").set_input_files(media["image"])
    page.get_by_role("img", name="reference image preview").wait_for()

    # ana signs out in another window: every dashboard session of hers ends
    with httpx.Client(base_url=api) as other:
        me = other.post("/auth/login", json={"name": "ana", "password": password("ana")}).json()
        assert other.post("/auth/logout", headers={"X-CSRF-Token": me["csrf_token"]}).status_code in (200, 204)

    page.get_by_role("button", name="Submit batch").click()
    dialog = page.get_by_role("dialog", name="Sign in again to carry on")
    dialog.wait_for()
    assert "what you typed and chose here is kept" in dialog.inner_text()
    assert page.evaluate("document.activeElement.id") == "again-password"  # the name is already there
    shots(page, "16-sign-in-again")
    page.locator("#again-password").fill("wrong password")
    page.get_by_role("button", name="Sign in and carry on").click()
    page.get_by_text("That name and password do not match; try again.").wait_for()
    page.locator("#again-password").fill(password("ana"))
    page.get_by_role("button", name="Sign in and carry on").click()

    # the submit that found the session gone goes on: the batch holds what was typed and uploaded
    page.wait_for_url("**/#/takes?batch=*")
    assert dialog.is_hidden()
    [take] = client_as("ana").get("/takes").json()["data"]
    assert take["params"]["prompt"] == "a presenter, typed before the session ended" and take["params"]["seed"] == 7
    assert take["image"] is not None and take["params"]["mode"] == "TI"
    page.get_by_text("Signed in again: carry on").wait_for()
    # the two refused calls (the 401 before signing in again, the wrong password) are the browser's own log lines
    assert [p for p in problems if "401" not in p] == []


def test_a_batch_file_goes_up_with_the_media_it_names(opened, api, tokens, client_as, tmp_path):
    from ..services import ROOT

    examples = ROOT / "examples"
    page, problems = opened()
    sign_in(page, "ana")
    page.get_by_role("link", name="Submit").click()
    page.get_by_label("Batch file", exact=True).set_input_files(examples / "batch.yaml")  # the README's own
    page.get_by_label("The images and audio it names").set_input_files(
        [examples / "media" / "portrait.png", examples / "media" / "speech.wav"]
    )
    page.get_by_text("With it: portrait.png, speech.wav").wait_for()
    page.locator("form[aria-label='Submit a batch file']").scroll_into_view_if_needed()
    shots(page, "17-batch-file-with-media")
    page.get_by_role("button", name="Submit file").click()
    page.wait_for_url("**/#/takes?batch=*")
    page.get_by_role("heading", name="studio presenter, first pass").wait_for()
    page.locator("article.card").nth(3).wait_for()
    ana = client_as("ana")
    images = {t["image"] for t in ana.get("/takes").json()["data"]}
    portrait = next(a for a in ana.get("/assets").json() if a["filename"] == "portrait.png")
    assert images == {portrait["sha256"], None}  # the TA take has none

    # a big one is shown with its size first, as the form's are; its media named by sha256 prefix now
    big = tmp_path / "sweep.yaml"
    big.write_text(f"defaults: {{checkpoint: tiny, mode: TI, image: {portrait['sha256'][:8]}, steps: 2}}\n"
                   "sweep: {prompts: [a, b, c, d, e], seeds: [1, 2, 3, 4]}\n")  # fmt: skip
    page.get_by_role("link", name="Submit").click()
    page.get_by_label("Batch file", exact=True).set_input_files(big)
    page.get_by_role("button", name="Submit file").click()
    page.get_by_role("heading", name="Submit 20 takes?").wait_for()
    assert ana.get("/takes").json()["count"] == 4  # nothing more until it is confirmed
    page.get_by_role("button", name="Submit 20 takes").click()
    page.wait_for_url("**/#/takes?batch=*")
    page.get_by_role("heading", name="sweep").wait_for()
    assert ana.get("/takes").json()["count"] == 24
    assert problems == []


def test_audio_longer_than_the_clip_is_said_at_submit_with_frames_that_cover_it(opened, api, tokens, tmp_path):
    from ..conftest import write_wav

    page, problems = opened()
    sign_in(page, "ana")
    fill_sweep(page, ["a presenter reads a 5.3 s line"], "1")
    page.get_by_label("Checkpoint", exact=True).select_option("tiny")
    page.get_by_label("Mode", exact=True).select_option("TA")
    page.get_by_label("Audio", exact=True).set_input_files(write_wav(tmp_path / "line.wav", 5.3))
    fit = page.locator("[data-fit]")
    fit.wait_for()
    assert fit.inner_text().startswith("The audio line.wav is 5.3 s but the clip is 0.68 s (17 frames)")
    shots(page, "18-submit-audio-past-the-clip")
    page.get_by_role("button", name="Use 133 frames").click()
    assert page.get_by_label("Frames", exact=True).input_value() == "133"
    fit.wait_for(state="detached")  # 133 frames hear all of it
    assert problems == []
