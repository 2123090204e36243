"""Dashboard benchmark: does the take grid stay quick as the farm's record grows?

The issue asks for "filter and search; the take grid stays quick with 5,000 takes". This
measures the grid's whole path on a throwaway Postgres database holding N takes (N = 100,
the baseline, then 5,000 and 20,000): several producers and batches, prompts with words to
search, mixed states, and done takes with Output rows, so every page presigns thumbnail,
clip and manifest URLs on S3 (a moto server; many rows share a few tiny real JPEGs).

  API (a viewer's API token, the dispatcher in its own uvicorn process; p50/p95 over ~30
  calls): GET /takes?limit=120 first page, a page deep in (by cursor), q= prompt search (a
  common and a rare word), state=done, producer=, and GET /batches?limit=60 with and without
  take ids (the dashboard's list leaves them out), with the answers' sizes.

  Browser (headless Debian Chromium through Playwright, a viewer's session cookie):
  navigation -> the first 120 cards in the DOM; each further page (scrolling "Load more"
  into view, the infinite-scroll path); every take loaded (capped at 5,000 cards); frame
  times while scrolling the full grid (rAF deltas); live progress latency (a take's progress
  changed in the database -> its card's progress bar, through the change feed and SSE);
  and what one open grid fetches when takes it does not show change state.

Every size is compared against N = 100 in the same run. Prints a table, writes JSON and the
table next to it. Usage: python benchmarks/dashboard.py [--sizes 100,5000,20000] [--out FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from services import PG_ADMIN, temp_database  # noqa: E402
from sqlalchemy import text  # noqa: E402

from farm import accounts  # noqa: E402
from farm.batches import create_batch  # noqa: E402
from farm.db import get_engine, session_factory, transaction  # noqa: E402
from farm.settings import Settings  # noqa: E402
from farm.storage import Storage, open_storage  # noqa: E402
from farm.tables import Role  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / f"dashboard_2core-vm_{date.today().isoformat()}.json"
CHROMIUM = "/usr/bin/chromium"  # Debian's, as tests/farm/test_dashboard.py drives it
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
]
PAGE = 120  #: the dashboard's page size (viewTakes' load())
GRID_CAP = 5_000  #: cards loaded into one grid at most
API_CALLS = 30
VIEWER, PASSWORD = "vic", "vic-password-1"
PRODUCERS = ["ana", "ben", "chloe", "dev", "eli", "fay"]
BATCH_SIZES = [5, 25, 100, 400, 1000]  #: a producer's batches, cycled: single takes to large sweeps
SUBJECTS = [
    "a presenter",
    "an old fisherman",
    "a young violinist",
    "a chef",
    "a news anchor",
    "a climber",
    "a street dancer",
    "a teacher",
    "a tired nurse",
    "a pilot",
    "a child",
    "a singer",
]
ACTIONS = [
    "speaks to the camera",
    "laughs",
    "sings softly",
    "explains a recipe",
    "whispers a secret",
    "reads the weather",
    "tells a joke",
    "argues calmly",
    "recites a poem",
]
PLACES = [
    "in a bright studio",
    "on a windy harbor pier",
    "in a dim kitchen",
    "on a rooftop at dusk",
    "in a busy market",
    "in a quiet library",
    "on a snowy ridge",
    "in a cockpit",
    "in a classroom",
    "under neon lights",
]
COMMON, RARE = "harbor", "zeppelin"  #: in ~10% and ~0.5% of prompts

# ---------- statistics ----------


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summary(values: list[float]) -> dict:
    return {
        "p50": pct(values, 0.5),
        "p95": pct(values, 0.95),
        "mean": statistics.fmean(values),
        "max": max(values),
        "n": len(values),
    }


# ---------- services: S3 (moto) and the dispatcher, each in its own process ----------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, what: str, log, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read()[-2000:]}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {seconds} s")


@contextmanager
def process(args: list[str], url: str, what: str, env: dict | None = None) -> Iterator[str]:
    """A server process; its output goes to a temporary file (a pipe nobody reads fills up
    and stalls it: moto logs every request)."""
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(url, proc, what, log)
            yield url.removesuffix("/healthz")
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def s3_server() -> Iterator[str]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "farm-bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", f"secret-{uuid.uuid4().hex}")
    port = free_port()
    with process(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        f"http://127.0.0.1:{port}",
        "moto_server",
    ) as url:
        yield url


def dispatcher(settings: Settings) -> AbstractContextManager[str]:
    """The FastAPI app as deployed: create_app() from FARM_* variables, one uvicorn process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update({f"FARM_{k.upper()}": str(v) for k, v in settings.model_dump().items() if v is not None})
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "farm.api.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return process(args, f"http://127.0.0.1:{port}/healthz", "the dispatcher", env)


