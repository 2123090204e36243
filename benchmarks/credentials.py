"""Signing time per clip: the finisher's C2PA step (workers/credentials.py) on MP4s the size
of each checkpoint's clips, and reading + validating them back (the take page, `farm verify`).

    python benchmarks/credentials.py [--repeats 20] [--machine 2core-vm]

Clips are H.264 (libx264 through PyAV) of noise frames (the worst case for the encoder, so
the largest files) at tiny's 48x64, the 1.7B's 480x832 and the 17B's 720x1280, 97 frames
each; signing hashes the whole file, so its time follows the file's size. Prints a table
and writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from farm.credentials import manifest_digest, read
from farm.settings import Settings
from workers.credentials import ClipSigner

SIZES = {"tiny 48x64": (48, 64), "humo-1.7b 480x832": (480, 832), "humo-17b 720x1280": (720, 1280)}
FRAMES, FPS = 97, 25


def write_clip(path: Path, height: int, width: int) -> None:
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        for _ in range(FRAMES):
            frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--machine", default=platform.node() or "host", help="names the results file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings = Settings(data_dir=folder / "farm")
        signer = ClipSigner(settings)
        consent = {"image": {"records": [{"id": "r" * 32, "sha256": "d" * 64}]}, "audio": {"records": []}}
        definition = signer.definition("t" * 32, manifest_digest({"take_id": "t"}), consent, "humo-1.7b", "e" * 64)
        rows = []
        for name, (height, width) in SIZES.items():
            clip = folder / f"{height}x{width}.mp4"
            write_clip(clip, height, width)
            signs, reads = [], []
            for i in range(args.repeats):
                signed = folder / f"signed-{i}.mp4"
                signs.append(signer.sign(clip, signed, definition))
                started = time.perf_counter()
                assert read(signed, settings).ok
                reads.append(time.perf_counter() - started)
            rows.append(
                {
                    "clip": name,
                    "frames": FRAMES,
                    "bytes": clip.stat().st_size,
                    "sign_seconds_median": statistics.median(signs),
                    "sign_seconds_max": max(signs),
                    "read_validate_seconds_median": statistics.median(reads),
                    "repeats": args.repeats,
                }
            )
    print(f"{'clip':22s} {'MiB':>7s} {'sign s (median)':>16s} {'sign s (max)':>13s} {'read+validate s':>16s}")
    for r in rows:
        print(
            f"{r['clip']:22s} {r['bytes'] / 2**20:7.2f} {r['sign_seconds_median']:16.4f} "
            f"{r['sign_seconds_max']:13.4f} {r['read_validate_seconds_median']:16.4f}"
        )
    day = datetime.now(UTC).date().isoformat()
    out = Path(args.out) / f"credentials_{args.machine}_{day}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": _cpus(), "date": day, "rows": rows}, indent=2))
    print(f"wrote {out}")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
