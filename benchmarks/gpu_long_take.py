"""What a long take costs on the GPU: HuMo-1.7B at 480x832, TIA (4 passes a step), compiled,
full-size random bf16 weights, windows of 97 frames overlapping by 5 latent frames (the default).

In one run: the cost of windowing (a 3-window take of 257 frames against 3 single 97-frame
clips, the same steps: seconds per window, per clip, and the take's time over the clips'); the
denoise's peak GPU memory at 1 window and at 10 (817 frames, at --long-steps: memory does not
depend on steps); the streamed decode of 1 and of 10 windows' latents (seconds, peak GPU memory,
host RSS growth). Prints a table and writes JSON after every measurement. Usage:
  python benchmarks/gpu_long_take.py [--steps 8] [--long-steps 2] [--out gpu_long_take.json]
  python benchmarks/gpu_long_take.py --device cpu --tiny   # smoke run of the code paths (tiny spec, 64x48)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_render import random_init_

from models.dit import HumoDiT
from models.guidance import Scales
from models.pipeline import Inputs, Pipeline
from models.request import ResolvedRequest
from models.specs import HUMO_1_7B, TINY, ModelSpec
from models.vae import VideoVAE, build_vae
from models.windows import DEFAULT_OVERLAP

GIB = 2**30


def take_frames(spec: ModelSpec, windows: int, overlap: int = DEFAULT_OVERLAP) -> int:
    """Video frames of a take of exactly `windows` full-length windows."""
    full = spec.window_latents
    latents = full + (windows - 1) * (full - overlap)
    return spec.vae.stride[0] * (latents - 1) + 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8, help="steps of the 3-window take and the single clips")
    parser.add_argument("--long-steps", type=int, default=2, help="steps of the 10-window take (memory, not speed)")
    parser.add_argument("--out", default="gpu_long_take.json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the tiny spec at 64x48: a smoke run, not a benchmark")
    parser.add_argument("--eager", action="store_true", help="no torch.compile (a short run: the ratios hold)")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    spec = TINY if args.tiny else HUMO_1_7B
    h, w = spec.height, spec.width  # 480x832 full size, 48x64 tiny
    dtype = torch.bfloat16 if cuda else torch.float32  # bf16 on a CPU is slow and proves nothing more

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def reset_peak() -> float | None:
        """Zero the peak; returns what is allocated now (weights, latents held), GiB."""
        if not cuda:
            return None
        sync()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / GIB

    def peak() -> float | None:
        return torch.cuda.max_memory_allocated(device) / GIB if cuda else None

    def rss() -> tuple[float, float]:
        """Host memory (GiB): the process's peak (maxrss, KiB on Linux) and its current resident set."""
        page = os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/statm") as f:
            resident = int(f.read().split()[1]) * page
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, resident / GIB

    with torch.device("meta"):
        dit, vae = HumoDiT(spec.dit), build_vae(spec.vae)
    dit = random_init_(dit, device=device, dtype=dtype)
    if cuda and not args.eager:  # as the workers run it; on a CPU inductor would only add minutes
        dit.compile_blocks()
    pipe = Pipeline(spec, dit, VideoVAE(random_init_(vae, device=device, dtype=dtype)), None, None, device=device)  # type: ignore[arg-type]
    cfg = spec.dit
    g = torch.Generator(device=device).manual_seed(2)
    base = Inputs(
        text=torch.randn(1, cfg.text_len, cfg.text_dim, device=device, generator=g),
        negative=torch.randn(1, cfg.text_len, cfg.text_dim, device=device, generator=g),
        audio=torch.empty(0),
        reference=torch.randn(16, 1, h // 8, w // 8, device=device, generator=g),
        samples=None,
        zero_latents=None,
    )

    def request(frames: int, steps: int) -> ResolvedRequest:
        return ResolvedRequest(
            spec=spec, prompt="p", negative_prompt="n", mode="TIA", seed=0, image="x", audio="y", width=w, height=h,
            frames=frames, steps=steps, shift=5.0,
            scales=Scales(spec.guidance.text, spec.guidance.audio, spec.guidance.image),
        )  # fmt: skip

    def inputs(req: ResolvedRequest) -> Inputs:
        """The whole take's audio windows [1, F+1, 8, 5, A]: denoise_windows cuts each window's from them."""
        shape = (1, req.latent_frames + 1, cfg.audio_window, cfg.audio_blocks, cfg.audio_channels)
        return replace(base, audio=torch.randn(*shape, device=device, generator=g))

    single = request(spec.window_frames, args.steps)
    take3 = request(take_frames(spec, 3), args.steps)
    take10 = request(take_frames(spec, 10), args.long_steps)
    for req, n in ((single, 1), (take3, 3), (take10, 10)):
        wins = req.windows
        if len(wins) != n or any(win.length != spec.window_latents for win in wins):
            raise AssertionError(f"{req.frames} frames plan as {wins}, not {n} full windows")

    meta = {
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "spec": spec.name,
        "width": w,
        "height": h,
        "dtype": str(dtype).removeprefix("torch."),
        "compiled": dit.blocks_compiled,
        "mode": "TIA",
        "steps": args.steps,
        "long_steps": args.long_steps,
        "overlap": DEFAULT_OVERLAP,
        "window_latents": spec.window_latents,
    }
    results: dict[str, dict] = {}
    summary: dict[str, float | None] = {}  #: the issue's numbers, side by side

    def save() -> None:
        Path(args.out).write_text(json.dumps({"meta": meta, "summary": summary, "results": results}, indent=2))

    def run_take(req: ResolvedRequest) -> tuple[torch.Tensor, dict]:
        """A take through denoise_windows, its seconds in all and per window (on_window's marks)."""
        ins = inputs(req)
        marks: list[float] = []

        def on_window(i: int, n: int, latents: torch.Tensor) -> None:
            sync()
            marks.append(time.perf_counter())

        resident = reset_peak()
        start = time.perf_counter()
        latents = pipe.denoise_windows(req, ins, on_window=on_window)
        sync()
        seconds = time.perf_counter() - start
        per_window = [b - a for a, b in zip([start, *marks], marks)]
        return latents, {
            "seconds": seconds,
            "frames": req.frames,
            "latent_frames": req.latent_frames,
            "windows": len(req.windows),
            "steps": req.steps,
            "per_window": per_window,
            "seconds_per_window": seconds / len(req.windows),
            "seconds_per_step": seconds / (len(req.windows) * req.steps),
            "latents": list(latents.shape),
            "resident_gib": resident,
            "peak_gib": peak(),
        }

    def decode(latents: torch.Tensor) -> dict:
        """The streamed decode of a take's latents: seconds, GPU peak, host memory grown by the frames."""
        max_before, now_before = rss()
        resident = reset_peak()
        start = time.perf_counter()
        frames = pipe.decode_frames(latents)
        sync()
        seconds = time.perf_counter() - start
        max_after, now_after = rss()
        out = {
            "seconds": seconds,
            "latents": list(latents.shape),
            "frames_shape": list(frames.shape),
            "frames_gib": frames.nbytes / GIB,
            "resident_gib": resident,
            "peak_gib": peak(),
            "host_maxrss_growth_gib": max_after - max_before,
            "host_rss_growth_gib": now_after - now_before,
        }
        del frames
        return out

    try:
        sync()
        start = time.perf_counter()
        pipe.denoise(single.with_(steps=1), inputs(single))  # compile, outside the timings
        sync()
        results["warm-up: compile + 1 step of one clip"] = {"seconds": time.perf_counter() - start}
        save()

        # 1. windowing's cost: 3 clips alone, then the same 3 windows as one take
        runs, peaks, resident = [], [], None
        single_inputs = inputs(single)
        for _ in range(3):
            resident = reset_peak()
            start = time.perf_counter()
            pipe.denoise(single, single_inputs)
            sync()
            runs.append(time.perf_counter() - start)
            peaks.append(peak())
        clips = sum(runs)
        results[f"3 single clips ({single.frames} frames), {args.steps} steps each"] = {
            "seconds": clips,
            "runs": runs,
            "seconds_per_window": clips / 3,
            "seconds_per_step": clips / (3 * args.steps),
            "frames": single.frames,
            "latent_frames": single.latent_frames,
            "steps": args.steps,
            "resident_gib": resident,
            "peak_gib": max((p for p in peaks if p is not None), default=None),
        }
        summary["seconds_per_single_clip"] = clips / 3
        summary["denoise_peak_gib_1_window"] = results[next(reversed(results))]["peak_gib"]
        save()
        _, take = run_take(take3)
        take["ratio_to_single_clips"] = take["seconds"] / clips
        results[f"3-window take ({take3.frames} frames), {args.steps} steps a window"] = take
        summary["seconds_per_window"] = take["seconds_per_window"]
        summary["windowing_ratio"] = take["ratio_to_single_clips"]
        save()

        # 2. memory at 10 windows (1 window's is the single clips' peak above)
        latents, take = run_take(take10)
        results[f"10-window take ({take10.frames} frames), {args.long_steps} steps a window"] = take
        summary["denoise_peak_gib_10_windows"] = take["peak_gib"]
        save()

        # 3. the streamed decode, 1 window's latents against 10's
        pipe.decode_frames(latents[:, :2])  # cuDNN's algorithm search for both chunk shapes, untimed
        one = latents[:, : spec.window_latents].clone()
        results[f"streamed decode, 1 window ({single.frames} frames)"] = r1 = decode(one)
        summary["decode_peak_gib_1_window"] = r1["peak_gib"]
        save()
        results[f"streamed decode, 10 windows ({take10.frames} frames)"] = r10 = decode(latents)
        summary["decode_seconds_10_windows"] = r10["seconds"]
        summary["decode_peak_gib_10_windows"] = r10["peak_gib"]
        save()
    finally:
        save()
        print(f"\n{meta['device']}  torch {meta['torch']}  {spec.name} {w}x{h} {meta['dtype']} TIA")
        print(f"{'measurement':52s} {'seconds':>9s} {'s/window':>9s} {'peak GiB':>9s}  notes")
        shown = ("seconds", "seconds_per_window", "peak_gib", "runs", "per_window", "latents", "frames_shape")
        for name, r in results.items():
            per = r.get("seconds_per_window")
            mem = r.get("peak_gib")
            notes = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items() if k not in shown}
            print(
                f"{name:52s} {r['seconds']:9.3f} {'' if per is None else f'{per:9.3f}':>9s} "
                f"{'' if mem is None else f'{mem:9.2f}':>9s}  {json.dumps(notes)}"
            )
        print("summary: " + json.dumps({k: v if v is None else round(v, 4) for k, v in summary.items()}))
        print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
