"""How much memory a render reaches at a checkpoint's take limits, measured on the CPU.

Each case renders one take with the engine (`python -m models render`, what a worker runs
for a take) in a fresh process on the tiny checkpoint, and reads that process's peak resident
memory (ru_maxrss from wait4): the checkpoint's default take (the baseline), the largest take
tiny accepts (`ModelSpec.limits`: 161 frames at 256x192, TIA), and the default take under a
10-hour FLAC (only the clip's span is decoded, so it costs what a short track does), beside
the same file decoded whole (what a worker did before it decoded spans).
Prints a table and writes JSON. Usage: python benchmarks/worker_limits.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.specs import TINY  # noqa: E402


def silent_flac(path: Path, hours: float, rate: int = 16_000) -> Path:
    """A long FLAC that is small on disk: a quiet tone once a minute, silence between."""
    block = rate * 60
    minute = np.zeros(block, np.int16)
    minute[:rate] = (3000 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=rate, layout="mono")
        for _ in range(round(hours * 60)):
            frame = av.AudioFrame.from_ndarray(minute[None], format="s16", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def speech(path: Path, seconds: float, rate: int = 16_000) -> Path:
    """A voiced tone longer than the largest take (examples/make_media's line is shorter): each
    take's audio is trimmed, so every row decodes exactly its span."""
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 180 * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray((x * 32767).astype(np.int16)[None], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    return path


def peak(argv: list[str], out: Path) -> dict:
    """One command in a fresh process, waited for itself so its own peak is read: seconds,
    peak resident MiB and its last line of output."""
    start = time.perf_counter()
    pid = os.posix_spawn(
        sys.executable,
        [sys.executable, *argv],
        {**os.environ, "PYTHONPATH": str(ROOT)},
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 1, str(out), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ],
    )
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv} exited with {os.waitstatus_to_exitcode(status)}")
    last = out.read_text().strip().splitlines()[-1]
    return {"seconds": round(seconds, 1), "peak_mib": round(usage.ru_maxrss / 1024, 1), "said": last}


def render(args: list[str], folder: Path) -> dict:
    """One take, as a worker renders it: its peak and what was done with the audio."""
    argv = ["-m", "models", "render", "--checkpoint", TINY.name, "--prompt", "a presenter speaks", *args]
    row = peak([*argv, "-o", str(folder / "clip.mp4")], folder / "render.out")
    return {**row, "audio": json.loads(row.pop("said"))["audio"]}


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image = folder / "portrait.png"
        Image.new("RGB", (512, 640), (90, 120, 170)).save(image)
        voice = speech(folder / "speech.wav", 7.0)
        long = silent_flac(folder / "ten-hours.flac", 10.0)
        lim = TINY.limits
        # the widest take at full length whose tokens fit: the height follows from the budget
        height = lim.tokens // TINY.tokens(lim.frames, 16, 16) * 16 // (lim.side // 16)
        size = ["--frames", str(lim.frames), "--width", str(lim.side), "--height", str(height)]
        cases = [
            ("default take (baseline)", ["--mode", "TA", "--audio", str(voice)]),
            (
                f"largest take: {lim.frames} frames at {lim.side}x{height}, TIA",
                ["--mode", "TIA", "--image", str(image), "--audio", str(voice), *size],
            ),
            (
                f"default take, 10-hour FLAC ({long.stat().st_size / 2**20:.1f} MiB)",
                ["--mode", "TA", "--audio", str(long)],
            ),
        ]
        rows = [{"case": name, **render(args, folder)} for name, args in cases]
        # the comparison: the same file decoded whole, as a worker did before it decoded spans
        whole = peak(["-c", f"from models.media import load_audio; print(load_audio({str(long)!r}).numel())"],
                     folder / "whole.out")  # fmt: skip
        rows.append({"case": "the 10-hour FLAC decoded whole (the old way)", "audio": "whole", **whole})
        rows[-1].pop("said")
    return {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
        "checkpoint": TINY.name,
        "limits": {"frames": lim.frames, "side": lim.side, "tokens": lim.tokens},
        "rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="out/worker_limits.json")
    args = parser.parse_args()
    result = run()
    base = result["rows"][0]["peak_mib"]
    print(f"{'take':52s} {'audio':>8s} {'seconds':>8s} {'peak MiB':>9s} {'over base':>10s}")
    for r in result["rows"]:
        print(f"{r['case']:52s} {r['audio']:>8s} {r['seconds']:8.1f} {r['peak_mib']:9.1f} {r['peak_mib'] - base:10.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
