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
from typing import TypeVar

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.dit import HumoDiT
from models.guidance import Scales
from models.pipeline import Inputs, Pipeline
from models.request import ResolvedRequest
from models.specs import HUMO_1_7B, HUMO_17B, DiTConfig, ModelSpec
from models.vae import VideoVAE, build_vae

DEVICE = torch.device("cuda")
DTYPE = torch.bfloat16
M = TypeVar("M", bound=torch.nn.Module)


def forward_flops(cfg: DiTConfig, frames: int, height: int, width: int) -> float:
    """Analytic FLOPs of one DiT forward (matmuls and attention; norms are negligible)."""
    L = frames * (height // 16) * (width // 16)
    C, T = cfg.dim, cfg.text_len
    A_tok = frames * cfg.audio_tokens
    per_block = (
        2 * L * C * C * 4  # self-attn q, k, v, o
        + 2 * 2 * L * L * C  # QK^T and PV
        + 2 * L * C * C * 2
        + 2 * T * C * C * 2
        + 2 * 2 * L * T * C  # text cross-attn
        + 2 * L * C * C * 2
        + 2 * A_tok * cfg.audio_dim * C * 2
        + 2 * 2 * L * cfg.audio_tokens * C  # audio
        + 2 * L * C * cfg.ffn_dim * 2  # FFN
    )
    embed = 2 * L * C * cfg.in_dim * 4 + 2 * L * C * 64 + 2 * T * (cfg.text_dim * C + C * C)
    return cfg.num_layers * per_block + embed


def wall(fn) -> float:
    """Seconds of fn() on the host clock, the device synchronised on both sides."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


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


def random_init_(module: M, seed: int = 0, device: torch.device = DEVICE, dtype: torch.dtype = DTYPE) -> M:
    """Materialise a meta-built module (on the GPU in bf16 unless told) with small random weights."""
    module = module.to_empty(device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and ("norm" in name or name.endswith("gamma")):
                p.fill_(1.0)
            else:
                p.normal_(0, 0.02, generator=g)
        for b in module.buffers():
            b.zero_()
    return module.to(dtype).eval().requires_grad_(False)


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
    audio = torch.randn(
        batch, frames, cfg.audio_window, cfg.audio_blocks, cfg.audio_channels, device=DEVICE, generator=g
    )
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
        "seconds": med,
        "runs": times,
        "pflop": flops / 1e15,
        "tflops_per_s": flops / med / 1e12,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    return dit


def bench_step(dit, spec, frames, height, width, results, label, repeat: int = 3):
    """One full denoising step through Pipeline.denoise: every guidance pass + the sampler."""
    pipe = Pipeline(spec, dit, vae=None, text=None, audio=None, device=DEVICE)
    cfg = spec.dit
    g = torch.Generator(device=DEVICE).manual_seed(2)
    f_lat = frames - 1
    video_frames = 4 * (f_lat - 1) + 1
    req = ResolvedRequest(
        spec=spec,
        prompt="p",
        negative_prompt="n",
        mode="TIA",
        seed=0,
        image="x",
        audio="y",
        width=width,
        height=height,
        frames=video_frames,
        steps=1,
        shift=5.0,
        scales=Scales(spec.guidance.text, spec.guidance.audio, spec.guidance.image),
    )
    inputs = Inputs(
        text=torch.randn(1, cfg.text_len, cfg.text_dim, device=DEVICE, generator=g),
        negative=torch.randn(1, cfg.text_len, cfg.text_dim, device=DEVICE, generator=g),
        audio=torch.randn(
            1, frames, cfg.audio_window, cfg.audio_blocks, cfg.audio_channels, device=DEVICE, generator=g
        ),
        reference=torch.randn(16, 1, height // 8, width // 8, device=DEVICE, generator=g),
        samples=None,
        zero_latents=torch.randn(16, frames, height // 8, width // 8, device=DEVICE, generator=g),
    )
    torch.cuda.reset_peak_memory_stats()
    times = timed(lambda: pipe.denoise(req, inputs), warmup=1, repeat=repeat)
    from models.guidance import passes_for

    n_passes = len(passes_for(spec, "TIA", 999))
    med = statistics.median(times)
    flops = n_passes * forward_flops(cfg, frames, height, width)
    results[label] = {
        "seconds": med,
        "runs": times,
        "passes": n_passes,
        "tflops_per_s": flops / med / 1e12,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }


def bench_diffusers_baseline(frames, height, width, results):
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        model = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=12,
            attention_head_dim=128,
            in_channels=16,
            out_channels=16,
            text_dim=4096,
            freq_dim=256,
            ffn_dim=8960,
            num_layers=30,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
        )
    model = random_init_(model)
    g = torch.Generator(device=DEVICE).manual_seed(1)
    x = torch.randn(1, 16, frames, height // 8, width // 8, device=DEVICE, generator=g, dtype=DTYPE)
    t = torch.full((1,), 999, device=DEVICE, dtype=torch.int64)
    text = torch.randn(1, 512, 4096, device=DEVICE, generator=g, dtype=DTYPE)
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        times = timed(lambda: model(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False))  # noqa: F821 (deleted after the timing)
    med = statistics.median(times)
    # the same analytic count without the audio branch
    cfg = HUMO_1_7B.dit
    L = frames * (height // 16) * (width // 16)
    audio_flops = cfg.num_layers * (
        2 * L * cfg.dim * cfg.dim * 2 + 2 * frames * 16 * cfg.audio_dim * cfg.dim * 2 + 2 * 2 * L * 16 * cfg.dim
    )
    flops = forward_flops(cfg, frames, height, width) - audio_flops
    results["diffusers Wan-1.3B forward (baseline)"] = {
        "seconds": med,
        "runs": times,
        "pflop": flops / 1e15,
        "tflops_per_s": flops / med / 1e12,
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
        times = timed(lambda: vae.decode(z), warmup=1, repeat=2)  # noqa: F821 (deleted after the timing)
    results["Wan VAE decode, 97 frames"] = {
        "seconds": statistics.median(times),
        "runs": times,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    del vae
    torch.cuda.empty_cache()


def random_pipeline(spec: ModelSpec, dit: HumoDiT, workdir: Path) -> Pipeline:
    """The whole engine at full size with random weights: umT5-XXL and Whisper-large-v3
    encoders (waiting on the CPU), the Wan VAE and the given DiT on the GPU."""
    from transformers import WhisperConfig as HFWhisperConfig
    from transformers import WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from models.audio import AudioEncoder
    from models.text import TextEncoder, build_text_encoder
    from models.tiny import write_tokenizer

    with torch.device("meta"):
        t5 = build_text_encoder(spec.text)
        w = spec.whisper
        whisper = WhisperEncoder(
            HFWhisperConfig(
                d_model=w.d_model,
                encoder_layers=w.encoder_layers,
                encoder_attention_heads=w.encoder_attention_heads,
                encoder_ffn_dim=w.encoder_ffn_dim,
                num_mel_bins=w.num_mel_bins,
            )
        )
        vae = build_vae(spec.vae)
    t5 = random_init_(t5).cpu()
    whisper = random_init_(whisper).float().cpu()
    whisper.embed_positions.weight.requires_grad_(False)
    write_tokenizer(
        workdir / "tokenizer", min(384, spec.text.vocab_size)
    )  # ids stay inside umT5's vocabulary; length is what costs
    text = TextEncoder(t5, TextEncoder.tokenizer_from(str(workdir / "tokenizer")), spec.dit.text_len)
    audio = AudioEncoder(whisper, WhisperFeatureExtractor(feature_size=128))
    return Pipeline(spec, dit, VideoVAE(random_init_(vae)), text, audio, device=DEVICE)


def demo_media(workdir: Path) -> tuple[str, str]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from make_media import portrait, speech

    portrait(workdir / "portrait.png")
    speech(workdir / "speech.wav", seconds=4.0)
    return str(workdir / "portrait.png"), str(workdir / "speech.wav")


def render_clip(pipe: Pipeline, request, workdir: Path, label: str) -> tuple[dict, torch.Tensor]:
    """Request to MP4 file, timed per stage."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    clock = time.perf_counter()
    result = pipe.render(request)
    write_start = time.perf_counter()
    result.write(workdir / f"{label}.mp4", workdir / f"{label}.jpg")
    end = time.perf_counter()
    stages = {**result.timings, "mp4+thumbnail": end - write_start}
    return {
        "seconds": end - clock,
        "stages": stages,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }, result.latents


def clip_setup(spec: ModelSpec, workdir: Path, steps: int):
    """The whole-clip benchmarks' pipeline (random weights), TIA request and its FLOPs."""
    from models.request import RenderRequest

    image, audio = demo_media(workdir)
    pipe = random_pipeline(spec, our_dit(spec), workdir)
    request = RenderRequest(
        prompt="a presenter speaks to the camera in a bright studio",
        checkpoint=spec.name,
        mode="TIA",
        image=image,
        audio=audio,
        seed=7,
        steps=steps,
    )
    f = (spec.frames - 1) // 4 + 2
    return pipe, request, steps * 4 * forward_flops(spec.dit, f, spec.height, spec.width)


def bench_clip(results: dict, workdir: Path, steps: int, spec: ModelSpec = HUMO_1_7B) -> None:
    """A whole explore clip, unoptimised (eager, no cache) vs optimised (compiled, cached)."""
    from models.request import RenderRequest

    pipe, request, flops = clip_setup(spec, workdir, steps)
    slow, slow_latents = render_clip(pipe, request, workdir, "unoptimised")
    slow["tflops_per_s_denoise"] = flops / slow["stages"]["denoise"] / 1e12
    results["clip: unoptimised (eager, sequential passes, no cache)"] = slow
    pipe._encodings.clear()
    clock = time.perf_counter()
    pipe.dit.compile_blocks()
    pipe.render(RenderRequest(**{**request.__dict__, "steps": 1}))  # compile + fill the encoding cache
    results["compile + warm-up take"] = {"seconds": time.perf_counter() - clock, "peak_gib": 0.0}
    pipe._encodings.clear()
    fast, fast_latents = render_clip(pipe, request, workdir, "optimised")
    fast["tflops_per_s_denoise"] = flops / fast["stages"]["denoise"] / 1e12
    results["clip: optimised (compiled, first take of a prompt)"] = fast
    clock = time.perf_counter()
    pipe.encode_inputs(request.resolved())
    results["encode, next seed of the same prompt (cached)"] = {"seconds": time.perf_counter() - clock, "peak_gib": 0.0}
    rel = ((fast_latents.float() - slow_latents.float()).norm() / slow_latents.float().norm()).item()
    results["clip: optimised vs unoptimised final latent"] = {"rel_err": rel, "ok": rel <= 1e-2}
    bound = flops / 800e12
    results["clip: FLOP bound at 800 TFLOP/s"] = {"seconds": bound, "fraction_of_bound": bound / fast["seconds"]}
    # batched guidance passes: one step, both ways
    req = request.resolved()
    inputs = pipe.encode_inputs(req)
    one = req.with_(steps=1)
    for batched in (False, True):
        pipe.batch_passes = batched
        torch.cuda.reset_peak_memory_stats()
        times = timed(lambda: pipe.denoise(one, inputs), warmup=1, repeat=3)
        results[f"step, passes {'batched (batch 4)' if batched else 'sequential'}"] = {
            "seconds": statistics.median(times),
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        }
    pipe.batch_passes = False


def bench_fp8(results: dict) -> None:
    """FP8 linears against bf16: one forward's speed and error, compiled both ways."""
    from models.fp8 import enable_fp8

    spec, f = HUMO_1_7B, 26
    x, t, text, audio = dit_inputs(spec, f, 480, 832)
    dit = our_dit(spec)
    with torch.no_grad():
        ref = dit(x, t, text, audio).float()
    dit.compile_blocks()
    bench_ours_forward(spec, f, 480, 832, results, "fp8 section: bf16 forward, compiled", dit=dit)
    with torch.no_grad():
        bf16_out = dit(x, t, text, audio).float()
    n = enable_fp8(dit)
    torch._dynamo.reset()
    dit.compile_blocks()
    bench_ours_forward(spec, f, 480, 832, results, "fp8 section: fp8 linears forward, compiled", dit=dit)
    with torch.no_grad():
        fp8_out = dit(x, t, text, audio).float()

    def rel(a, b):
        return ((a - b).norm() / b.norm()).item()

    results["fp8 section: error of one forward vs eager bf16"] = {
        "linears_swapped": n,
        "bf16_compiled_rel_err": rel(bf16_out, ref),
        "fp8_rel_err": rel(fp8_out, ref),
    }


def bench_17b_sequence_parallel(frames: int, results: dict) -> None:
    """The hero pool's path with N=1: HuMo-17B wrapped as SequenceParallelDiT in a one-rank
    NCCL group (the all-to-alls and the gather run, on one GPU), one TIA step at 720p with its
    3 guidance passes, against the plain DiT's step in the same run (the baseline), and the
    relative error of one forward of each."""
    import os

    import torch.distributed as dist

    from models.sequence_parallel import SequenceParallelDiT

    torch._dynamo.reset()
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=os.environ.get("MASTER_PORT", "29511"),
        RANK="0",
        WORLD_SIZE="1",
        LOCAL_RANK="0",
    )
    dist.init_process_group("nccl", device_id=torch.device("cuda", 0))
    try:
        dit = our_dit(HUMO_17B).compile_blocks()
        bench_step(dit, HUMO_17B, frames, 720, 1280, results, "humo-17b TIA step 720p, plain DiT (baseline)", repeat=1)
        sp = SequenceParallelDiT.adopt(dit)
        bench_step(sp, HUMO_17B, frames, 720, 1280, results, "humo-17b TIA step 720p, sequence-parallel N=1", repeat=1)
        x, t, text, audio = dit_inputs(HUMO_17B, frames, 720, 1280)
        with torch.no_grad():
            a, b = dit(x, t, text, audio).float(), sp(x, t, text, audio).float()
        error = ((a - b).norm() / a.norm()).item()
        results["humo-17b TIA step 720p, sequence-parallel N=1"]["rel_error_vs_plain"] = error
        results["humo-17b TIA step 720p, sequence-parallel N=1"]["over_baseline"] = (
            results["humo-17b TIA step 720p, sequence-parallel N=1"]["seconds"]
            / results["humo-17b TIA step 720p, plain DiT (baseline)"]["seconds"]
        )
        del dit, sp, a, b
        torch.cuda.empty_cache()
    finally:
        dist.destroy_process_group()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu_render.json")
    parser.add_argument(
        "--sections", default="forward,17b", help="comma list of: forward, clip, fp8, 17b, 17b-step, 17b-sp"
    )
    parser.add_argument("--steps", type=int, default=50, help="denoising steps of the whole-clip section")
    parser.add_argument("--skip-17b", action="store_true")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if args.skip_17b:
        sections.discard("17b")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    results: dict[str, dict] = {}
    h480, w480, f = 480, 832, 26  # 97 frames -> 25 latent frames + 1 reference frame

    bench_diffusers_baseline(f, h480, w480, results)
    if "forward" in sections:
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
    if "clip" in sections:
        import tempfile

        torch._dynamo.reset()
        bench_clip(results, Path(tempfile.mkdtemp()), args.steps)
        torch.cuda.empty_cache()
    if "fp8" in sections:
        torch._dynamo.reset()
        bench_fp8(results)
        torch.cuda.empty_cache()
    if "17b-step" in sections:  # the hero pool's unit of work on one GPU: TIA, 3 guidance passes
        torch._dynamo.reset()
        dit = our_dit(HUMO_17B).compile_blocks()
        bench_step(dit, HUMO_17B, f, 720, 1280, results, "humo-17b TIA step 720p (3 passes, compiled)", repeat=1)
        del dit
        torch.cuda.empty_cache()
    if "17b-sp" in sections:
        bench_17b_sequence_parallel(f, results)
    if "17b" in sections:
        torch._dynamo.reset()
        dit = bench_ours_forward(HUMO_17B, f, 720, 1280, results, "humo-17b forward 720p (eager)", repeat=2)
        dit.compile_blocks()
        bench_ours_forward(HUMO_17B, f, 720, 1280, results, "humo-17b forward 720p (compiled)", repeat=2, dit=dit)
        del dit
        torch.cuda.empty_cache()

    base = results["diffusers Wan-1.3B forward (baseline)"]["seconds"]
    meta = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "sections": sorted(sections),
    }
    forwards = [results[k]["seconds"] for k in results if k.startswith("humo-1.7b forward")]
    if forwards:
        meta["ours_over_baseline"] = min(forwards) / base
        meta["no_slower_than_baseline"] = min(forwards) <= base * 1.02  # within timing noise
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2))

    print(f"\n{meta['device']}  torch {meta['torch']}")
    print(f"{'measurement':58s} {'seconds':>9s} {'TFLOP/s':>8s} {'peak GiB':>9s}")
    for name, r in results.items():
        if "seconds" not in r:
            print(f"{name:58s} {json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()})}")
            continue
        tf = r.get("tflops_per_s", r.get("tflops_per_s_denoise"))
        tf = f"{tf:.0f}" if tf is not None else "-"
        print(f"{name:58s} {r['seconds']:9.3f} {tf:>8s} {r.get('peak_gib', 0.0):9.1f}")
        for stage, secs in r.get("stages", {}).items():
            print(f"    {stage:54s} {secs:9.3f}")
    for r in results.values():
        if "fraction_of_bound" in r:
            print(f"fraction of the FLOP bound: {r['fraction_of_bound']:.2f}")
    if forwards:
        print(f"ours / baseline per forward: {meta['ours_over_baseline']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
