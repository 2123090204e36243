"""The dashboard end to end in a real headless Chromium: a producer signs in, uploads an
image and an audio file, submits a 4-take batch, watches live progress reach done (a real
worker on the tiny model), plays a clip, compares two takes in sync and selects one for
hero; a viewer cannot submit. Screenshots land in out/test-artifacts/dashboard/."""

from __future__ import annotations

from ..services import ROOT, password

SHOTS = ROOT / "out" / "test-artifacts" / "dashboard"
SHOTS.mkdir(parents=True, exist_ok=True)
#: records every value a progress bar shows, so the test can tell pushed progress from a reload
WATCH_PROGRESS = """
window.__progress = [];
new MutationObserver((records) => {
  for (const r of records) {
    const el = r.target;
    if (el.getAttribute && el.getAttribute('role') === 'progressbar')
      window.__progress.push(Number(el.getAttribute('aria-valuenow')));
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['aria-valuenow']});
"""


def open_page(browser, api):
    context = browser.new_context(base_url=api, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    return page, problems


def sign_in(page, name: str) -> None:
    page.goto("/")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(password(name))
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(name, exact=True).wait_for()


def test_a_producer_submits_watches_plays_compares_and_selects(
    browser, api, tokens, start_worker, release_loop, media, client_as
):
    start_worker()
    page, problems = open_page(browser, api)
    sign_in(page, "ana")
    page.screenshot(path=SHOTS / "01-takes-empty.png")

    # submit: uploads with preview and playback, 4 seeds of one prompt
    page.get_by_role("link", name="Submit").click()
    page.get_by_label("Prompt", exact=True).fill("a presenter speaks to the camera in a bright studio")
    page.get_by_label("Seeds", exact=True).fill("11, 12, 13, 14")
    page.get_by_label("Checkpoint", exact=True).select_option("tiny")
    page.get_by_label("Mode", exact=True).select_option("TIA")
    page.get_by_label("Steps", exact=True).fill("40")
    page.get_by_label("Reference image").set_input_files(media["image"])
    page.get_by_role("img", name="reference image preview").wait_for()
    page.get_by_label("Audio", exact=True).set_input_files(media["audio"])
    page.locator("audio[controls]").wait_for()
    page.screenshot(path=SHOTS / "02-submit-with-previews.png", full_page=True)
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('input, select, textarea')]"
        ".filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.outerHTML)"
    )
    assert unlabelled == []  # every control has a label a screen reader can read
    page.add_init_script(WATCH_PROGRESS)
    page.evaluate(WATCH_PROGRESS)
    page.get_by_role("button", name="Submit batch").click()

    # the batch's grid: 4 cards, live progress pushed over SSE until every take is done
    page.wait_for_url("**/#/takes?batch=*")
    cards = page.locator("article.card")
    cards.nth(3).wait_for()
    assert cards.count() == 4
    page.wait_for_function("document.querySelectorAll('article.card[data-state=running]').length > 0", timeout=120_000)
    page.screenshot(path=SHOTS / "03-live-progress.png", full_page=True)
    page.wait_for_function(
        "document.querySelectorAll('article.card[data-state=done] img').length === 4", timeout=300_000
    )
    seen = page.evaluate("window.__progress")
    assert any(0 < v < 100 for v in seen), seen  # progress arrived step by step, not only at the end
    page.screenshot(path=SHOTS / "04-batch-done.png", full_page=True)
    batch_id = page.url.split("batch=")[1]

    # play one clip with its sound
    cards.first.locator("a.thumb").click()
    video = page.locator("video[data-clip]")
    video.wait_for()
    take_id = video.get_attribute("data-clip")
    page.evaluate("document.querySelector('video').play()")
    page.wait_for_function(
        "(() => { const v = document.querySelector('video');"
        " return v.currentTime > 0.3 && v.videoWidth > 0 && v.webkitAudioDecodedByteCount > 0 })()",
        timeout=60_000,
    )
    page.get_by_text('"frames_sha256"').wait_for()  # the manifest is shown
    page.screenshot(path=SHOTS / "05-take-playing.png", full_page=True)

    # select it for hero
    page.get_by_role("button", name="Select for hero").click()
    page.get_by_role("button", name="Unselect for hero").wait_for()
    assert client_as("vic").get(f"/takes/{take_id}").json()["selected_for_hero"] is True

    # compare two takes, played in sync
    page.goto(f"/#/takes?batch={batch_id}")
    page.locator("article.card[data-state=done]").nth(1).wait_for()
    page.get_by_role("checkbox", name="compare take").nth(0).check()
    page.get_by_role("checkbox", name="compare take").nth(1).check()
    page.get_by_role("button", name="Compare selected (2)").click()
    page.locator(".compare video").nth(1).wait_for()
    page.wait_for_function(
        "[...document.querySelectorAll('.compare video')].every(v => v.readyState >= 2)", timeout=60_000
    )
    page.get_by_role("button", name="Play all").click()
    page.wait_for_function(
        "(() => { const [a, b] = document.querySelectorAll('.compare video');"
        " return a.currentTime > 0.4 && b.currentTime > 0.4 && !a.paused && !b.paused })()",
        timeout=60_000,
    )
    drift = page.evaluate(
        "(() => { const [a, b] = document.querySelectorAll('.compare video');"
        " return Math.abs(a.currentTime - b.currentTime) })()"
    )
    assert drift < 0.25
    page.screenshot(path=SHOTS / "06-compare.png", full_page=True)

    # pools and workers
    page.get_by_role("link", name="Pools & workers").click()
    page.locator("tr[data-pool=explore]").wait_for()
    page.screenshot(path=SHOTS / "07-pools.png", full_page=True)
    assert problems == []


def test_a_viewer_reads_but_cannot_submit(browser, api, tokens, client_as, sessions, clean):
    from ..helpers import make_batch

    make_batch(sessions, clean, [{"prompt": "someone else's take", "mode": "T"}])
    page, problems = open_page(browser, api)
    page.goto("/")  # keyboard only: the name field has focus, Tab to the password, Enter signs in
    page.wait_for_function("document.activeElement && document.activeElement.id === 'login-name'")
    page.keyboard.type("vic")
    page.keyboard.press("Tab")
    page.keyboard.type(password("vic"))
    page.keyboard.press("Enter")
    page.get_by_text("vic", exact=True).wait_for()
    page.locator("article.card").first.wait_for()
    assert page.get_by_role("link", name="Submit").is_hidden()
    assert page.get_by_role("link", name="Flower").is_hidden()
    # typing the address does not help: the API refuses and the page says why
    page.goto("/#/submit")
    page.get_by_label("Prompt", exact=True).fill("not allowed")
    page.get_by_label("Checkpoint", exact=True).select_option("tiny")
    page.get_by_role("button", name="Submit batch").click()
    page.get_by_text("vic is a viewer").wait_for()
    page.screenshot(path=SHOTS / "08-viewer-refused.png", full_page=True)
    assert client_as("vic").get("/batches").json()[0]["producer"] == "ana"
    assert len(client_as("vic").get("/batches").json()) == 1
    # the refusal is a 403 the page handles; the browser logs the failed request itself
    assert [p for p in problems if "403" not in p] == []
