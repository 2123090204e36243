"""Access control: every route checks who asks; roles, ownership, sessions with CSRF,
API tokens, the login rate limit, Flower behind the farm's sign-in, and the live feed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

import httpx
import pytest

from farm import states
from farm.api.app import create_app
from farm.db import transaction

from ..helpers import make_batch
from ..services import ROOT, free_port, password, settings_env, wait_for

#: open to anyone: liveness, the sign-in, the page that shows the sign-in form, the API docs
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/livez"),
    ("POST", "/auth/login"),
    ("GET", "/auth/session"),
    ("GET", "/"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}
#: changes a viewer may make: only to their own session and tokens
VIEWER_WRITES = {("POST", "/auth/logout"), ("POST", "/auth/tokens")}
OPERATOR_ONLY = {
    ("GET", "/users"),
    ("POST", "/users"),
    ("GET", "/flower"),
    ("POST", "/flower"),
    ("GET", "/flower/{path}"),
    ("POST", "/flower/{path}"),
    ("POST", "/nights/{night}/plan"),
    ("POST", "/workers/{worker_id}/drain"),
    ("POST", "/workers/{worker_id}/resume"),
    ("POST", "/consent/records/{record_id}/revoke"),  #: producers record consent, operators revoke it
}


def routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route, through included routers (FastAPI >= 0.16x keeps them nested)."""
    out = []

    def walk(items, prefix=""):
        for route in items:
            if hasattr(route, "original_router"):
                walk(route.original_router.routes, prefix + (route.include_context.prefix or ""))
            elif getattr(route, "methods", None):
                for method in route.methods - {"HEAD"}:
                    out.append((method, re.sub(r"\{(\w+)(:path)?\}", r"{\1}", prefix + route.path)))

    walk(app.routes)
    return sorted(set(out))


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "2026-11-24" if m.group(1) == "night" else "0" * 32, path)


@pytest.fixture(scope="module")
def every_route(settings, storage):
    return routes(create_app(settings, storage))


def test_the_route_list_is_complete(every_route):
    """The checks below walk every route the app has, so a new route is covered the day it lands."""
    paths = {p for _, p in every_route}
    assert {
        "/batches",
        "/takes/{take_id}/cancel",
        "/assets",
        "/events",
        "/workers",
        "/pools",
        "/flower/{path}",
        "/users",
        "/auth/tokens",
        "/objects/{key}",
    } - paths <= {"/objects/{key}"}  # /objects: local stores only
    assert len(every_route) >= 25


def test_every_route_rejects_anonymous_requests(client_as, every_route):
    anon = client_as(None)
    for method, path in every_route:
        if (method, path) in PUBLIC:
            continue
        r = anon.request(method, concrete(path), json={})
        assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
        assert r.json()["field"] == "authorization" and r.headers["www-authenticate"] == "Bearer"
    bad = httpx.get(f"{anon.base_url}/takes", headers={"Authorization": "Bearer farm_not-a-token"})
    assert bad.status_code == 401 and "unknown or revoked" in bad.json()["detail"]


def test_every_route_rejects_under_privileged_requests(client_as, every_route):
    viewer, producer = client_as("vic"), client_as("ana")
    checked = 0
    for method, path in every_route:
        if (method, path) in PUBLIC:
            continue
        if method != "GET" and (method, path) not in VIEWER_WRITES:
            r = viewer.request(method, concrete(path), json={})
            assert r.status_code == 403 and r.json()["field"] == "role", (method, path, r.status_code, r.text[:200])
            checked += 1
        if (method, path) in OPERATOR_ONLY:
            r = producer.request(method, concrete(path), json={})
            assert r.status_code == 403 and "needs a operator" in r.json()["detail"], (method, path, r.status_code)
            checked += 1
    assert checked >= 12


def test_a_viewer_reads_but_cannot_submit(client_as):
    viewer = client_as("vic")
    r = viewer.post("/batches", json={"takes": [{"prompt": "p", "mode": "T"}]})
    assert r.status_code == 403 and "vic is a viewer" in r.json()["detail"]
    assert viewer.get("/takes").status_code == 200 and viewer.get("/pools").status_code == 200


def test_producers_manage_only_their_own_takes(client_as, sessions, clean):
    ana, bo, olga = client_as("ana"), client_as("bo"), client_as("olga")
    batch = ana.post("/batches", json={"takes": [{"prompt": "mine", "mode": "T"}] * 3}).json()
    assert batch["producer"] == "ana"
    a, b, c = batch["take_ids"]
    r = bo.post(f"/takes/{a}/cancel")
    assert r.status_code == 403 and r.json()["field"] == "owner" and "belongs to ana" in r.json()["detail"]
    assert bo.post(f"/takes/{a}/priority", json={"priority": 9}).status_code == 403
    assert ana.post(f"/takes/{a}/cancel").json()["state"] == "canceled"
    assert olga.post(f"/takes/{b}/cancel").json()["state"] == "canceled"  # operators manage everyone's
    # a producer submits as themselves; only an operator submits on someone's behalf
    r = bo.post("/batches", json={"producer": "ana", "takes": [{"prompt": "x", "mode": "T"}]})
    assert r.status_code == 403 and r.json()["field"] == "producer"
    assert (
        olga.post("/batches", json={"producer": "bo", "takes": [{"prompt": "x", "mode": "T"}]}).json()["producer"]
        == "bo"
    )
    assert bo.post(f"/takes/{c}/rerender").status_code == 409  # may re-render anyone's, once it is done


