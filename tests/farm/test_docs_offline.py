"""The API docs on a closed network: headless Chromium opens /docs and /redoc with every
request to a host other than the farm's aborted, and both render the farm's operations from
files the farm serves itself (no CDN, no web fonts). Screenshots land in
out/test-artifacts/docs/."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from ..services import ROOT

SHOTS = ROOT / "out" / "test-artifacts" / "docs"
SHOTS.mkdir(parents=True, exist_ok=True)
#: the one thing ReDoc's bundle asks the internet for: its maker's logo under the side menu,
#: which hides itself when it cannot load
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture
def offline_page(browser, api):
    """A page that reaches the farm and nothing else; what it tried elsewhere, and what failed."""
    farm = urlsplit(api).netloc
    local = lambda url: urlsplit(url).netloc == farm
    context = browser.new_context(base_url=api)
    outside: list[str] = []
    failed: list[str] = []

    def only_the_farm(route):
        if local(route.request.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_the_farm)
    page = context.new_page()
    page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}") if local(r.url) else None)
    page.on("pageerror", lambda e: failed.append(f"page error: {e}"))
    page.on("response", lambda r: failed.append(f"{r.url}: {r.status}") if r.status >= 400 else None)
    yield page, outside, failed
    context.close()


def test_swagger_ui_renders_the_farm_s_operations_offline(offline_page):
    page, outside, failed = offline_page
    page.goto("/docs")
    create = page.locator('.opblock-post .opblock-summary-path[data-path="/batches"]')
    create.wait_for(timeout=30_000)
    assert page.locator(".opblock").count() >= 25  # every operation, not a stub
    create.click()  # an operation opens with its request body schema
    page.locator(".opblock-post.is-open .opblock-body").first.wait_for(timeout=10_000)
    assert not page.get_by_text("Failed to load API definition").count()
    page.screenshot(path=SHOTS / "swagger-ui.png")
    assert failed == [] and outside == []


def test_redoc_renders_the_farm_s_operations_offline(offline_page):
    page, outside, failed = offline_page
    page.goto("/redoc")
    page.get_by_role("heading", name="Create Batch").first.wait_for(timeout=30_000)
    assert page.get_by_role("heading", name="List Takes").count()
    page.screenshot(path=SHOTS / "redoc.png")
    assert failed == [] and set(outside) <= {REDOC_LOGO}
