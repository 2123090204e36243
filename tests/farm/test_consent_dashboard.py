"""The consent page and the take page's consent panel in a real headless Chromium: a producer
records a consent with its evidence, an operator revokes it, the audit trail shows both; a
worker's clip shows its decision and its content credentials, then its withdrawal."""

from __future__ import annotations

from ..helpers import assets, wait_done
from .test_dashboard import SHOTS, open_page, sign_in


def test_recording_revoking_and_a_takes_consent_and_credentials(
    browser, api, tokens, client_as, media, tmp_path, start_worker, release_loop
):
    ana = client_as("ana")
    image, audio = assets(ana, media)
    start_worker()
    take_id = ana.post("/batches", json={"takes": [{"prompt": "p", "mode": "TIA", "image": image, "audio": audio}]})
    take_id = take_id.json()["take_ids"][0]
    release = tmp_path / "release.pdf"
    release.write_bytes(b"%PDF-1.4\n%%EOF\n")

    page, problems = open_page(browser, api)
    sign_in(page, "ana")
    page.get_by_role("link", name="Consent").click()
    form = page.get_by_role("form", name="Record consent")
    form.get_by_label("Subject").fill("Ana Actor")
    form.get_by_label("Covers").select_option("both")
    form.get_by_label("Allowed uses").fill("advertising, film")
    form.get_by_label("Territories").fill("EU")
    form.get_by_label("Evidence", exact=True).set_input_files(str(release))
    form.get_by_label("Assets").fill(f"{image}, {audio}")
    form.get_by_role("button", name="Record").click()
    row = page.locator("tr", has_text="Ana Actor")
    row.get_by_text("standing").wait_for()
    assert "advertising, film · EU · –" in row.inner_text() and "ana" in row.inner_text()
    assert page.get_by_role("button", name="Revoke").count() == 0  # producers record, operators revoke
    page.screenshot(path=SHOTS / "consent-01-recorded.png")

    wait_done(ana, [take_id])
    page.goto(f"/#/take/{take_id}")
    panel = page.get_by_label("consent")
    panel.get_by_text("Content credentials: Trusted by HuMo farm development signer").wait_for()
    assert "Policy off: unchecked" in panel.inner_text()
    text = panel.inner_text()
    assert "development chain: not for delivery" in text and "names this take's manifest" in text
    page.screenshot(path=SHOTS / "consent-02-take-credentials.png")

    olga, _ = open_page(browser, api)
    sign_in(olga, "olga")
    olga.goto("/#/consent")
    olga.get_by_label("Reason to revoke Ana Actor's consent").fill("she withdrew it")
    olga.get_by_role("button", name="Revoke").click()
    olga.locator("tr", has_text="Ana Actor").get_by_text("revoked", exact=True).wait_for()
    trail = olga.get_by_role("table", name="Audit trail (latest 50)")
    trail.get_by_text("clip_withdrawn").wait_for()
    assert trail.get_by_text("revoked").count() >= 1 and trail.get_by_text("recorded").count() == 1
    olga.screenshot(path=SHOTS / "consent-03-revoked.png")

    page.goto(f"/#/take/{take_id}")
    page.reload()
    page.get_by_text("Consent withdrawn: consent record").wait_for()
    assert "she withdrew it" in page.get_by_label("consent").inner_text()
    assert problems == [], problems