# ---------- the farm's record: N takes ----------


def prompt(i: int, rng: random.Random) -> str:
    words = f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)} {PLACES[i % len(PLACES)]}"
    return words + (f", a {RARE} drifting overhead" if i % 200 == 7 else "")


def batch_plan(n: int) -> list[tuple[str, int]]:
    """(producer, size) per batch, in submission order, n takes in all."""
    plan, left, i = [], n, 0
    while left:
        size = min(left, BATCH_SIZES[i % len(BATCH_SIZES)])
        plan.append((PRODUCERS[i % len(PRODUCERS)], size))
        left, i = left - size, i + 1
    return plan


def submit_batches(factory, settings: Settings, n: int) -> None:
    """The takes, through create_batch (validated, one bulk insert per batch)."""
    rng, i = random.Random(n), 0
    with transaction(factory) as session:
        for b, (producer, size) in enumerate(batch_plan(n)):
            takes = [{"prompt": prompt(i + k, rng), "seed": i + k} for k in range(size)]
            body = {
                "project": f"show-{b % 3}",
                "name": f"{producer} sweep {b}",
                "defaults": {"checkpoint": "tiny", "mode": "T"},
                "takes": takes,
            }
            create_batch(session, body, producer, settings)
            i += size


#: ages and states, in SQL: k = 1 is the oldest take; one take every 30 s, the newest an
#: hour ago (so the change feed's look-back replays none of them); the states are mixed
#: evenly along the list: 60% done, 10% failed, 5% canceled, 10% queued, 5% released, 10% running
SHAPE = """
WITH r AS (SELECT id, row_number() OVER (ORDER BY created_at, id) AS k, count(*) OVER () AS n FROM takes)
UPDATE takes t SET
  created_at = now() - interval '1 hour' - (r.n - r.k) * interval '30 seconds',
  state = CASE WHEN (r.k * 37) % 100 < 60 THEN 'done' WHEN (r.k * 37) % 100 < 70 THEN 'failed'
               WHEN (r.k * 37) % 100 < 75 THEN 'canceled' WHEN (r.k * 37) % 100 < 85 THEN 'queued'
               WHEN (r.k * 37) % 100 < 90 THEN 'released' ELSE 'running' END,
  progress_total = 40,
  progress_step = CASE WHEN (r.k * 37) % 100 < 60 THEN 40 WHEN (r.k * 37) % 100 >= 90 THEN r.k % 30 ELSE 0 END,
  error_class = CASE WHEN (r.k * 37) % 100 BETWEEN 60 AND 69 THEN 'GPUOutOfMemory' END
FROM r WHERE r.id = t.id
"""
TIMES = """
UPDATE takes SET updated_at = created_at + interval '5 minutes',
  released_at = CASE WHEN state IN ('released', 'running', 'done', 'failed') THEN created_at + interval '1 minute' END,
  started_at = CASE WHEN state IN ('running', 'done', 'failed') THEN created_at + interval '2 minutes' END,
  finished_at = CASE WHEN state IN ('done', 'failed', 'canceled') THEN created_at + interval '5 minutes' END,
  attempt_count = CASE WHEN state IN ('running', 'done', 'failed') THEN 1 ELSE 0 END
"""
BATCH_TIMES = "UPDATE batches b SET created_at = (SELECT min(created_at) FROM takes t WHERE t.batch_id = b.id)"
ATTEMPTS = """
INSERT INTO attempts (take_id, number, worker_id, host, gpu, state, started_at, finished_at, gpu_seconds)
SELECT id, 1, 'gpu-node-' || (abs(hashtext(id)) % 8) || ':0:explore', 'gpu-node', 'NVIDIA H100',
       state, started_at, finished_at, 95.0 FROM takes WHERE state IN ('running', 'done', 'failed')
"""
OUTPUTS = """
INSERT INTO outputs (take_id, attempt_id, clip_key, thumbnail_key, manifest_key, clip_sha256, clip_size, created_at)
SELECT t.id, a.id, 'bench/clip.mp4', 'bench/thumb-' || (abs(hashtext(t.id)) % 8) || '.jpg', 'bench/manifest.json',
       repeat('0', 64), 2400000, t.finished_at
FROM takes t JOIN attempts a ON a.take_id = t.id WHERE t.state = 'done'
"""


