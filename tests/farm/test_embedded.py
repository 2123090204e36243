"""The embedded defaults: `farm up` with no services, then `farm submit` until the clips exist."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from ..services import ROOT, free_port, wait_for


def test_farm_up_and_submit_on_embedded_defaults(tmp_path, weights):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FARM_", "AWS_"))}
    env.update(FARM_DATA_DIR=str(tmp_path / "farm"), FARM_WEIGHTS_DIR=str(weights))
    port = free_port()
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("media"))
    subprocess.run(
        [sys.executable, "examples/make_media.py", "examples/media"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    made = subprocess.run(
        [sys.executable, "-m", "farm.cli", "user", "create", "demo", "--role", "producer", "--no-password", "--token"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    token = made.stdout.split()[-1]
    auth = {"Authorization": f"Bearer {token}"}
    assert token.startswith("farm_") and "user demo created (producer)" in made.stdout
    log = open(tmp_path / "up.log", "w")
    up = subprocess.Popen(
        [sys.executable, "-m", "farm.cli", "up", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        api = f"http://127.0.0.1:{port}"

        def worker_ready():
            assert up.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            try:
                return httpx.get(f"{api}/pools", timeout=5, headers=auth).json()["explore"]["workers"] == 1
            except httpx.HTTPError:
                return False

        wait_for(worker_ready, 180, "farm up to serve and its worker to register")
        done = subprocess.run(
            [sys.executable, "-m", "farm.cli", "submit", str(tmp_path / "examples" / "batch.yaml"), "--api", api],
            cwd=ROOT,
            env={**env, "FARM_API_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        lines = [line for line in done.stdout.splitlines() if " done " in line]
        assert len(lines) == 4
        for line in lines:
            assert httpx.get(line.split()[-1]).status_code == 401  # local objects are served to users only
            clip = httpx.get(line.split()[-1], headers=auth)
            assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4" and len(clip.content) > 1000
        # nothing but files: the database, the broker folder and the objects live under the data dir
        data = Path(tmp_path / "farm")
        assert (
            (data / "farm.db").is_file() and (data / "broker").is_dir() and any((data / "objects" / "takes").iterdir())
        )
    finally:
        up.terminate()
        up.wait(120)
        log.close()
        try:  # anything farm up left behind (it ends its children; this is the belt to those braces)
            os.killpg(up.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
