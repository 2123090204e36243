"""Fast takes on the GPU: few steps, guidance off and a rank-64 LoRA, end to end to MP4,
against the 50-step baseline in the same run. Full-size random bf16 weights (no download).

For each checkpoint asked for (HuMo-1.7B at 480x832, HuMo-17B at 720x1280; 97 frames, TIA):
  - a rank-64 LoRA on every block linear, written to disk in the ComfyUI layout;
  - the LoRA read and applied the first time (the base kept), a restore, a switch back, and
    the same set again; the restore checked bit for bit;
  - the fast take (6 steps, UniPC shift 8, guidance off, the LoRA at 1.0), end to end to MP4:
    the first take of its prompt and LoRA (read and applied in it), then the next seed;
  - the baseline: one step of the checkpoint's default 50-step render (HuMo's guidance, 3 or
    4 passes) measured, times 50, plus the fast take's encode, decode and MP4 stages.
Prints a table and writes JSON. Usage:
  python benchmarks/gpu_fast.py [--specs humo-1.7b,humo-17b] [--out gpu_fast.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_render import DEVICE, demo_media, our_dit, random_pipeline, render_clip, wall

from models.request import LoraUse, RenderRequest
from models.specs import HUMO_1_7B, HUMO_17B, ModelSpec

FAST = {"steps": 6, "sampler": "unipc", "shift": 8.0, "guidance": "off"}
SIZES = {HUMO_1_7B.name: (480, 832), HUMO_17B.name: (720, 1280)}


def write_lora(path: Path, dit: torch.nn.Module, rank: int = 64) -> dict:
    """A rank-`rank` LoRA on every linear of every block, ComfyUI keys, bf16."""
    g = torch.Generator(device=DEVICE).manual_seed(3)
    tensors = {}
    for name, module in dit.named_modules():
        if name.startswith("blocks.") and isinstance(module, torch.nn.Linear):
            out_f, in_f = module.weight.shape
            stem = f"diffusion_model.{name}"
            down = torch.randn(rank, in_f, generator=g, device=DEVICE, dtype=torch.bfloat16) * 0.01
            up = torch.randn(out_f, rank, generator=g, device=DEVICE, dtype=torch.bfloat16) * 0.01
            tensors[f"{stem}.lora_down.weight"], tensors[f"{stem}.lora_up.weight"] = down.cpu(), up.cpu()
            tensors[f"{stem}.alpha"] = torch.tensor(float(rank))
    save_file(tensors, path)
    return {"modules": len(tensors) // 3, "rank": rank, "file_gib": path.stat().st_size / 2**30}


def compiled_sees_patches(pipe, spec: ModelSpec, stack, height: int, width: int) -> dict:
    """The blocks are compiled: a forward after patching must change by the LoRA, and after the
    restore equal the base forward bit for bit (weights are graph inputs, not constants)."""
    from gpu_render import dit_inputs

    x, t, text, audio = dit_inputs(spec, (spec.frames - 1) // 4 + 2, height, width)  # the take's shapes: no recompile
    with torch.no_grad():
        pipe.use_loras(())
        base = pipe.dit(x, t, text, audio).float()
        pipe.use_loras(stack)
        patched = pipe.dit(x, t, text, audio).float()
        pipe.use_loras(())
        again = pipe.dit(x, t, text, audio).float()
    change = ((patched - base).norm() / base.norm()).item()
    return {"ok": bool(change > 1e-3 and torch.equal(again, base)), "relative_change": change}


def bench(spec: ModelSpec, workdir: Path) -> dict:
    height, width = SIZES[spec.name]
    out: dict = {"size": f"{width}x{height}", "frames": spec.frames}
    clock = time.perf_counter()
    pipe = random_pipeline(spec, our_dit(spec).compile_blocks(), workdir)
    out["pipeline build (random weights)"] = {"seconds": time.perf_counter() - clock}
    image, audio = demo_media(workdir)
    take = {"prompt": "a presenter speaks to the camera", "checkpoint": spec.name, "mode": "TIA"}
    take |= {"image": image, "audio": audio, "width": width, "height": height, "seed": 7}
    clock = time.perf_counter()
    pipe.render(RenderRequest(**take, **{**FAST, "steps": 1}))  # compiles the blocks, fills the caches
    out["compile + warm-up take"] = {"seconds": time.perf_counter() - clock}

    path = workdir / "rank64.safetensors"
    out["lora"] = write_lora(path, pipe.dit)
    stack = (LoraUse(str(path), 1.0),)
    names = [n for n, m in pipe.dit.named_modules() if n.startswith("blocks.") and isinstance(m, torch.nn.Linear)]
    probe = [f"{n}.weight" for n in names[:: max(1, len(names) // 24)]]  # a spread of them, cloned to check
    before = {n: pipe.dit.get_parameter(n).detach().clone() for n in probe}
    out["lora: read + apply, first time (keeps the base)"] = {"seconds": wall(lambda: pipe.use_loras(stack))}
    out["lora: restore the base"] = {"seconds": wall(lambda: pipe.use_loras(()))}
    exact = all(torch.equal(pipe.dit.get_parameter(n), before[n]) for n in probe)
    out["lora: restore is bit for bit"] = {"ok": exact, "checked": len(probe)}
    out["lora: apply again (file and base kept)"] = {"seconds": wall(lambda: pipe.use_loras(stack))}
    out["lora: the same set again"] = {"seconds": wall(lambda: pipe.use_loras(stack))}
    where = {str(t.device) for t in pipe.patcher._base.values()}
    out["lora: the base is kept on"] = {"devices": sorted(where)}
    out["lora: the compiled blocks see the patched weights"] = compiled_sees_patches(pipe, spec, stack, height, width)
    pipe.use_loras(())
    pipe._loras.clear()
    del before

    first, _ = render_clip(pipe, RenderRequest(**take, **FAST, loras=stack), workdir, "fast-first")
    out["fast take, first (LoRA read and applied in it)"] = first
    take["seed"] = 8
    nxt, _ = render_clip(pipe, RenderRequest(**take, **FAST, loras=stack), workdir, "fast-next")
    out["fast take, next seed (LoRA on)"] = nxt

    pipe.use_loras(())
    req = RenderRequest(**take).resolved()  # the checkpoint's default: 50 steps, HuMo's guidance
    inputs = pipe.encode_inputs(req)
    step = wall(lambda: pipe.denoise(req.with_(steps=1), inputs))
    stages = nxt["stages"]
    baseline = stages["encode"] + req.steps * step + stages["decode"] + stages["mp4+thumbnail"]
    out[f"baseline: one step of {req.steps}, guidance on"] = {"seconds": step}
    out[f"baseline: {req.steps}-step take (measured step x {req.steps} + stages)"] = {"seconds": baseline}
    out["speed-up, next fast take vs baseline"] = {"ratio": baseline / nxt["seconds"]}
    return out  # the pipeline goes with this frame; main empties the cache


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--specs", default="humo-1.7b,humo-17b")
    parser.add_argument("--out", default="gpu_fast.json")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "host": platform.node()}
    for name in args.specs.split(","):
        torch._dynamo.reset()
        spec = {HUMO_1_7B.name: HUMO_1_7B, HUMO_17B.name: HUMO_17B}[name]
        results[name] = bench(spec, Path(tempfile.mkdtemp()))
        torch.cuda.empty_cache()
        print(f"\n{name} {results[name]['size']}, {results[name]['frames']} frames, TIA")
        print(f"{'measurement':58s} {'value':>12s}")
        for label, row in results[name].items():
            if isinstance(row, dict):
                value = next(iter(row.values()))
                shown = f"{value:12.2f}" if isinstance(value, float) else f"{value!s:>12s}"
                print(f"{label:58s} {shown}")
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