def seed(settings: Settings, storage: Storage, n: int) -> str:
    """N takes shaped like a farm's record; returns the viewer's API token."""
    factory = session_factory(settings.database)
    submit_batches(factory, settings, n)
    with transaction(factory) as session:
        for sql in (SHAPE, TIMES, BATCH_TIMES, ATTEMPTS, OUTPUTS):
            session.execute(text(sql))
        token = accounts.create_token(session, accounts.create_user(session, VIEWER, Role.viewer, PASSWORD))
    with get_engine(settings.database).connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    put_objects(storage)
    return token


def put_objects(storage: Storage) -> None:
    """The few real objects every Output row points at: 8 tiny thumbnails, a clip, a manifest."""
    from PIL import Image

    for k in range(8):
        buf = io.BytesIO()
        Image.new("RGB", (320, 200), (30 * k, 120, 255 - 30 * k)).save(buf, "JPEG", quality=70)
        buf.seek(0)
        storage.put_stream(f"bench/thumb-{k}.jpg", buf, "image/jpeg")
    storage.put_stream("bench/clip.mp4", io.BytesIO(b"\0" * 1024), "video/mp4")
    storage.put_stream("bench/manifest.json", io.BytesIO(b"{}"), "application/json")


def deep_cursor(settings: Settings, n: int) -> str:
    """The cursor of a page near the end of the list (two pages from the oldest take)."""
    with get_engine(settings.database).connect() as conn:
        at, take_id = conn.execute(
            text("SELECT created_at, id FROM takes ORDER BY created_at DESC, id DESC OFFSET :o LIMIT 1"),
            {"o": max(0, n - 2 * PAGE)},
        ).one()
    return f"{at.isoformat()}|{take_id}"


# ---------- API ----------


def time_calls(client: httpx.Client, path: str, params: dict, calls: int = API_CALLS) -> dict:
    for _ in range(5):  # warm: connections, plans, the token's last-used stamp
        client.get(path, params=params).raise_for_status()
    ms, size, rows = [], 0, 0
    for _ in range(calls):
        start = time.perf_counter()
        r = client.get(path, params=params)
        ms.append((time.perf_counter() - start) * 1e3)
        r.raise_for_status()
        size = len(r.content)
        body = r.json()
        rows = body["count"] if isinstance(body, dict) else len(body)
    return {**summary(ms), "bytes": size, "rows": rows}


def measure_api(api: str, token: str, cursor: str) -> dict:
    takes = {
        "first page": {"limit": PAGE},
        "deep page (cursor)": {"limit": PAGE, "cursor": cursor},
        f"q={COMMON} (~10%)": {"limit": PAGE, "q": COMMON},
        f"q={RARE} (~0.5%)": {"limit": PAGE, "q": RARE},
        "state=done": {"limit": PAGE, "state": "done"},
        "producer=ben": {"limit": PAGE, "producer": "ben"},
    }
    with httpx.Client(base_url=api, timeout=120, headers={"Authorization": f"Bearer {token}"}) as client:
        out = {f"GET /takes {name}": time_calls(client, "/takes", params) for name, params in takes.items()}
        out["GET /batches?limit=60"] = time_calls(client, "/batches", {"limit": 60})
        out["GET /batches?limit=60&with_take_ids=false"] = time_calls(
            client, "/batches", {"limit": 60, "with_take_ids": "false"}
        )
    return out


# ---------- browser ----------

