"""Operators in the dashboard (real Chromium, real worker): drain and resume a worker from the
pools page, the warning when a pool has takes waiting and no live worker, and the hero nights
page (window, estimate against budget, its takes and their states, "plan now"); a night is
closed right after its window ends, by the report at once and by `farm beat`'s next pass."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select

from farm.db import transaction
from farm.nightly import FileLock, Scheduler, plan_night, reports, window
from farm.tables import Take, TakeState, Worker, utcnow

from ..helpers import make_batch, wait_done
from .test_dashboard import SHOTS, open_page, sign_in
from .test_nightly import INSIDE, NIGHT, heroes, nightly, plan, selected  # noqa: F401 (nightly: a fixture)

SMALL = {"mode": "T", "steps": 3, "width": 64, "height": 48}


def test_an_operator_drains_and_resumes_a_worker_from_the_pools_page(
    browser, api, tokens, client, client_as, sessions, start_worker, release_loop
):
    worker = start_worker()
    page, problems = open_page(browser, api)
    sign_in(page, "olga")
    page.get_by_role("link", name="Pools & workers").click()
    row = page.locator(f'tr[data-worker="{worker.id}"]')
    row.and_(page.locator("[data-state=idle]")).wait_for()
    assert page.locator("[data-pool-warning]").count() == 0
    assert row.locator("[data-holds]").inner_text() == "tiny"  # the bare checkpoint, no LoRA yet

    drain = page.get_by_role("button", name=f"Drain worker {worker.id}")
    drain.focus()
    page.keyboard.press("Enter")  # keyboard reachable, and the keyboard stays on the worker
    page.get_by_text(f"worker {worker.id} draining: it claims no new take").wait_for()
    row.and_(page.locator("[data-state=draining]")).wait_for()
    assert page.evaluate("document.activeElement.textContent") == "Resume"
    with sessions() as s:
        assert s.execute(select(Worker.stopped).where(Worker.id == worker.id)).scalar_one() is True

    take_id = client.post("/batches", json={"takes": [{"prompt": "waits for a worker", "seed": 1, **SMALL}]}).json()[
        "take_ids"
    ][0]
    warning = page.locator("[data-pool-warning=explore]")
    warning.wait_for(timeout=30_000)  # the page redraws every few seconds
    assert warning.inner_text().startswith("1 take waits in the explore pool and no live worker serves it.")
    assert client.get(f"/takes/{take_id}").json()["state"] == "queued"  # drained: nothing took it
    page.screenshot(path=SHOTS / "30-pools-drained-warning.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=SHOTS / "30-pools-drained-warning-390.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the tables scroll, not the page
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_role("button", name=f"Resume worker {worker.id}").click()
    page.get_by_text(f"worker {worker.id} resumed: it claims takes again").wait_for()
    (done,) = wait_done(client, [take_id])
    assert done["state"] == "done" and done["attempts"][0]["worker_id"] == worker.id
    warning.wait_for(state="detached", timeout=30_000)

    # the API says the same in words; a producer sees the workers but no controls
    r = client.post(f"/workers/{worker.id}/resume")
    assert r.status_code == 200 and r.json()["detail"] == f"worker {worker.id} is already taking work"
    r = client.post("/workers/nobody:1:explore/drain")
    assert r.status_code == 404 and r.json()["field"] == "worker"
    assert client_as("ana").post(f"/workers/{worker.id}/drain").status_code == 403
    producer, _ = open_page(browser, api)
    sign_in(producer, "ana")
    producer.goto("/#/pools")
    producer.locator(f'tr[data-worker="{worker.id}"]').wait_for()
    assert producer.get_by_role("button", name=f"Drain worker {worker.id}").count() == 0
    assert problems == []


def test_a_closed_nights_state_is_right_right_after_its_window(nightly, sessions):  # noqa: F811 (the fixture)
    selected(sessions, nightly, [5, 1])
    planned = plan(sessions, nightly)
    assert planned is not None and planned.planned == 2
    _, end = window(NIGHT, nightly)
    with sessions() as s:
        (inside,) = reports(s, night=NIGHT, now=INSIDE)
        (after,) = reports(s, night=NIGHT, now=end + timedelta(seconds=1))
    assert (inside.state, after.state) == ("planned", "closed")  # closed the moment the window ends
    # `farm beat`'s next pass, between windows, cancels what never started (not the next evening)
    beat = Scheduler(sessions, nightly, FileLock(nightly.data_dir / "beat.lock"),
                     clock=lambda: end + timedelta(seconds=5))  # fmt: skip
    assert beat.tick() is None  # no window open: nothing planned
    assert [(t.state, t.error_class) for t in heroes(sessions)] == [(TakeState.canceled, "NightEnded")] * 2
    with sessions() as s:
        (report,) = reports(s, night=NIGHT, now=end + timedelta(seconds=5))
    assert (report.state, report.canceled, report.queued) == ("closed", 2, 0)


def test_the_nights_page_shows_windows_budgets_takes_and_plans_now(browser, api, tokens, settings, client, sessions):
    """A night two days ago planned two hero takes that never started: closed, its takes
    listed by prompt. Plan now (before tonight's window: asked once more) cancels them and
    plans the two parents for tonight."""
    parents = make_batch(
        sessions, settings, [{"prompt": f"a hero shot {i}", "seed": 7 + i, "mode": "T"} for i in (1, 2)]
    )
    with transaction(sessions) as s:
        for take in s.execute(select(Take).where(Take.id.in_(parents))).scalars():
            take.state, take.selected_for_hero = TakeState.done, True
    tonight = client.get("/nights/tonight").json()
    past = (utcnow() - timedelta(days=2)).date()
    start, end = window(past, settings)
    with transaction(sessions) as s:
        assert plan_night(s, settings, past, start + timedelta(minutes=1)) is not None
    page, problems = open_page(browser, api)
    sign_in(page, "olga")
    page.get_by_role("link", name="Hero nights").click()
    closed = page.locator(f'section[data-night="{past}"]')
    closed.and_(page.locator("[data-state=closed]")).wait_for()
    assert "closed: its window ended" in closed.inner_text()
    assert closed.locator("tr[data-hero-take][data-state=queued]").count() == 2
    assert "“a hero shot 1” · seed 8" in closed.inner_text()
    assert closed.get_by_label("Estimate").count() == 1
    page.screenshot(path=SHOTS / "31-nights-closed.png", full_page=True)

    page.get_by_role("button", name="Plan now", exact=True).click()
    if not tonight["open"]:  # before the window: asked once more
        page.get_by_role("alertdialog").wait_for()
        assert page.evaluate("document.activeElement.textContent") == "Plan now anyway"
        page.keyboard.press("Enter")
    page.get_by_text(f"Night of {tonight['night']}: 2 hero takes planned").wait_for()
    fresh = page.locator(f'section[data-night="{tonight["night"]}"]')
    fresh.locator("tr[data-hero-take]").nth(1).wait_for()
    assert fresh.get_attribute("data-state") == "planned"
    assert closed.locator("tr[data-hero-take][data-state=canceled]").count() == 2  # the planner closed it
    assert closed.get_by_text("night ended: its window closed before the take started").count() == 2
    page.screenshot(path=SHOTS / "32-nights-planned.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=SHOTS / "32-nights-planned-390.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    with sessions() as s:
        hero = s.execute(select(Take).where(Take.hero_night == date.fromisoformat(tonight["night"]))).scalars().all()
    assert sorted(t.parent_id for t in hero) == sorted(parents)
    assert problems == []
