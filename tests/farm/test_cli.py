"""`farm` CLI errors are one clear line, never a traceback."""

from __future__ import annotations

import subprocess
import sys

from ..services import ROOT


def farm(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "farm.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_unreachable_api_and_missing_file(tmp_path):
    batch = tmp_path / "b.yaml"
    batch.write_text("takes:\n  - {prompt: p, mode: T}\n")
    r = farm("submit", str(batch), "--api", "http://127.0.0.1:9")
    assert r.returncode == 2 and "cannot reach the farm at http://127.0.0.1:9" in r.stderr
    assert "Traceback" not in r.stderr
    r = farm("submit", str(tmp_path / "nope.yaml"))
    assert r.returncode == 1 and "No such file" in r.stderr and "Traceback" not in r.stderr


def test_a_bad_take_names_its_field(tmp_path, api, tokens):
    batch = tmp_path / "b.yaml"
    batch.write_text("takes:\n  - {prompt: p, mode: T}\n  - {prompt: q, mode: T, frames: 20}\n")
    r = farm("submit", str(batch), "--api", api, "--no-wait")
    assert r.returncode == 1 and "FARM_API_TOKEN" in r.stderr and "Traceback" not in r.stderr  # no token
    r = farm("submit", str(batch), "--api", api, "--no-wait", "--token", tokens["ana"])
    assert r.returncode == 1
    assert r.stderr.strip() == "error: takes[1].frames: 20 is not of the form 4k+1 (e.g. 21)"
    media = tmp_path / "m.yaml"
    media.write_text("takes:\n  - {prompt: p, mode: TI, image: missing.png}\n")
    r = farm("submit", str(media), "--api", api, "--token", tokens["ana"])
    assert r.returncode == 1 and "image: file not found" in r.stderr
