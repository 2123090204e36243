"""`make demo`: start the farm on embedded defaults, submit examples/batch.yaml, show each
take's progress live, copy the clips to out/demo/ named by prompt and seed, then say how to
open the dashboard, and (in a terminal) keep serving it until Ctrl-C. Needs no services and
no GPU. DEMO_SERVE=0 stops the farm as soon as the clips are copied."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEMO_USER, DEMO_PASSWORD = "demo", "demo-password"
STARTUP_SECONDS = 300


def free_port(preferred: int = 8000) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_user(env: dict) -> str:
    """The demo's producer account (dashboard sign-in: demo / demo-password), and an API token."""
    farm = [sys.executable, "-m", "farm.cli", "user"]
    made = subprocess.run(
        [*farm, "create", DEMO_USER, "--role", "producer", "--password-stdin", "--token"],
        cwd=ROOT,
        env=env,
        input=f"{DEMO_PASSWORD}\n",
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:  # a second run: the user exists; a fresh token will do
        made = subprocess.run(
            [*farm, "token", DEMO_USER], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
    return made.stdout.split()[-1]


def clip_name(take: dict) -> str:
    """A clip's file name from its prompt and seed: a-presenter-speaks-to-the-camera-seed1.mp4."""
    words = re.findall(r"[a-z0-9]+", (take["params"].get("prompt") or "take").lower())
    name = ""
    for word in words:  # whole words, up to 48 characters
        if name and len(name) + 1 + len(word) > 48:
            break
        name = f"{name}-{word}" if name else word[:48]
    return f"{name or 'take'}-seed{take['params'].get('seed')}.mp4"


class Status:
    """One line of live status: rewritten in place on a terminal, a new line per change elsewhere."""

    def __init__(self) -> None:
        self.tty, self.last = sys.stdout.isatty(), ""

    def show(self, text: str) -> None:
        if text == self.last:
            return
        self.last = text
        print(f"\r\033[K{text}" if self.tty else text, end="" if self.tty else "\n", flush=True)

    def done(self) -> None:
        if self.tty and self.last:
            print(flush=True)
        self.last = ""


def wait_for_worker(client: httpx.Client, up: subprocess.Popen, log: Path, status: Status) -> bool:
    started = time.monotonic()
    while time.monotonic() - started < STARTUP_SECONDS:
        if up.poll() is not None:
            status.done()
            print(log.read_text()[-3000:], file=sys.stderr)
            return False
        try:
            if client.get("/pools", timeout=2).json()["explore"]["workers"] >= 1:
                status.show(
                    f"the farm is up: one explore worker holds the tiny model ({time.monotonic() - started:.0f} s)"
                )
                status.done()
                return True
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        status.show(f"starting the farm: the API, the release loop and a worker loading its model ... "
                    f"{time.monotonic() - started:.0f} s")  # fmt: skip
        time.sleep(0.5)
    status.done()
    print(f"the farm did not start in {STARTUP_SECONDS} s; see {log}", file=sys.stderr)
    return False


def short(take: dict) -> str:
    prompt = take["params"].get("prompt") or ""
    cut = prompt[:28] + ("…" if len(prompt) > 28 else "")
    return f"{cut} (seed {take['params'].get('seed')})"


def summary(takes: list[dict]) -> str:
    """'4 takes: 1 done · rendering a singer on a dark stage… (seed 2), step 3/8 · 2 waiting'"""
    parts = [f"{len(takes)} takes"]
    counts: dict[str, int] = {}
    for t in takes:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    if counts.get("done"):
        parts.append(f"{counts['done']} done")
    for t in takes:
        if t["state"] == "running":
            p = t["progress"]
            parts.append(f"rendering {short(t)}, " + (f"step {p['step']}/{p['total']}" if p["total"] else "starting"))
    waiting = counts.get("queued", 0) + counts.get("released", 0)
    if waiting:
        parts.append(f"{waiting} waiting")
    for state in ("failed", "canceled"):
        if counts.get(state):
            parts.append(f"{counts[state]} {state}")
    return parts[0] + ": " + " · ".join(parts[1:])


def watch(client: httpx.Client, batch_id: str, status: Status) -> list[dict]:
    """Each take's state and step, live, until the batch is finished; its takes."""
    while True:
        batch = client.get(f"/batches/{batch_id}").json()
        takes = [client.get(f"/takes/{t}").json() for t in batch["take_ids"]]
        status.show(summary(takes))
        if batch["finished"]:
            status.done()
            return takes
        time.sleep(0.5)


def serve_until_interrupted() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def main() -> int:
    out = ROOT / "out" / "demo"
    out.mkdir(parents=True, exist_ok=True)
    data_dir = os.environ.get("FARM_DATA_DIR", str(ROOT / "out" / "demo-farm"))
    env = {**os.environ, "FARM_DATA_DIR": data_dir}
    token = demo_user(env)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env.update(FARM_API_TOKEN=token, FARM_API=api)
    log_path = out / "farm-up.log"
    log = open(log_path, "w")
    up = subprocess.Popen(
        [sys.executable, "-m", "farm.cli", "up", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    status = Status()
    client = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    try:
        print(f"starting the farm on {api} (its log: {log_path})", flush=True)
        if not wait_for_worker(client, up, log_path, status):
            return 1
        submitted = subprocess.run(
            [sys.executable, "-m", "farm.cli", "submit", str(ROOT / "examples" / "batch.yaml"), "--no-wait"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        print(submitted.stdout, end="", flush=True)
        found = re.search(r"^batch (\w+):", submitted.stdout, re.M)
        if submitted.returncode != 0 or not found:
            print(submitted.stderr[-2000:], end="", file=sys.stderr)
            return submitted.returncode or 1
        takes = watch(client, found.group(1), status)
        failed = 0
        for take in takes:
            prompt, seed = take["params"].get("prompt", ""), take["params"].get("seed")
            if not take["outputs"]:
                failed += 1
                print(f"  {take['state']}: {prompt!r} seed {seed}: {take['error_message'] or ''}")
                continue
            clip = take["outputs"]["clip"]
            path = out / clip_name(take)
            path.write_bytes(client.get(clip if clip.startswith("http") else api + clip).content)
            print(f"  {path.relative_to(ROOT)}  {prompt!r}, seed {seed} (take {take['id'][:8]})")
        print(f"\nthe dashboard: {api}/  sign in as {DEMO_USER} / {DEMO_PASSWORD}")
        if sys.stdin.isatty() and os.environ.get("DEMO_SERVE", "1") != "0":
            print("serving it until Ctrl-C ...", flush=True)
            serve_until_interrupted()
        else:
            print(f"the farm stops now; to open the dashboard again: FARM_DATA_DIR={data_dir} .venv/bin/farm up")
        return 1 if failed else 0
    finally:
        client.close()
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGINT)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
        log.close()
        print("the farm is stopped")


if __name__ == "__main__":
    raise SystemExit(main())
