"""The rest of the compiled forward, beside attention: does inductor's coordinate-descent tuning
of its element-wise kernels, or one CUDA graph over the whole forward (no launch gaps), make the
1.7B forward (480x832, 97 frames) faster? Both are measured against today's compiled blocks in
the same run, with the kernel named (default fa4). Runs without PyAV (nothing here touches media).

  python benchmarks/gpu_forward_rest.py [fa4|sdpa|fa3-fp8] [--out=gpu_forward_rest.json]
"""

import importlib.machinery
import importlib.util
import json
import statistics
import sys
import time
import types
from pathlib import Path

if importlib.util.find_spec("av") is None:  # models import PyAV; nothing here reads or writes media
    _av = types.ModuleType("av")
    _av.__spec__ = importlib.machinery.ModuleSpec("av", None)
    sys.modules["av"] = _av
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import torch  # noqa: E402
import torch._inductor.config as ic  # noqa: E402
from gpu_render import DEVICE, DTYPE, dit_inputs, our_dit, timed  # noqa: E402

from models import attention  # noqa: E402
from models.specs import HUMO_1_7B  # noqa: E402

spec, f, h, w = HUMO_1_7B, 26, 480, 832
dit = our_dit(spec)
x, t, text, audio = dit_inputs(spec, f, h, w)
args = [a for a in sys.argv[1:] if not a.startswith("--out")]
out_path = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--out=")), "gpu_forward_rest.json")
attention.select(args[0] if args else "fa4", DEVICE, DTYPE)
results: dict[str, dict] = {}


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def measure(name):
    torch._dynamo.reset()
    dit.compile_blocks()
    c = time.perf_counter()
    with torch.no_grad():
        out = dit(x, t, text, audio)
    torch.cuda.synchronize()
    comp = time.perf_counter() - c
    with torch.no_grad():
        ts = timed(lambda: dit(x, t, text, audio), warmup=2, repeat=10)
    print(f"{name:44s} {statistics.median(ts):.4f} s  (compile {comp:.0f} s)", flush=True)
    results[name] = {"seconds": statistics.median(ts), "compile_s": comp}
    return out


base = measure("compiled blocks (today)")
ic.coordinate_descent_tuning = True
cd = measure("+ coordinate-descent tuning")
print(f"   output vs today: {rel(cd, base):.2e}", flush=True)
results["+ coordinate-descent tuning"]["rel_err_vs_today"] = rel(cd, base)
ic.coordinate_descent_tuning = False
torch._dynamo.reset()
dit.compile_blocks()
try:
    with torch.no_grad():
        for _ in range(3):
            dit(x, t, text, audio)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            static = dit(x, t, text, audio)
        ts = timed(g.replay, warmup=2, repeat=10)
    print(f"{'compiled blocks in one CUDA graph':44s} {statistics.median(ts):.4f} s", flush=True)
    print(f"   output vs today: {rel(static, base):.2e}", flush=True)
    results["compiled blocks in one CUDA graph"] = {
        "seconds": statistics.median(ts),
        "rel_err_vs_today": rel(static, base),
    }
except Exception as exc:
    print(f"CUDA graph capture failed: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "kernel": attention.current()}
with open(out_path, "w") as fh:
    json.dump({"meta": meta, "results": results}, fh, indent=2)