#: set by an init script: when the first `want` cards were in the DOM (ms since navigation)
FIRST_CARDS = """
(() => {
  const want = %d;
  window.__firstCards = null;
  const tick = () => {
    if (document.querySelectorAll('article.card').length >= want) window.__firstCards = performance.now();
    else requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})();
"""
#: scroll "Load more" into view (the infinite-scroll path) until `cap` cards; ms per page.
#: A page that has not come 5 s after the scroll is a stall: the button is clicked, as a user would.
LOAD_ALL = """
async (cap) => {
  const count = () => document.querySelectorAll('article.card').length;
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  const more = [...document.querySelectorAll('button')].find((b) => b.textContent === 'Load more');
  const pages = [];
  let stalls = 0;
  while (count() < cap && more && !more.hidden) {
    const want = Math.min(cap, count() + %d), t0 = performance.now();
    let clicked = false;
    more.scrollIntoView({block: 'end'});
    while (count() < want) {
      await frame();
      if (!clicked && performance.now() - t0 > 5000) { stalls += 1; clicked = true; more.click(); }
    }
    if (!clicked) pages.push(performance.now() - t0);
    await frame();
  }
  return {pages, stalls, cards: count(), at: performance.now()};
}
"""
#: rAF deltas while scrolling the grid up and down, `step` px a frame
SCROLL = """
async ([frames, step]) => {
  window.scrollTo(0, 0);
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const max = document.documentElement.scrollHeight - innerHeight;
  const deltas = [];
  let last = null, dir = 1;
  return await new Promise((resolve) => {
    const tick = (ts) => {
      if (last !== null) deltas.push(ts - last);
      last = ts;
      if (deltas.length >= frames) return resolve({deltas, height: max + innerHeight});
      let y = scrollY + dir * step;
      if (y >= max) { y = max; dir = -1; } else if (y <= 0) { y = 0; dir = 1; }
      window.scrollTo(0, y);
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
}
"""
#: record each value a card's progress bar shows, with the wall-clock time (ms since epoch)
WATCH_BAR = """
(id) => {
  window.__bar = [];
  const bar = document.querySelector(`article.card[data-take="${id}"] .bar`);
  new MutationObserver(() => window.__bar.push([Number(bar.getAttribute('aria-valuenow')),
                                                 performance.timeOrigin + performance.now()]))
    .observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
}
"""


def open_grid(context, want: int):
    """Navigate to the take grid; ms from navigation to `want` cards, and the /takes fetch."""
    page = context.new_page()
    page.add_init_script(FIRST_CARDS % want)
    page.goto("/#/takes", wait_until="commit")
    page.wait_for_function("window.__firstCards !== null", timeout=120_000)
    ms = page.evaluate("window.__firstCards")
    fetch = page.evaluate(
        "(() => { const e = performance.getEntriesByType('resource')"
        ".find((r) => r.name.includes('/takes?'));"
        " return e ? e.responseEnd - e.startTime : null })()"
    )
    return page, ms, fetch


def first_cards(context, want: int, runs: int = 5) -> dict:
    totals, fetches = [], []
    for _ in range(runs):
        page, ms, fetch = open_grid(context, want)
        totals.append(ms)
        fetches.append(fetch)
        page.close()
    return {**summary(totals), "takes_fetch_ms": statistics.median(fetches), "cards": want}


def load_all(context, n: int) -> tuple:
    """A fresh grid scrolled to the end (at most GRID_CAP cards); the page stays open."""
    page, first, _ = open_grid(context, min(n, PAGE))
    page.evaluate("() => new Promise((r) => setTimeout(r, 300))")  # let the batches list land too
    out = page.evaluate(LOAD_ALL % PAGE, min(n, GRID_CAP))
    pages = out["pages"]
    trend = {"first_5_mean": statistics.fmean(pages[:5]), "last_5_mean": statistics.fmean(pages[-5:])} if pages else {}
    return page, {
        "first_ms": first,
        "pages": len(pages),
        "page_ms": summary(pages) if pages else None,
        **trend,
        "stalls": out["stalls"],
        "all_loaded_ms": out["at"],
        "cards": out["cards"],
    }


