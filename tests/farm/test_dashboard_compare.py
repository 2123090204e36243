"""Compare as a decision tool, in Chromium with a real worker: takes named by prompt and
seed, frame steps (buttons and keys) with the timecode, loop, the winner picked (kept in the
address) and selected for hero. The same clips then show the take page's per-attempt log and
duration, a duplicate that keeps its project, and the takes page's search, count, order and
clear-filters."""

from __future__ import annotations

import re

from ..helpers import wait_done
from .test_dashboard import SHOTS, open_page, sign_in

SMALL = {"mode": "T", "steps": 3, "width": 64, "height": 48, "frames": 21}
SINGER, PRESENTER = "a singer on a dark stage", "a presenter in a bright studio"
READY = "(vs => vs.length === 2 && vs.every(v => v.readyState >= 2))([...document.querySelectorAll('.compare video')])"
TIMES = "[...document.querySelectorAll('.compare video')].map(v => v.currentTime)"


def test_compare_steps_frames_loops_and_selects_the_winner_for_hero(
    browser, api, tokens, client_as, start_worker, release_loop
):
    start_worker()
    ana = client_as("ana")
    body = {
        "project": "spring",
        "takes": [{"prompt": SINGER, "seed": 1, **SMALL}, {"prompt": PRESENTER, "seed": 2, **SMALL}],
    }
    first, second = ana.post("/batches", json=body).json()["take_ids"]
    assert [t["state"] for t in wait_done(ana, [first, second])] == ["done", "done"]

    page, problems = open_page(browser, api)
    sign_in(page, "ana")
    page.goto(f"/#/compare/{first},{second}")
    page.wait_for_function(READY, timeout=60_000)
    captions = page.locator(".compare figcaption a").all_inner_texts()
    assert captions == [f"“{SINGER}” · seed 1", f"“{PRESENTER}” · seed 2"]  # no hex ids
    clock = page.locator("#timecode")
    assert clock.inner_text() == "00:00:00 · frame 1 of 21"

    page.get_by_role("button", name="Frame ▶").click()
    page.keyboard.press(".")  # the keys step too
    page.keyboard.press(".")
    page.wait_for_function("document.querySelector('#timecode').textContent.startsWith('00:00:03')")
    assert clock.inner_text() == "00:00:03 · frame 4 of 21"
    page.get_by_role("button", name="◀ Frame").click()
    assert clock.inner_text() == "00:00:02 · frame 3 of 21"
    page.wait_for_function(f"{TIMES}.every(t => Math.abs(t - 2.5 / 25) < 0.01)")  # both, mid-frame

    # loop: the pair plays again from the start when the clip ends
    page.evaluate(
        "window.__ends = 0; document.querySelector('.compare video').addEventListener('ended', () => window.__ends++)"
    )
    page.get_by_label("Loop").check()
    page.get_by_role("button", name="Play all").click()
    page.wait_for_function("window.__ends >= 2 && !document.querySelector('.compare video').paused", timeout=60_000)
    page.get_by_role("button", name="Pause all").click()

    # the decision
    page.locator(f'[data-pick="{second}"]').click()
    assert f"winner={second}" in page.url
    assert page.locator(f'figure[data-take="{second}"]').get_attribute("class") == "compared winner"
    assert page.locator(f'[data-pick="{first}"]').get_attribute("aria-pressed") == "false"
    page.get_by_role("button", name="Select the winner for hero").click()
    page.get_by_role("button", name="Selected for hero").wait_for()
    assert page.get_by_role("button", name="Selected for hero").is_disabled()
    assert page.locator(".verdict").inner_text().split()[-3:] == ["Selected", "for", "hero"]  # and nothing after
    assert ana.get(f"/takes/{second}").json()["selected_for_hero"] is True
    assert ana.get(f"/takes/{first}").json()["selected_for_hero"] is False
    page.screenshot(path=SHOTS / "33-compare-decision.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=SHOTS / "33-compare-decision-390.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1280, "height": 900})
    page.reload()  # the winner is kept in the address
    page.locator(f'figure.winner[data-take="{second}"]').wait_for()

    # the take page: each attempt's duration and its log, read when opened
    page.goto(f"/#/take/{first}")
    took = page.locator("tr[data-attempt='1'] td[data-took]")
    took.wait_for()
    assert re.fullmatch(r"\d+ s", took.inner_text()), took.inner_text()
    page.get_by_text("Log of attempt 1").click()
    log = page.get_by_label("log of attempt 1")
    page.wait_for_function("document.querySelector('pre.attempt-log').textContent.includes('rendered in')")
    assert f"take {first} attempt 1: done" in log.inner_text() and second not in log.inner_text()
    page.get_by_text("project spring").wait_for()
    page.screenshot(path=SHOTS / "34-take-attempt-log.png", full_page=True)
    page.get_by_role("link", name="Duplicate with edits").click()
    assert page.get_by_label("Project", exact=True).input_value() == "spring"  # the duplicate stays in it

    # the takes page: every word in any order, the count, the order, clear filters
    page.goto("/#/takes")
    count = page.locator("[data-count]")
    count.get_by_text("2 takes").wait_for()
    page.get_by_label("Search").fill("DARK singer")
    page.keyboard.press("Enter")
    count.get_by_text("1 take matches").wait_for()
    assert page.locator("article.card").count() == 1
    page.get_by_role("link", name="Clear filters").click()
    count.get_by_text("2 takes", exact=True).wait_for()
    page.get_by_label("Project").select_option("spring")
    count.get_by_text("2 takes match").wait_for()
    assert page.locator("article.card").first.get_attribute("data-take") == second  # newest first
    page.get_by_label("Order").select_option("oldest")
    page.wait_for_url("**sort=oldest**")
    page.locator(f'article.card[data-take="{second}"]').wait_for()
    assert page.locator("article.card").first.get_attribute("data-take") == first
    assert "spring" in page.locator("[data-batch]").first.inner_text()  # batches show their project
    page.screenshot(path=SHOTS / "35-takes-filtered.png", full_page=True)
    assert problems == []
