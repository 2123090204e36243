import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args, weights):
    env = {**os.environ, "HUMO_WEIGHTS": str(weights)}
    return subprocess.run(
        [sys.executable, "-m", "models", "render", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_renders_with_a_progress_bar(weights, media, tmp_path):
    out = tmp_path / "take.mp4"
    proc = run_cli(
        "--checkpoint",
        "tiny",
        "--prompt",
        "a presenter",
        "--image",
        str(media["image"]),
        "--audio",
        str(media["audio"]),
        "-o",
        str(out),
        weights=weights,
    )
    assert proc.returncode == 0, proc.stderr
    assert "4/4" in proc.stderr  # the progress bar reached the last step
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["audio"] == "trimmed" and Path(summary["output"]) == out
    assert out.stat().st_size > 0 and out.with_suffix(".jpg").is_file()


def test_cli_bad_input_is_one_clear_line(weights, tmp_path):
    proc = run_cli("--prompt", "p", "--frames", "20", "-o", str(tmp_path / "x.mp4"), weights=weights)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: frames: 20 is not of the form 4k+1 (e.g. 21)"
    assert "Traceback" not in proc.stderr
