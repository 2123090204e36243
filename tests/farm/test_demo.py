"""`make demo` as a newcomer meets it: live progress while the takes render, clips named by
prompt and seed, and the way to the dashboard at the end."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from ..services import ROOT


def test_the_demo_shows_progress_names_clips_and_points_to_the_dashboard(tmp_path, weights):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FARM_", "AWS_"))}
    env.update(
        FARM_DATA_DIR=str(tmp_path / "data"),  # not ./farm: `python -m farm.cli` runs here
        FARM_WEIGHTS_DIR=str(weights),
        DEMO_SERVE="0",
    )
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("media"))
    subprocess.run([sys.executable, "examples/make_media.py", "examples/media"], cwd=tmp_path, env=env, check=True)
    run = subprocess.run(
        [sys.executable, "examples/demo.py"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,  # not a terminal: it stops once the clips are copied
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr[-3000:]
    lines = out.splitlines()
    status = [line for line in lines if line.startswith("4 takes: ")]
    assert status[-1] == "4 takes: 4 done"
    assert any("waiting" in line or "rendering" in line for line in status[:-1])  # shown while they rendered
    clips = sorted(p.name for p in (tmp_path / "out" / "demo").glob("*.mp4"))
    assert clips == [
        "a-presenter-speaks-to-the-camera-in-a-bright-seed1.mp4",
        "a-presenter-speaks-to-the-camera-in-a-bright-seed2.mp4",
        "a-singer-on-a-dark-stage-warm-spotlight-close-up-seed1.mp4",
        "a-singer-on-a-dark-stage-warm-spotlight-close-up-seed2.mp4",
    ]
    assert all((tmp_path / "out" / "demo" / c).stat().st_size > 1000 for c in clips)
    assert lines.index(status[-1]) < min(i for i, line in enumerate(lines) if line.strip().startswith("out/demo/"))
    assert re.search(r"^the dashboard: http://127\.0\.0\.1:\d+/  sign in as demo / demo-password$", out, re.M)
    assert lines[-1] == "the farm is stopped"