def scroll_frames(page, frames: int = 300, step: int = 200) -> dict:
    """rAF deltas while scrolling `step` px a frame (12,000 px/s: a fast fling), with the
    renderer's own layout and style time from the DevTools protocol."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    before = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    out = page.evaluate(SCROLL, [frames, step])
    after = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    cdp.detach()
    per_frame = {
        f"{k}_ms_per_frame": (after[k] - before[k]) * 1e3 / frames
        for k in ("LayoutDuration", "RecalcStyleDuration", "ScriptDuration", "TaskDuration")
    }
    return {**summary(out["deltas"]), **per_frame, "grid_px": out["height"], "step_px": step}


def live_latency(page, settings: Settings, updates: int = 12) -> dict:
    """A running take's progress changed in the database -> its bar shows it."""
    engine = get_engine(settings.database)
    with engine.connect() as conn:
        take_id = conn.execute(
            text("SELECT id FROM takes WHERE state = 'running' ORDER BY created_at DESC LIMIT 1")
        ).scalar_one()
    page.evaluate("window.scrollTo(0, 0)")
    page.evaluate(WATCH_BAR, take_id)
    rng, ms = random.Random(1), []
    for i in range(updates):
        step = 31 + i % 9  # the seeded steps are below 30: every update shows a new value
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE takes SET progress_step = :s, updated_at = now() WHERE id = :id"),
                {"s": step, "id": take_id},
            )
        sent = time.time() * 1e3
        want = math.floor(100 * step / 40 + 0.5)  # JavaScript's Math.round
        page.wait_for_function(f"window.__bar.some(([v]) => v === {want})", timeout=30_000)
        shown = page.evaluate(f"window.__bar.find(([v]) => v === {want})[1]")
        ms.append(shown - sent)
        page.evaluate("window.__bar.length = 0")
        time.sleep(rng.uniform(0.6, 1.4))  # any phase against the feed's 0.5 s poll
    return summary(ms)


def offscreen_changes(context, settings: Settings, n: int, takes: int = 200) -> dict:
    """The oldest queued takes (not on a freshly opened grid, for N > 120) are released, as
    the release loop does in waves: what does one open grid fetch and draw in response?"""
    page, _, _ = open_grid(context, min(n, PAGE))
    fetched: list[float] = []
    page.on("request", lambda r: fetched.append(time.monotonic()) if "/takes/" in r.url and "?" not in r.url else None)
    before = page.evaluate("document.querySelectorAll('article.card').length")
    with get_engine(settings.database).begin() as conn:
        changed = conn.execute(
            text(
                "UPDATE takes SET state = 'released', updated_at = now() WHERE id IN "
                "(SELECT id FROM takes WHERE state = 'queued' ORDER BY created_at LIMIT :n)"
            ),
            {"n": takes},
        ).rowcount
    start = time.monotonic()
    while time.monotonic() - max([start, *fetched]) < 2.0 and time.monotonic() - start < 60:  # until 2 s quiet
        page.wait_for_timeout(250)
    after = page.evaluate("document.querySelectorAll('article.card').length")
    page.close()
    return {
        "changed": changed,
        "fetches": len(fetched),
        "cards_added": after - before,
        "last_fetch_after_ms": (max(fetched) - start) * 1e3 if fetched else None,
    }


def sign_in(context) -> None:
    """The session cookie, as the login form gets it (the form itself is not what is timed)."""
    r = context.request.post("/auth/login", data={"name": VIEWER, "password": PASSWORD})
    if not r.ok:
        raise RuntimeError(f"sign-in failed: {r.status} {r.text()}")


def measure_browser(api: str, settings: Settings, n: int) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = browser.new_context(base_url=api, viewport={"width": 1400, "height": 900})
            context.set_default_timeout(120_000)
            sign_in(context)
            out = {"first_cards": first_cards(context, min(n, PAGE))}
            page, out["load_all"] = load_all(context, n)
            out["scroll"] = scroll_frames(page)
            out["live"] = live_latency(page, settings)
            page.close()
            out["offscreen"] = offscreen_changes(context, settings, n)
        finally:
            browser.close()
    return out


# ---------- one size, then the report ----------


def measure(n: int, s3: str, tmp: Path) -> dict:
    with temp_database("farm_bench_dash") as url:
        settings = Settings(
            data_dir=tmp,
            database_url=url,
            storage_url=f"s3://farm-bench-{uuid.uuid4().hex[:6]}/r",
            s3_endpoint_url=s3,
            secret_key=uuid.uuid4().hex,
        )
        storage = open_storage(settings)
        start = time.perf_counter()
        token = seed(settings, storage, n)
        print(f"N={n}: seeded in {time.perf_counter() - start:.1f} s", flush=True)
        with dispatcher(settings) as api:
            api_results = measure_api(api, token, deep_cursor(settings, n))
            print(f"N={n}: API done", flush=True)
            browser = measure_browser(api, settings, n)
            print(f"N={n}: browser done", flush=True)
    return {"api": api_results, "browser": browser}


