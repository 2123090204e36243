"""GPU benchmark of the HuMo engine at full size, random bf16 weights (no download needed).

Measures, in one run on one GPU:
  - our HuMo-1.7B DiT forward at 480x832, 97 frames (26 latent frames with the reference);
  - the baseline: diffusers' WanTransformer3DModel (Wan2.1-1.3B shape) at the same size;
  - one denoising step of TIA through the real pipeline code (4 guidance passes + sampler);
  - the Wan VAE decode of 97 frames at 480x832;
  - one HuMo-17B forward at 720x1280 (3 passes make a step);
and prints a table, writes JSON, and checks ours is no slower per forward than the baseline.

Usage: python benchmarks/gpu_render.py [--out results.json] [--skip-17b]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.dit import HumoDiT  # noqa: E402
from models.guidance import Scales  # noqa: E402
from models.pipeline import Inputs, Pipeline  # noqa: E402
from models.request import ResolvedRequest  # noqa: E402
from models.specs import HUMO_1_7B, HUMO_17B, DiTConfig, ModelSpec  # noqa: E402
from models.vae import VideoVAE, build_vae  # noqa: E402

DEVICE = torch.device("cuda")
DTYPE = torch.bfloat16


def forward_flops(cfg: DiTConfig, frames: int, height: int, width: int) -> float:
    """Analytic FLOPs of one DiT forward (matmuls and attention; norms are negligible)."""
    L = frames * (height // 16) * (width // 16)
    C, T = cfg.dim, cfg.text_len
    A_tok = frames * cfg.audio_tokens
    per_block = (
        2 * L * C * C * 4  # self-attn q, k, v, o
        + 2 * 2 * L * L * C  # QK^T and PV
        + 2 * L * C * C * 2 + 2 * T * C * C * 2 + 2 * 2 * L * T * C  # text cross-attn
        + 2 * L * C * C * 2 + 2 * A_tok * cfg.audio_dim * C * 2 + 2 * 2 * L * cfg.audio_tokens * C  # audio
        + 2 * L * C * cfg.ffn_dim * 2  # FFN
    )
    embed = 2 * L * C * cfg.in_dim * 4 + 2 * L * C * 64 + 2 * T * (cfg.text_dim * C + C * C)
    return cfg.num_layers * per_block + embed


def timed(fn, warmup: int = 2, repeat: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        out.append(start.elapsed_time(end) / 1000)
    return out


def random_init_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Materialise a meta-built module on the GPU in bf16 with small random weights."""
    module = module.to_empty(device=DEVICE)
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and ("norm" in name or name.endswith("gamma")):
                p.fill_(1.0)
            else:
                p.normal_(0, 0.02, generator=g)
        for b in module.buffers():
            b.zero_()
    return module.to(DTYPE).eval().requires_grad_(False)


def our_dit(spec: ModelSpec) -> HumoDiT:
    with torch.device("meta"):
        dit = HumoDiT(spec.dit)
    return random_init_(dit)


