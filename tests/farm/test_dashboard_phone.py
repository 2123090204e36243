"""Every page at 390x844 (a phone), in Chromium with a real worker's clips: nothing wider
than the screen, the compare checkbox big enough for a thumb, every page reached from the
menu by keyboard, and focus on the page's heading after each navigation."""

from __future__ import annotations

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from ..helpers import wait_done
from .test_dashboard import SHOTS, open_page, sign_in

PHONE = {"width": 390, "height": 844}
SMALL = {"mode": "T", "steps": 2, "width": 64, "height": 48, "frames": 9}
#: what overflows the screen, named, so a failure says where (inside a scrolling table or log is fine)
OVERFLOW = """() => {
  const w = document.documentElement.clientWidth;
  return [...document.querySelectorAll('body *')].filter(e => {
    const r = e.getBoundingClientRect();
    return r.width && r.right > w + 1 && !e.closest('.scroll, table, pre, .sr-only');
  }).slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));
}"""
#: the first finished card's compare checkbox, once it is laid out
PICK_SIZE = """() => {
  const b = document.querySelector('article.card[data-state=done] input[type=checkbox]');
  const r = b && b.getBoundingClientRect();
  return r && r.width ? { width: r.width, height: r.height } : false;
}"""
NAV = ["Takes", "Submit", "Pools & workers", "Hero nights", "Consent", "Webhooks"]


def fits(page, what: str) -> None:
    wide = f"document.documentElement.scrollWidth <= {PHONE['width']}"
    try:  # images and clips load after the page: the layout settles first
        page.wait_for_function(wide, timeout=10_000)
    except PlaywrightTimeout:
        pass
    assert page.evaluate(wide), (what, page.evaluate("document.documentElement.scrollWidth"), page.evaluate(OVERFLOW))
    assert page.evaluate(OVERFLOW) == [], what


def test_every_page_works_on_a_phone_and_by_keyboard(browser, api, tokens, client_as, start_worker, release_loop):
    start_worker()
    ana = client_as("ana")
    body = {"takes": [{"prompt": "a long prompt " * 12, "seed": s, **SMALL} for s in (1, 2)]}
    first, second = ana.post("/batches", json=body).json()["take_ids"]
    wait_done(ana, [first, second])
    page, problems = open_page(browser, api)
    page.set_viewport_size(PHONE)
    sign_in(page, "ana")
    page.locator("article.card[data-state=done]").nth(1).wait_for()
    # measured in one step: a card is replaced whole when its take changes (a late event)
    box = page.wait_for_function(PICK_SIZE).json_value()
    assert box["width"] >= 24 and box["height"] >= 24, box  # a thumb, not 13 px

    for name in NAV:  # from the menu, by keyboard: Tab to the link, Enter
        link = page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)
        link.focus()
        page.keyboard.press("Enter")
        page.wait_for_function("document.activeElement && document.activeElement.tagName === 'H1'")
        page.wait_for_load_state("networkidle")
        fits(page, name)
        page.screenshot(path=SHOTS / f"40-phone-{name.split()[0].lower()}-390.png", full_page=True)

    for where, label in ((f"/#/take/{first}", "take"), (f"/#/compare/{first},{second}", "compare")):
        page.goto(where)
        page.locator("video[data-clip]").first.wait_for()
        page.wait_for_function("document.activeElement && document.activeElement.tagName === 'H1'")
        page.wait_for_load_state("networkidle")
        fits(page, label)
        page.screenshot(path=SHOTS / f"40-phone-{label}-390.png", full_page=True)
    assert problems == []