def rows(r: dict) -> list[tuple[str, float | None, str]]:
    """(measurement, the value ratios are taken of, the cell) for one size."""
    out = []
    for name, a in r["api"].items():
        out.append((f"{name}  p50/p95 ms", a["p50"], f"{a['p50']:.1f} / {a['p95']:.1f}"))
    b, slim = (r["api"][f"GET /batches?limit=60{k}"]["bytes"] / 1024 for k in ("", "&with_take_ids=false"))
    out.append(("GET /batches  response KB, ids / no ids", b, f"{b:.0f} / {slim:.0f}"))
    t = r["api"]["GET /takes first page"]["bytes"] / 1024
    out.append(("GET /takes first page  response KB", t, f"{t:.0f}"))
    br = r["browser"]
    fc = br["first_cards"]
    out.append((f"navigation -> first {PAGE} cards  median ms", fc["p50"], f"{fc['p50']:.0f}"))
    la = br["load_all"]
    pm = la["page_ms"]
    out.append(
        ("each further page  mean/p95 ms", pm and pm["mean"], f"{pm['mean']:.0f} / {pm['p95']:.0f}" if pm else "—")
    )
    out.append(
        (
            "  first 5 / last 5 pages  mean ms",
            la.get("first_5_mean"),
            f"{la['first_5_mean']:.0f} / {la['last_5_mean']:.0f}" if pm else "—",
        )
    )
    out.append(
        (
            f"all takes loaded (<= {GRID_CAP:,} cards)  ms",
            la["all_loaded_ms"],
            f"{la['all_loaded_ms']:.0f} ({la['cards']})",
        )
    )
    out.append(("infinite-scroll stalls (button clicked)", None, str(la["stalls"])))
    sc = br["scroll"]
    out.append(("scrolling the full grid  frame p95 / p50 ms", sc["p95"], f"{sc['p95']:.0f} / {sc['p50']:.0f}"))
    lay = sc["LayoutDuration_ms_per_frame"]
    out.append(("  of which layout  ms per frame", lay, f"{lay:.1f}"))
    lv = br["live"]
    out.append(("live progress -> card bar  p50/p95 ms", lv["p50"], f"{lv['p50']:.0f} / {lv['p95']:.0f}"))
    off = br["offscreen"]
    out.append(
        (
            "oldest queued takes released -> grid fetches",
            None,
            f"{off['fetches']}/{off['changed']} (+{off['cards_added']})",
        )
    )
    return out


def table(results: dict[int, dict]) -> str:
    sizes = sorted(results)
    base, others = sizes[0], sizes[1:]
    per_size = {n: rows(results[n]) for n in sizes}
    head = f"{'measurement':56s} " + " ".join(f"{f'N={n:,}' + (' (base)' if n == base else ''):>16s}" for n in sizes)
    head += "".join(f" {f'x N={n:,}':>10s}" for n in others)
    lines = [head, "-" * len(head)]
    for i, (name, base_value, _) in enumerate(per_size[base]):
        cells = " ".join(f"{per_size[n][i][2]:>16s}" for n in sizes)
        ratios = ""
        for n in others:
            v = per_size[n][i][1]
            ratios += f" {(f'{v / base_value:.1f}x' if v is not None and base_value else '—'):>10s}"
        lines.append(f"{name:56s} {cells}{ratios}")
    lines.append("ratios: of the first number in a cell, against the baseline; (n) after a time: cards in the DOM")
    return "\n".join(lines)


def meta() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    with psycopg.connect(PG_ADMIN) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "machine": "2-core dev VM",
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "load_average_at_start": os.getloadavg(),
        "postgres": pg,
        "python": platform.python_version(),
        "chromium": chromium,
        "storage": "S3 API (moto_server), presigned URLs",
        "date": date.today().isoformat(),
        "page_size": PAGE,
        "grid_cap": GRID_CAP,
        "api_calls_per_measurement": API_CALLS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,5000,20000", help="take counts; the first is the baseline")
    parser.add_argument("--out", default=str(OUT), help="JSON file; the table goes next to it as .txt")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    info = meta()
    results = {}
    with s3_server() as s3, tempfile.TemporaryDirectory(prefix="farm-bench-dash-") as tmp:
        for n in sizes:
            results[n] = measure(n, s3, Path(tmp))
    report = table(results)
    print("\n" + report)
    out = Path(args.out)
    out.write_text(json.dumps({"meta": info, "sizes": sizes, "results": results}, indent=2))
    out.with_suffix(".txt").write_text(f"{json.dumps(info)}\n\n{report}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
