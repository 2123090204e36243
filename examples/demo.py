"""`make demo`: start the farm on embedded defaults, submit examples/batch.yaml, wait for
the clips, copy them to out/demo/, stop the farm. Needs no services and no GPU."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEMO_PASSWORD = "demo-password"


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
        [*farm, "create", "demo", "--role", "producer", "--password-stdin", "--token"],
        cwd=ROOT,
        env=env,
        input=f"{DEMO_PASSWORD}\n",
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:  # a second run: the user exists; a fresh token will do
        made = subprocess.run([*farm, "token", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return made.stdout.split()[-1]


def main() -> int:
    out = ROOT / "out" / "demo"
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FARM_DATA_DIR": os.environ.get("FARM_DATA_DIR", str(ROOT / "out" / "demo-farm"))}
    token = demo_user(env)
    env["FARM_API_TOKEN"] = token
    auth = {"Authorization": f"Bearer {token}"}
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    log = open(out / "farm-up.log", "w")
    up = subprocess.Popen(
        [sys.executable, "-m", "farm.cli", "up", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        print(f"starting the farm on {api} (log: {out / 'farm-up.log'}) ...", flush=True)
        deadline = time.monotonic() + 300
        while True:
            if up.poll() is not None:
                print((out / "farm-up.log").read_text()[-3000:], file=sys.stderr)
                return 1
            try:
                if httpx.get(f"{api}/pools", timeout=2, headers=auth).json()["explore"]["workers"] >= 1:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                print("the farm did not start in 300 s", file=sys.stderr)
                return 1
            time.sleep(0.5)
        result = subprocess.run(
            [sys.executable, "-m", "farm.cli", "submit", str(ROOT / "examples" / "batch.yaml"), "--api", api],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        print(result.stdout, end="")
        print(result.stderr[-2000:], end="", file=sys.stderr)
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "done":
                (out / f"{parts[0]}.mp4").write_bytes(httpx.get(parts[2], headers=auth).content)
        print(f"clips copied to {out}")
        return result.returncode
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
        log.close()


if __name__ == "__main__":
    raise SystemExit(main())