def test_dashboard_session_needs_the_csrf_token_for_changes(api, tokens):
    with httpx.Client(base_url=api, timeout=30) as browser:
        assert browser.get("/auth/session").json() == {"user": None}
        r = browser.post("/auth/login", json={"name": "ana", "password": password("ana")})
        assert r.status_code == 200 and r.json()["role"] == "producer"
        csrf = r.json()["csrf_token"]
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert browser.get("/auth/me").json()["name"] == "ana"
        assert browser.get("/auth/session").json()["user"]["csrf_token"] == csrf
        body = {"takes": [{"prompt": "from the dashboard", "mode": "T"}]}
        forged = browser.post("/batches", json=body)  # what a cross-site form could send: the cookie alone
        assert forged.status_code == 403 and forged.json()["field"] == "csrf"
        assert browser.post("/batches", json=body, headers={"X-CSRF-Token": "guess"}).status_code == 403
        ok = browser.post("/batches", json=body, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 201 and ok.json()["producer"] == "ana"
        # a cookie signed with another key, or with its signature cut, is no session
        from itsdangerous import URLSafeTimedSerializer

        value = browser.cookies["farm_session"]
        forged_cookie = URLSafeTimedSerializer("not-the-farm-secret", salt="farm-session").dumps(
            {"u": browser.get("/auth/me").json()["name"], "c": csrf}
        )
        for bad in (forged_cookie, value.rsplit(".", 1)[0] + ".AAAAAAAA"):
            assert httpx.get(f"{api}/auth/me", cookies={"farm_session": bad}).status_code == 401
        assert browser.post("/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert browser.get("/auth/me").status_code == 401
        # signing out ends the session on the server too: a copy of the old cookie is refused
        assert httpx.get(f"{api}/auth/me", cookies={"farm_session": value}).status_code == 401


def test_login_is_rate_limited_per_name_and_address(api, tokens):
    with httpx.Client(base_url=api, timeout=30) as c:
        for _ in range(5):
            r = c.post("/auth/login", json={"name": "bo", "password": "wrong-password"})
            assert r.status_code == 401 and r.json()["field"] == "password"
        locked = c.post("/auth/login", json={"name": "bo", "password": password("bo")})  # even the right one
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        assert "too many failed logins" in locked.json()["detail"]
        assert c.post("/auth/login", json={"name": "ana", "password": password("ana")}).status_code == 200
        # unknown names are counted too, and answer exactly like a wrong password
        assert c.post("/auth/login", json={"name": "nobody", "password": "x"}).json() == r.json()


def test_guesses_from_many_addresses_and_in_parallel_are_counted(sessions, tokens):
    from farm import accounts
    from farm.errors import TooManyAttempts

    for i in range(accounts.LOGIN_FAILURES_PER_NAME):
        with sessions() as session:
            assert accounts.login(session, "bo", f"guess-{i}", f"10.0.{i // 250}.{i % 250}") is None
    with sessions() as session, pytest.raises(TooManyAttempts):
        accounts.login(session, "bo", password("bo"), "10.9.9.9")  # a fresh address does not help
    # parallel guesses: each attempt is recorded before its password is checked
    results: list[object] = []

    def guess(i):
        with sessions() as session:
            try:
                results.append(accounts.login(session, "ana", f"wrong-{i}", "10.1.1.1"))
            except TooManyAttempts as exc:
                results.append(exc)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    checked = [r for r in results if r is None]
    assert len(checked) < 12 and len(checked) <= accounts.LOGIN_FAILURES + 2  # not every guess was tried


def test_the_login_limit_on_the_embedded_database(tmp_path):
    """SQLite returns naive datetimes; the lockout must still answer 429, not fail."""
    from farm import accounts
    from farm.db import session_factory
    from farm.errors import TooManyAttempts
    from farm.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'farm.db'}"
    upgrade(url)
    factory = session_factory(url)
    with transaction(factory) as session:
        accounts.create_user(session, "sam", "viewer", "sam-password-1")
    for _ in range(accounts.LOGIN_FAILURES):
        with factory() as session:
            assert accounts.login(session, "sam", "nope", "127.0.0.1") is None
    with factory() as session, pytest.raises(TooManyAttempts) as refused:
        accounts.login(session, "sam", "sam-password-1", "127.0.0.1")
    assert 0 < refused.value.retry_after <= accounts.LOGIN_WINDOW.total_seconds() + 1


def test_tokens_die_with_their_user(client_as, clean, sessions, api):
    from farm import accounts

    ana = client_as("ana")
    new = ana.post("/auth/tokens", json={"name": "laptop"})
    assert new.status_code == 201 and new.json()["token"].startswith("farm_")
    second = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {new.json()['token']}"})
    assert second.get("/auth/me").json()["name"] == "ana"
    with transaction(sessions) as session:
        user = accounts.get_user(session, "ana")
        user.disabled = True
        assert accounts.revoke_tokens(session, user) == 2
    assert second.get("/auth/me").status_code == 401 and ana.get("/auth/me").status_code == 401
    second.close()


def test_users_are_managed_by_operators(client_as):
    olga = client_as("olga")
    r = olga.post("/users", json={"name": "Zoe", "role": "producer", "password": "zoe-password-1"})
    assert r.status_code == 201 and r.json() == {"name": "zoe", "role": "producer", "disabled": False}
    assert olga.post("/users", json={"name": "zoe", "role": "viewer"}).json()["field"] == "name"
    short = olga.post("/users", json={"name": "yan", "role": "viewer", "password": "short"})
    assert short.status_code == 422 and short.json()["field"] == "password"
    assert "zoe" in {u["name"] for u in olga.get("/users").json()}


def test_farm_user_cli(clean, tmp_path):
    env = settings_env(clean)

    def farm(*args, stdin=None):
        return subprocess.run(
            [sys.executable, "-m", "farm.cli", "user", *args],
            cwd=ROOT,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    r = farm("create", "kim", "--role", "producer", "--password-stdin", "--token", stdin="kim-password-1\n")
    assert r.returncode == 0 and "user kim created (producer)" in r.stdout and r.stdout.split()[-1].startswith("farm_")
    r = farm("create", "kim", "--role", "producer", "--no-password")
    assert r.returncode == 2 and r.stderr.strip() == "error: name: user 'kim' exists already; choose another name"
    r = farm("create", "lee", "--role", "boss", "--no-password")
    assert r.returncode == 2 and "invalid choice: 'boss'" in r.stderr and "Traceback" not in r.stderr
    r = farm("token", "nobody")
    assert r.returncode == 2 and r.stderr.strip() == "error: user 'nobody' not found"
    r = farm("list")
    assert re.search(r"^kim\s+producer$", r.stdout, re.M)


def test_flower_is_served_to_operators_only(clean, storage, tokens, tmp_path):
    """Flower listens on loopback with a password only the dispatcher knows; the dispatcher
    serves it at /flower to operators."""
    from fastapi.testclient import TestClient

    port = free_port()
    settings = clean.model_copy(update={"flower_port": port})
    env = {**settings_env(settings)}
    log = open(tmp_path / "flower.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "farm.cli", "flower"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:

        def up():
            assert proc.poll() is None, (tmp_path / "flower.log").read_text()[-2000:]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/flower/healthcheck", timeout=2).status_code
            except httpx.HTTPError:
                return None

        wait_for(up, 60, "Flower to listen")
        assert httpx.get(f"http://127.0.0.1:{port}/flower/", timeout=5).status_code == 401  # not without the password
        app = create_app(settings, storage)
        with (
            TestClient(app) as anon,
            TestClient(app, headers={"Authorization": f"Bearer {tokens['ana']}"}) as producer,
            TestClient(app, headers={"Authorization": f"Bearer {tokens['olga']}"}) as operator,
        ):
            assert anon.get("/flower/").status_code == 401
            assert producer.get("/flower/").status_code == 403
            page = operator.get("/flower/")
            assert page.status_code == 200 and "Flower" in page.text
            assert operator.get("/flower/workers").status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_live_events_carry_progress_as_it_is_written(api, tokens, sessions, clean):
    """The change feed pushes each progress write to the browsers watching that batch."""
    [take_id] = make_batch(sessions, clean, [{"prompt": "live", "mode": "T", "steps": 10}])
    batch_id = states.get(sessions(), take_id).batch_id
    [other] = make_batch(sessions, clean, [{"prompt": "elsewhere", "mode": "T"}])
    events: list[dict] = []
    connected = threading.Event()

    def listen():
        headers = {"Authorization": f"Bearer {tokens['vic']}"}
        with httpx.stream("GET", f"{api}/events", params={"batch_id": batch_id}, headers=headers, timeout=60) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    connected.set()
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "take":
                    events.append(json.loads(line[6:]))
                    if events[-1]["state"] == "canceled":
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert connected.wait(30)
    with transaction(sessions) as s:
        states.release(s, [take_id, other])
        attempt = states.claim(s, take_id, "w1", "host", "cpu")
    for step in (1, 2, 3):
        with transaction(sessions) as s:
            states.progress(s, take_id, attempt, step, 10)
        wait_for(lambda step=step: any(e["progress"]["step"] == step for e in events), 30, f"step {step} to arrive")
    with transaction(sessions) as s:
        states.mark_canceled(s, take_id, attempt)
    t.join(30)
    assert not t.is_alive()
    assert {e["id"] for e in events} == {take_id}  # the other batch's take was not sent to this stream
    order = ["queued", "released", "running", "canceled"]
    seen = [order.index(e["state"]) for e in events]
    assert seen == sorted(seen) and events[-1]["state"] == "canceled"  # in the order they happened
    steps = [e["progress"]["step"] for e in events if e["state"] == "running"]
    assert steps == sorted(steps) and {1, 2, 3} <= set(steps)
