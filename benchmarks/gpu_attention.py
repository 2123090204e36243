"""The self-attention kernels on the GPU, in one run: cuDNN SDPA (the baseline), FlashAttention-4
(the default on Hopper) and the opt-in FP8 attention (flashinfer's FA3 in e4m3). Full-size
random bf16 weights. --kernels names the ones to run, the baseline first (default
sdpa,fa4,fa3-fp8); each section compares every other kernel against it.

Sections (--sections, comma list):
  kernels  one attention call at HuMo's shapes (12 heads x 40,560 tokens: 1.7B 480p; 40 heads
           x 93,600: 17B 720p), each kernel: ms, TFLOP/s, error against float64 on a slice
           of queries, and against the baseline;
  forward  one compiled 1.7B forward at 480x832, 97 frames, each kernel, then each with the
           opt-in FP8 linears too (models/fp8.py); outputs against the baseline's;
  profile  the compiled forward's CUDA kernels by kind (attention, matrix products, fused
           element-wise, other) and the top kernels, with the kernel chosen by auto;
  clip     a whole explore clip (TIA, 50 steps, to MP4), baseline and new, compiled; per
           stage, TFLOP/s, fraction of the 800 TFLOP/s bound; final latents compared;
  17b      one compiled 17B 720p TIA step (3 passes), baseline and new, and the new one through
           the sequence-parallel DiT at N=1 (a one-rank NCCL group).
Prints a table and writes JSON. Usage:
  python benchmarks/gpu_attention.py [--sections kernels,forward,profile] [--out gpu_attention.json]
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

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_render import DEVICE, DTYPE, bench_step, clip_setup, dit_inputs, forward_flops, our_dit, render_clip, timed

from models import attention
from models.request import RenderRequest
from models.specs import HUMO_1_7B, HUMO_17B

BOUND = 800e12  #: dense bf16 FLOP/s the matrix units reach (HUMO.md)
NAMES = {"sdpa": "cuDNN SDPA", "fa4": "FA4", "fa3-fp8": "FA3 FP8"}  #: kernel: its name in the table
KERNELS = ["sdpa", "fa4", "fa3-fp8"]  #: the kernels measured, the baseline first (--kernels)


def label(kernel: str) -> str:
    return ("baseline: " if kernel == KERNELS[0] else "") + NAMES[kernel]


def compare(results: dict, prefix: str, outputs: dict, key: str = "rel_err_vs_baseline") -> None:
    """Each variant's speed-up over the first (the baseline) and, where it has an output, its
    relative error against the baseline's. outputs: the variants' names in the table -> output."""
    base, *others = outputs
    for name in others:
        r = results[f"{prefix}: {name}"]
        r["speedup"] = results[f"{prefix}: {base}"]["seconds"] / r["seconds"]
        if outputs[name] is not None:
            r[key] = rel(outputs[name], outputs[base])


def use(kernel: str) -> None:
    attention.select(kernel, DEVICE, DTYPE)
    torch._dynamo.reset()  # compiled graphs are per variant


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def bench_kernels(results: dict) -> None:
    g = torch.Generator(device=DEVICE).manual_seed(5)
    for heads, length in ((12, 40_560), (40, 93_600)):
        kernel_case(results, heads, length, g)
        torch.cuda.empty_cache()


def kernel_case(results: dict, heads: int, length: int, g: torch.Generator) -> None:
    q, k, v = (torch.randn(1, length, heads, 128, device=DEVICE, dtype=DTYPE, generator=g) for _ in range(3))

    def cudnn():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            return attention.sdpa(q, k, v)

    calls = {"sdpa": cudnn, "fa4": lambda: attention.fa4(q, k, v), "fa3-fp8": lambda: attention.fa3_fp8(q, k, v)}
    rows = 512  # float64 reference on a slice of queries (the whole score matrix would not fit)
    s = torch.einsum("bqhd,bkhd->bhqk", q[:, :rows].double(), k.double()) * 128**-0.5
    ref = torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v.double())
    del s
    flops = 4 * length * length * heads * 128
    prefix = f"attention {heads} heads x {length:,}"
    outs = {}
    for kernel in KERNELS:  # FP8's time includes quantising q, k and v
        fn = calls[kernel]
        med = statistics.median(timed(fn, warmup=3, repeat=10))
        outs[label(kernel)] = fn()
        results[f"{prefix}: {label(kernel)}"] = {
            "seconds": med,
            "tflops_per_s": flops / med / 1e12,
            "rel_err_vs_fp64": rel(outs[label(kernel)][:, :rows], ref),
        }
    compare(results, prefix, outs)


def bench_forward(results: dict) -> None:
    from models.fp8 import enable_fp8

    spec, f, h, w = HUMO_1_7B, 26, 480, 832
    dit = our_dit(spec)
    x, t, text, audio = dit_inputs(spec, f, h, w)
    flops = forward_flops(spec.dit, f, h, w)
    prefix = "1.7b forward, compiled"
    outputs = {}
    # every kernel with bf16 linears, then (enable_fp8 swaps the linears for good) with FP8 ones
    for fp8_linears in (False, True):
        if fp8_linears:
            enable_fp8(dit)
        for kernel in KERNELS:
            name = label(kernel) + (" + FP8 linears" if fp8_linears else "")
            use(kernel)
            dit.compile_blocks()
            clock = time.perf_counter()
            with torch.no_grad():
                dit(x, t, text, audio)
            torch.cuda.synchronize()
            compile_s = time.perf_counter() - clock
            with torch.no_grad():
                times = timed(lambda: dit(x, t, text, audio), warmup=2, repeat=10)
                outputs[name] = dit(x, t, text, audio)
            med = statistics.median(times)
            results[f"{prefix}: {name}"] = {
                "seconds": med,
                "tflops_per_s": flops / med / 1e12,
                "compile_s": compile_s,
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            }
    compare(results, prefix, outputs)


def kind_of(kernel_name: str) -> str:
    n = kernel_name.lower()
    if n.startswith("triton"):  # inductor names its kernels after the ops fused around them, attention too
        return "fused element-wise (inductor)"
    if any(s in n for s in ("flash", "fmha", "attention", "sdpa")):
        return "attention"
    if any(s in n for s in ("gemm", "nvjet", "xmma", "cublas", "matmul")):
        return "matrix products"
    return "other"


def bench_profile(results: dict, kernel: str) -> None:
    from torch.profiler import ProfilerActivity, profile

    spec, f, h, w = HUMO_1_7B, 26, 480, 832
    use(kernel)
    dit = our_dit(spec).compile_blocks()
    x, t, text, audio = dit_inputs(spec, f, h, w)
    with torch.no_grad():
        for _ in range(3):
            dit(x, t, text, audio)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            dit(x, t, text, audio)
            torch.cuda.synchronize()
    kernels = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.self_device_time_total for e in kernels) / 1e6
    kinds: dict[str, float] = {}
    for e in kernels:
        kinds[kind_of(e.key)] = kinds.get(kind_of(e.key), 0.0) + e.self_device_time_total / 1e6
    top = sorted(kernels, key=lambda e: -e.self_device_time_total)[:15]
    results[f"profile: compiled 1.7b forward, {NAMES[attention.current()]}, kernel time by kind"] = {
        "kernel": attention.current(),
        "total_s": total,
        **{k: {"seconds": s, "share": s / total} for k, s in sorted(kinds.items(), key=lambda kv: -kv[1])},
    }
    results[f"profile: top kernels, {NAMES[attention.current()]}"] = {
        "kernels": [
            {"name": e.key[:90], "kind": kind_of(e.key), "calls": e.count, "seconds": e.self_device_time_total / 1e6}
            for e in top
        ]
    }


def bench_clip(results: dict, steps: int) -> None:
    work = Path(tempfile.mkdtemp())
    pipe, request, flops = clip_setup(HUMO_1_7B, work, steps)
    prefix = f"clip 1.7b 480p TIA {steps} steps"
    latents = {}
    for kernel in KERNELS:
        use(kernel)
        pipe.dit.compile_blocks()
        pipe.render(RenderRequest(**{**request.__dict__, "steps": 1}))  # compile, outside the timing
        pipe._encodings.clear()  # each clip is the first take of its prompt
        r, latents[label(kernel)] = render_clip(pipe, request, work, kernel)
        r["tflops_per_s_denoise"] = flops / r["stages"]["denoise"] / 1e12
        r["fraction_of_bound"] = flops / BOUND / r["seconds"]
        results[f"{prefix}: {label(kernel)}"] = r
    compare(results, prefix, latents, key="final_latent_rel_err_vs_baseline")
    for kernel in KERNELS[1:]:
        r = results[f"{prefix}: {label(kernel)}"]
        r["within_1e-2"] = r["final_latent_rel_err_vs_baseline"] <= 1e-2


def bench_17b(results: dict) -> None:
    """Each kernel on the plain DiT, then the last one through the sequence-parallel DiT at N=1."""
    import os

    import torch.distributed as dist

    from models.sequence_parallel import SequenceParallelDiT

    f = 26
    dit = our_dit(HUMO_17B)
    prefix = "17b 720p TIA step, compiled"
    for kernel in KERNELS:
        use(kernel)
        dit.compile_blocks()
        bench_step(dit, HUMO_17B, f, 720, 1280, results, f"{prefix}: {label(kernel)}", repeat=1)
    compare(results, prefix, dict.fromkeys(label(k) for k in KERNELS))  # speed alone
    base = results[f"{prefix}: {label(KERNELS[0])}"]["seconds"]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29512", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    dist.init_process_group("nccl", device_id=torch.device("cuda", 0))
    try:
        sp = SequenceParallelDiT.adopt(dit)
        name = f"17b 720p TIA step, sequence-parallel N=1: {NAMES[KERNELS[-1]]}"
        bench_step(sp, HUMO_17B, f, 720, 1280, results, name, repeat=1)
        x, t, text, audio = dit_inputs(HUMO_17B, f, 720, 1280)
        with torch.no_grad():
            results[name]["rel_err_vs_plain"] = rel(sp(x, t, text, audio), dit(x, t, text, audio))
        results[name]["speedup"] = base / results[name]["seconds"]
    finally:
        dist.destroy_process_group()


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist_name in ("flash-attn-4", "flashinfer-python"):
        try:
            found[dist_name] = version(dist_name)
        except PackageNotFoundError:
            found[dist_name] = None
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu_attention.json")
    parser.add_argument("--sections", default="kernels,forward,profile")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--kernels", default=",".join(KERNELS), help="the kernels to measure, the baseline first")
    parser.add_argument("--profile-kernel", default="auto", help="the kernel the profile section runs")
    args = parser.parse_args()
    KERNELS[:] = args.kernels.split(",")
    if unknown := [k for k in KERNELS if k not in NAMES]:
        parser.error(f"--kernels: unknown {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    sections = args.sections.split(",")
    results: dict[str, dict] = {}
    runs = {
        "kernels": lambda: bench_kernels(results),
        "forward": lambda: bench_forward(results),
        "profile": lambda: bench_profile(results, args.profile_kernel),
        "clip": lambda: bench_clip(results, args.steps),
        "17b": lambda: bench_17b(results),
    }
    meta = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "kernels": KERNELS,
        "versions": versions(),
    }
    try:
        for s in sections:
            clock = time.perf_counter()
            runs[s]()
            print(f"section {s}: {time.perf_counter() - clock:.0f} s", flush=True)
            torch.cuda.empty_cache()
    finally:  # what was measured survives a failing section
        Path(args.out).write_text(json.dumps({"meta": meta, "sections": sections, "results": results}, indent=2))
        table(meta, results)
    return 0


def table(meta: dict, results: dict) -> None:

    print(f"\n{meta['device']}  torch {meta['torch']}")
    print(f"{'measurement':72s} {'seconds':>9s} {'TFLOP/s':>8s}  notes")
    for name, r in results.items():
        if name.startswith("profile: top kernels"):
            for k in r["kernels"]:
                print(f"    {k['name'][:60]:60s} {k['kind'][:12]:>12s} {k['calls']:5d} {k['seconds']:9.4f}")
            continue
        secs = r.get("seconds", r.get("total_s"))
        tf = r.get("tflops_per_s", r.get("tflops_per_s_denoise"))
        notes = {
            k: (round(v, 5) if isinstance(v, float) else v)
            for k, v in r.items()
            if k not in ("seconds", "tflops_per_s", "tflops_per_s_denoise", "stages", "runs", "total_s")
        }
        print(
            f"{name[:72]:72s} {'-' if secs is None else f'{secs:9.4f}':>9} {'-' if tf is None else f'{tf:8.0f}':>8}  "
            f"{json.dumps(notes)[:160]}"
        )
        for stage, s in r.get("stages", {}).items():
            print(f"    {stage:68s} {s:9.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
