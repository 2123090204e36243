"""Profile one DiT forward (ours and the diffusers baseline) and print the top CUDA kernels.

Usage: python benchmarks/profile_dit.py [--compile] [--baseline] [--audio]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_render import DEVICE, DTYPE, dit_inputs, our_dit, random_init_

from models.specs import HUMO_1_7B


def top_kernels(fn, label: str, rows: int = 18) -> None:
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    print(f"\n=== {label}")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=70))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--audio", action="store_true")
    parser.add_argument("--compile", action="store_true", help="profile the compiled blocks (the default on CUDA)")
    args = parser.parse_args()
    f, h, w = 26, 480, 832
    dit = our_dit(HUMO_1_7B)
    if args.compile:
        dit.compile_blocks()
    x, t, text, audio = dit_inputs(HUMO_1_7B, f, h, w)
    with torch.no_grad():
        top_kernels(lambda: dit(x, t, text, audio), "ours" + (" (compiled)" if args.compile else ""))
    if args.baseline:
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
        xb, tb = x.to(DTYPE), t
        with torch.no_grad():
            top_kernels(
                lambda: model(hidden_states=xb, timestep=tb, encoder_hidden_states=text.to(DTYPE), return_dict=False),
                "diffusers",
            )


def audio_attention_variants() -> None:
    """The per-frame audio cross-attention's shape: 26 frames x 1560 queries x 16 keys."""
    import statistics

    import torch.nn.functional as F
    from gpu_render import timed
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(26, 12, 1560, 128, device=DEVICE, dtype=DTYPE)
    k = torch.randn(26, 12, 16, 128, device=DEVICE, dtype=DTYPE)
    v = torch.randn(26, 12, 16, 128, device=DEVICE, dtype=DTYPE)
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float())

    def manual():
        s = torch.matmul(q, k.transpose(-1, -2)).float() * 128**-0.5
        return torch.matmul(s.softmax(-1).to(DTYPE), v)

    variants = {"sdpa default": lambda: F.scaled_dot_product_attention(q, k, v), "manual matmul": manual}
    for name, backend in (
        ("flash", SDPBackend.FLASH_ATTENTION),
        ("efficient", SDPBackend.EFFICIENT_ATTENTION),
        ("cudnn", SDPBackend.CUDNN_ATTENTION),
    ):

        def run(b=backend):
            with sdpa_kernel(b):
                return F.scaled_dot_product_attention(q, k, v)

        variants[f"sdpa {name}"] = run
    for name, fn in variants.items():
        try:
            err = ((fn().float() - ref).norm() / ref.norm()).item()
            print(f"audio attention {name:16s} {statistics.median(timed(fn, 3, 20)) * 1e3:8.3f} ms  rel err {err:.1e}")
        except RuntimeError as exc:
            print(f"audio attention {name:16s} unavailable: {str(exc)[:80]}")


if __name__ == "__main__":
    if "--audio" in sys.argv:
        audio_attention_variants()
    else:
        main()