def dit_inputs(spec: ModelSpec, frames: int, height: int, width: int, batch: int = 1):
    cfg = spec.dit
    g = torch.Generator(device=DEVICE).manual_seed(1)
    x = torch.randn(batch, cfg.in_dim, frames, height // 8, width // 8, device=DEVICE, generator=g)
    t = torch.full((batch,), 999, device=DEVICE, dtype=torch.int64)
    text = torch.randn(batch, cfg.text_len, cfg.text_dim, device=DEVICE, generator=g)
    audio = torch.randn(batch, frames, cfg.audio_window, cfg.audio_blocks, cfg.audio_channels, device=DEVICE, generator=g)
    return x, t, text, audio


def bench_ours_forward(spec, frames, height, width, results, label, repeat=5, dit=None):
    dit = dit or our_dit(spec)
    x, t, text, audio = dit_inputs(spec, frames, height, width)
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        times = timed(lambda: dit(x, t, text, audio), warmup=2 if repeat > 2 else 1, repeat=repeat)
    flops = forward_flops(spec.dit, frames, height, width)
    med = statistics.median(times)
    results[label] = {
        "seconds": med, "runs": times, "pflop": flops / 1e15, "tflops_per_s": flops / med / 1e12,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    return dit


def bench_step(dit, spec, frames, height, width, results, label):
    """One full denoising step through Pipeline.denoise: every guidance pass + the sampler."""
    pipe = Pipeline(spec, dit, vae=None, text=None, audio=None, device=DEVICE)
    cfg = spec.dit
    g = torch.Generator(device=DEVICE).manual_seed(2)
    f_lat = frames - 1
    video_frames = 4 * (f_lat - 1) + 1
    req = ResolvedRequest(
        spec=spec, prompt="p", negative_prompt="n", mode="TIA", seed=0, image="x", audio="y",
        width=width, height=height, frames=video_frames, steps=1, shift=5.0,
        scales=Scales(spec.guidance.text, spec.guidance.audio, spec.guidance.image),
    )
    inputs = Inputs(
        text=torch.randn(1, cfg.text_len, cfg.text_dim, device=DEVICE, generator=g),
        negative=torch.randn(1, cfg.text_len, cfg.text_dim, device=DEVICE, generator=g),
        audio=torch.randn(1, frames, cfg.audio_window, cfg.audio_blocks, cfg.audio_channels, device=DEVICE, generator=g),
        reference=torch.randn(16, 1, height // 8, width // 8, device=DEVICE, generator=g),
        samples=None,
        zero_latents=torch.randn(16, frames, height // 8, width // 8, device=DEVICE, generator=g),
    )
    torch.cuda.reset_peak_memory_stats()
    times = timed(lambda: pipe.denoise(req, inputs), warmup=1, repeat=3)
    from models.guidance import passes_for

    n_passes = len(passes_for(spec, "TIA", 999))
    med = statistics.median(times)
    flops = n_passes * forward_flops(cfg, frames, height, width)
    results[label] = {
        "seconds": med, "runs": times, "passes": n_passes, "tflops_per_s": flops / med / 1e12,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }


def bench_diffusers_baseline(frames, height, width, results):
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        model = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
            text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6,
        )
    model = random_init_(model)
    g = torch.Generator(device=DEVICE).manual_seed(1)
    x = torch.randn(1, 16, frames, height // 8, width // 8, device=DEVICE, generator=g, dtype=DTYPE)
    t = torch.full((1,), 999, device=DEVICE, dtype=torch.int64)
    text = torch.randn(1, 512, 4096, device=DEVICE, generator=g, dtype=DTYPE)
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        times = timed(lambda: model(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False))
    med = statistics.median(times)
    # the same analytic count without the audio branch
    cfg = HUMO_1_7B.dit
    L = frames * (height // 16) * (width // 16)
    audio_flops = cfg.num_layers * (2 * L * cfg.dim * cfg.dim * 2 + 2 * frames * 16 * cfg.audio_dim * cfg.dim * 2 + 2 * 2 * L * 16 * cfg.dim)
    flops = forward_flops(cfg, frames, height, width) - audio_flops
    results["diffusers Wan-1.3B forward (baseline)"] = {
        "seconds": med, "runs": times, "pflop": flops / 1e15, "tflops_per_s": flops / med / 1e12,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    del model
    torch.cuda.empty_cache()


def bench_vae_decode(frames, height, width, results):
    with torch.device("meta"):
        vae = build_vae(HUMO_1_7B.vae)
    vae = VideoVAE(random_init_(vae))
    z = torch.randn(1, 16, frames, height // 8, width // 8, device=DEVICE)
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        times = timed(lambda: vae.decode(z), warmup=1, repeat=2)
    results["Wan VAE decode, 97 frames"] = {
        "seconds": statistics.median(times), "runs": times, "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    del vae
    torch.cuda.empty_cache()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu_render.json")
    parser.add_argument("--skip-17b", action="store_true")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    results: dict[str, dict] = {}
    h480, w480, f = 480, 832, 26  # 97 frames -> 25 latent frames + 1 reference frame

    bench_diffusers_baseline(f, h480, w480, results)
    dit = bench_ours_forward(HUMO_1_7B, f, h480, w480, results, "humo-1.7b forward (ours, eager)")
    bench_step(dit, HUMO_1_7B, f, h480, w480, results, "humo-1.7b TIA step (eager)")
    clock = time.perf_counter()
    dit.compile_blocks()
    with torch.no_grad():
        x, t, text, audio = dit_inputs(HUMO_1_7B, f, h480, w480)
        dit(x, t, text, audio)
        torch.cuda.synchronize()
    results["compile (first forward)"] = {"seconds": time.perf_counter() - clock, "peak_gib": 0.0}
    bench_ours_forward(HUMO_1_7B, f, h480, w480, results, "humo-1.7b forward (ours, compiled)", dit=dit)
    bench_step(dit, HUMO_1_7B, f, h480, w480, results, "humo-1.7b TIA step (compiled)")
    del dit
    torch.cuda.empty_cache()
    bench_vae_decode(f - 1, h480, w480, results)
    if not args.skip_17b:
        dit = bench_ours_forward(HUMO_17B, f, 720, 1280, results, "humo-17b forward 720p (eager)", repeat=2)
        dit.compile_blocks()
        bench_ours_forward(HUMO_17B, f, 720, 1280, results, "humo-17b forward 720p (compiled)", repeat=2, dit=dit)
        del dit
        torch.cuda.empty_cache()

    ours = min(results[k]["seconds"] for k in results if k.startswith("humo-1.7b forward"))
    base = results["diffusers Wan-1.3B forward (baseline)"]["seconds"]
    meta = {
        "device": torch.cuda.get_device_name(), "torch": torch.__version__, "python": platform.python_version(),
        "sdpa_note": "PyTorch default SDPA backend selection", "ours_over_baseline": ours / base,
        "no_slower_than_baseline": ours <= base * 1.02,  # within timing noise
    }
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2))

    print(f"\n{meta['device']}  torch {meta['torch']}")
    print(f"{'measurement':42s} {'seconds':>9s} {'TFLOP/s':>8s} {'peak GiB':>9s}")
    for name, r in results.items():
        tf = f"{r['tflops_per_s']:.0f}" if "tflops_per_s" in r else "-"
        print(f"{name:42s} {r['seconds']:9.3f} {tf:>8s} {r['peak_gib']:9.1f}")
    print(f"ours / baseline per forward: {ours / base:.3f}  ({'OK' if meta['no_slower_than_baseline'] else 'SLOWER'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
