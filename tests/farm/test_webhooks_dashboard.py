"""The webhooks page in a real headless Chromium: a producer registers an endpoint (a real
receiver process), sees its secret once, and reads each delivery attempt of its messages."""

from __future__ import annotations

from datetime import timedelta

from farm import webhooks
from farm.tables import utcnow

from ..helpers import make_batch
from .test_dashboard import SHOTS, open_page, sign_in
from .test_webhooks import receiver  # noqa: F401 (the fixture)


def test_a_producer_registers_an_endpoint_and_reads_its_attempts(
    browser,
    api,
    client_as,
    clean,
    sessions,
    receiver,  # noqa: F811
):
    hooks = receiver("--fail-first", "1")
    page, problems = open_page(browser, api)
    sign_in(page, "ana")
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("URL").fill(hooks.url)
    page.get_by_label("batch.finished").uncheck()
    page.get_by_role("button", name="Register").click()
    secret = page.locator("code.webhook-secret")
    secret.wait_for()
    assert secret.inner_text().startswith("whsec_")
    row = page.locator("tr[data-endpoint]")
    assert hooks.url in row.inner_text() and "take.canceled" in row.inner_text()
    assert "batch.finished" not in row.inner_text()
    page.screenshot(path=SHOTS / "webhooks-endpoints.png", full_page=True)

    [take_id] = make_batch(sessions, clean, [{"prompt": "one", "mode": "T"}])
    assert client_as("ana").post(f"/takes/{take_id}/cancel").status_code == 200
    assert webhooks.Outbox(sessions, clean).deliver_once() == 1  # answered 500: tried again after the backoff
    later = utcnow() + timedelta(seconds=2 * clean.webhook_retry_base)
    assert webhooks.Outbox(sessions, clean, clock=lambda: later).deliver_once() == 1
    page.get_by_role("link", name="Deliveries").click()
    attempts = page.locator("tr[data-message] ul.attempts li")
    attempts.nth(0).wait_for()
    page.screenshot(path=SHOTS / "webhooks-deliveries.png", full_page=True)
    texts = attempts.all_inner_texts()
    assert len(texts) == 2 and "#1" in texts[0] and "answered 500" in texts[0], texts
    assert "#2" in texts[1] and "answered 200" in texts[1], texts
    assert page.locator("tr[data-message] .badge").inner_text() == "delivered"
    assert problems == []
