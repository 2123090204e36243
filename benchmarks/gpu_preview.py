"""What live previews cost a render on the GPU: HuMo-1.7B at 480x832, 97 frames, TIA (4 passes
a step), compiled, full-size random bf16 weights.

In one run: the preview map's fit to the VAE; one preview made (x0 from the step's prediction,
the 16x3 map, the copy to the host, the JPEG); and the same steps denoised without previews
(the baseline), with one after every step (the worst case), and at the workers' rate (one
every FARM_PREVIEW_INTERVAL = 5 s). Prints a table and writes JSON. Usage:
  python benchmarks/gpu_preview.py [--steps 8] [--out gpu_preview.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_render import DEVICE, our_dit, random_init_, wall

from models.guidance import Scales
from models.pipeline import Inputs, Pipeline
from models.request import ResolvedRequest
from models.specs import HUMO_1_7B
from models.vae import VideoVAE, build_vae

INTERVAL = 5.0  #: farm.settings.Settings.preview_interval's default


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", default="gpu_preview.json")
    args = parser.parse_args()
    spec, h, w, f = HUMO_1_7B, 480, 832, 26
    with torch.device("meta"):
        vae = build_vae(spec.vae)
    pipe = Pipeline(spec, our_dit(spec).compile_blocks(), VideoVAE(random_init_(vae)), None, None, device=DEVICE)
    cfg = spec.dit
    g = torch.Generator(device=DEVICE).manual_seed(2)
    req = ResolvedRequest(
        spec=spec, prompt="p", negative_prompt="n", mode="TIA", seed=0, image="x", audio="y", width=w, height=h,
        frames=4 * (f - 2) + 1, steps=args.steps, shift=5.0,
        scales=Scales(spec.guidance.text, spec.guidance.audio, spec.guidance.image),
    )  # fmt: skip
    inputs = Inputs(
        text=torch.randn(1, cfg.text_len, cfg.text_dim, device=DEVICE, generator=g),
        negative=torch.randn(1, cfg.text_len, cfg.text_dim, device=DEVICE, generator=g),
        audio=torch.randn(1, f, cfg.audio_window, cfg.audio_blocks, cfg.audio_channels, device=DEVICE, generator=g),
        reference=torch.randn(16, 1, h // 8, w // 8, device=DEVICE, generator=g),
        samples=None,
        zero_latents=None,
    )
    results: dict[str, dict] = {}
    results["preview map fit (once per pipeline)"] = {"seconds": wall(lambda: pipe.preview_map)}
    pipe.denoise(req.with_(steps=1), inputs)  # compile, outside the timings
    latents = torch.randn(16, f - 1, h // 8, w // 8, device=DEVICE, generator=g)
    for _ in range(3):
        pipe.preview_map.jpeg(latents)
    made = [wall(lambda: pipe.preview_map.jpeg(latents)) for _ in range(20)]
    jpeg = pipe.preview_map.jpeg(latents)
    results["one preview made (map, copy to host, JPEG)"] = {"seconds": statistics.median(made), "bytes": len(jpeg)}

    def every_step(i, n, make):
        make()

    last = [0.0]

    def at_interval(i, n, make):
        if time.monotonic() - last[0] >= INTERVAL:
            last[0] = time.monotonic()
            make()

    variants = {"no previews (baseline)": None, "a preview after every step": every_step,
                f"a preview every {INTERVAL:g} s (the workers' rate)": at_interval}  # fmt: skip
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(2):  # interleaved, so drift hits every variant alike
        for name, hook in variants.items():
            last[0] = 0.0
            runs[name].append(wall(lambda hook=hook: pipe.denoise(req, inputs, on_preview=hook)))
    base = min(runs["no previews (baseline)"])
    for name, times in runs.items():
        best = min(times)
        results[f"denoise {args.steps} steps: {name}"] = {
            "seconds": best,
            "runs": times,
            "per_step": best / args.steps,
            "overhead": best / base - 1,
        }
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "python": platform.python_version()}
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"\n{meta['device']}  torch {meta['torch']}")
    print(f"{'measurement':64s} {'seconds':>9s}  notes")
    for name, r in results.items():
        notes = {k: round(v, 5) if isinstance(v, float) else v for k, v in r.items() if k not in ("seconds", "runs")}
        print(f"{name:64s} {r['seconds']:9.4f}  {json.dumps(notes)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
