"""The GPU idle gap between two consecutive takes on a warm explore worker.

Runs the real worker runtime (claim in SQL, fetch inputs, render, MP4, upload, manifest,
record) on SQLite and a local object store, take after take as Celery would deliver them,
and measures the time from the end of one take's GPU work (VAE decode) to the start of the
next take's GPU work, with finishing inline (baseline) and on the finisher thread (ours).

Usage: python benchmarks/worker_gap.py [--full] [--steps 5] [--takes 4] [--out gap.json]
  --full: the full-size HuMo-1.7B with random weights on the GPU (else the tiny model here).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

from farm.batches import create_batch
from farm.db import session_factory, transaction
from farm.migrate import upgrade
from farm.settings import Settings
from farm.storage import LocalStorage, asset_key
from farm.tables import Asset
from models.probe import file_sha256
from workers.explore import ExploreRuntime


def instrument(pipe) -> list[tuple[float, float]]:
    """Record (start, end) of each render's GPU work: from encoding to the end of the decode."""
    spans: list[tuple[float, float]] = []
    render = pipe.render

    def timed_render(*args, **kwargs):
        start = time.perf_counter()
        result = render(*args, **kwargs)  # its last stage synchronises the device
        spans.append((start, time.perf_counter()))
        return result

    pipe.render = timed_render
    return spans


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--takes", type=int, default=4)
    parser.add_argument("--out", default="worker_gap.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gap-"))
    url = f"sqlite:///{tmp / 'farm.db'}"
    upgrade(url)
    checkpoint = "humo-1.7b" if args.full else "tiny"
    settings = Settings(
        data_dir=tmp,
        database_url=url,
        storage_url=f"file://{tmp / 'objects'}",
        explore_checkpoint=checkpoint,
        progress_interval=0.5,
    )
    storage = LocalStorage(tmp / "objects")
    runtime = ExploreRuntime(settings, storage=storage)
    if args.full:
        from gpu_render import our_dit, random_pipeline

        from models.specs import HUMO_1_7B

        runtime.pipeline = random_pipeline(HUMO_1_7B, our_dit(HUMO_1_7B).compile_blocks(), tmp)
    else:
        from models import load_pipeline

        runtime.pipeline = load_pipeline("tiny")
    runtime.heartbeat.start()
    spans = instrument(runtime.pipeline)
    from gpu_render import demo_media

    image, audio = demo_media(tmp)
    shas = {}
    with transaction(session_factory(url)) as s:
        for kind, path in (("image", image), ("audio", audio)):
            sha = file_sha256(Path(path))
            storage.put_file(asset_key(sha, kind), Path(path), "application/octet-stream")
            s.add(
                Asset(
                    sha256=sha,
                    kind=kind,
                    size=Path(path).stat().st_size,
                    key=asset_key(sha, kind),
                    filename=Path(path).name,
                    media_format=kind,
                )
            )
            shas[kind] = sha

    def takes(n: int, label: str) -> list[str]:
        body = {
            "defaults": {"checkpoint": checkpoint, "mode": "TIA", "steps": args.steps, **shas},
            "takes": [{"prompt": f"{label} take", "seed": i} for i in range(n)],
        }  # one prompt: cached encodings
        with transaction(session_factory(url)) as s:
            batch = create_batch(s, body, "bench", settings)
            s.flush()
            return [t.id for t in batch.takes]

    results = {}
    runtime.run(takes(1, "warm-up")[0])  # compile, caches, cuDNN autotuning
    runtime.drain()
    for background in (False, True):
        runtime.settings.finish_in_background = background
        ids = takes(args.takes, "background" if background else "inline")
        spans.clear()
        clock = time.perf_counter()
        outcomes = [runtime.run(take_id) for take_id in ids]
        runtime.drain()
        wall = time.perf_counter() - clock
        gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:])]
        label = "finish on a thread (ours)" if background else "finish inline (baseline)"
        results[label] = {
            "takes": len(ids),
            "gap_ms_median": statistics.median(gaps) * 1e3,
            "gap_ms_max": max(gaps) * 1e3,
            "gpu_busy_s": sum(b - a for a, b in spans),
            "wall_s": wall,
            "outcomes": outcomes,
        }
    runtime.stop()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    Path(args.out).write_text(
        json.dumps(
            {"meta": {"device": device, "checkpoint": checkpoint, "steps": args.steps}, "results": results}, indent=2
        )
    )
    print(f"\n{device}  {checkpoint}, {args.steps} steps, {args.takes} takes per mode")
    print(f"{'mode':30s} {'gap p50 ms':>11s} {'gap max ms':>11s} {'GPU busy s':>11s} {'wall s':>8s}")
    for name, r in results.items():
        print(
            f"{name:30s} {r['gap_ms_median']:11.1f} {r['gap_ms_max']:11.1f} {r['gpu_busy_s']:11.2f} {r['wall_s']:8.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
