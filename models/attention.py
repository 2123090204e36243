"""Attention kernels: which one runs the DiT's self-attention, chosen once per process at load.

Self-attention is ~70% of a HuMo forward, so its kernel decides a render's speed:
  - "fa4": FlashAttention-4 (the `flash-attn-4` package, CuTe DSL; the `hopper` extra). On
    one H200 at HuMo's shapes it ran 685 TFLOP/s against cuDNN's 581, at the same error.
    It is wrapped as a custom op, so torch.compile fuses the work around it and never traces
    into it; the sequence-parallel DiT calls it between its all-to-alls like any kernel.
  - "sdpa": PyTorch's fused scaled_dot_product_attention, cuDNN's backend first on CUDA.
  - "fa3-fp8" (opt-in, never chosen by "auto"): flashinfer's FlashAttention-3 kernel in FP8
    e4m3 on Hopper (the `fp8-attention` extra; nvcc builds it at first use, flashinfer caches it).
    q, k and v are quantised per head inside the compiled graph, so inductor fuses that into
    the RoPE before it; the kernel's own softmax probabilities are FP8 too, which is where it
    loses accuracy (benchmarks/gpu_attention.py reports speed and error side by side).

Cross-attention (512 text tokens, 16 audio tokens a frame) is small and stays on SDPA.
`select` picks the kernel ("auto": the fastest that is installed and runs on the device) and
the manifest records `current()` through the pipeline's engine settings.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend

from .errors import CheckpointError

#: SDPA backends, fastest first at HuMo's shapes on Hopper (cuDNN ran 614 TFLOP/s against 365
#: for flash at 40,560 tokens); PyTorch skips any that cannot run the call.
SDPA_BACKENDS = [
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.MATH,
]

KERNELS = ("fa4", "sdpa")  #: exact, fastest first; "auto" takes the first that `usable` allows
OPT_IN = ("fa3-fp8",)  #: faster but less exact: only when named
FP8_MAX = 448.0  #: the largest finite float8 e4m3fn value
_current = "sdpa"


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[B, Lq, N, D] x [B, Lk, N, D] -> [B, Lq, N, D] through PyTorch's fused SDPA."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


@torch.library.custom_op("humo::fa4_attention", mutates_args=())
def fa4(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """FlashAttention-4 in the DiT's own layout [B, L, N, D] (bf16 or fp16, D <= 256)."""
    from flash_attn.cute import flash_attn_func

    out = flash_attn_func(q.contiguous(), k.contiguous(), v.contiguous())
    return out[0] if isinstance(out, tuple) else out  # some releases also return the LSE


@fa4.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return q.new_empty(*q.shape[:-1], v.shape[-1])


def quantise_heads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, L, N, D] -> ([L, B*N, D] float8 e4m3, [B*N] float32 scales): x ~= q * scale.

    Batch and heads share one axis because attention never mixes either (a view when B == 1);
    each head's largest magnitude maps to FP8_MAX, so no value saturates.
    """
    x = x.transpose(0, 1).flatten(1, 2)
    scale = x.abs().amax(dim=(0, 2)).float().clamp_min(1e-12) / FP8_MAX
    return (x.float() / scale[:, None]).to(torch.float8_e4m3fn), scale


@torch.library.custom_op("humo::fa3_fp8_attention", mutates_args=())
def fa3_fp8_kernel(q: Tensor, k: Tensor, v: Tensor, scale_q: Tensor, scale_k: Tensor, scale_v: Tensor) -> Tensor:
    """flashinfer's FA3 FP8 prefill: [L, H, D] e4m3 and per-head scales -> [L, H, D] bf16."""
    from flashinfer.prefill import single_prefill_with_kv_cache

    return single_prefill_with_kv_cache(
        q, k, v, scale_q=scale_q, scale_k=scale_k, scale_v=scale_v, o_dtype=torch.bfloat16, backend="fa3"
    )


@fa3_fp8_kernel.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, scale_q: Tensor, scale_k: Tensor, scale_v: Tensor) -> Tensor:
    return torch.empty(q.shape, dtype=torch.bfloat16, device=q.device)


def fa3_fp8(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """FP8 attention in the DiT's layout [B, L, N, D] (bf16) -> [B, L, N, D] bf16."""
    b, n = q.shape[0], q.shape[2]
    (qf, sq), (kf, sk), (vf, sv) = quantise_heads(q), quantise_heads(k), quantise_heads(v)
    out = fa3_fp8_kernel(qf, kf, vf, sq, sk, sv)  # [Lq, B*N, D]
    return out.unflatten(1, (b, n)).transpose(0, 1)


def usable(kernel: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """None when `kernel` can run the DiT on `device` in `dtype`, else the reason it cannot."""
    if kernel == "sdpa":
        return None
    if kernel == "fa3-fp8":
        return _fp8_unusable(device, dtype)
    if kernel != "fa4":
        return f"unknown attention kernel {kernel!r}; choose one of auto, {', '.join(KERNELS + OPT_IN)}"
    if importlib.util.find_spec("flash_attn") is None or importlib.util.find_spec("flash_attn.cute") is None:
        return "FlashAttention-4 is not installed (pip install '.[hopper]')"
    if device.type != "cuda" or torch.cuda.get_device_capability(device)[0] not in (9, 10):
        return "FlashAttention-4 needs a Hopper or Blackwell GPU (compute capability 9.x or 10.x)"
    if dtype not in (torch.bfloat16, torch.float16):
        return f"FlashAttention-4 runs bf16 or fp16, not {str(dtype).removeprefix('torch.')}"
    return None


def _fp8_unusable(device: torch.device, dtype: torch.dtype) -> str | None:
    if importlib.util.find_spec("flashinfer") is None:
        return "flashinfer is not installed (pip install '.[fp8-attention]'; its build needs nvcc)"
    if device.type != "cuda" or torch.cuda.get_device_capability(device) != (9, 0):
        return "FA3 FP8 attention needs a Hopper GPU (compute capability 9.0)"
    if dtype != torch.bfloat16:
        return f"FA3 FP8 attention runs a bf16 DiT, not {str(dtype).removeprefix('torch.')}"
    return None


def _build(kernel: str, device: torch.device, head_dim: int) -> None:
    """Run the kernel once on a few tokens: flashinfer compiles FA3 at first use (minutes with
    nvcc, then cached), which belongs to loading, not to the first take."""
    if kernel == "fa3-fp8":
        x = torch.randn(1, 128, 1, head_dim, device=device, dtype=torch.bfloat16)
        fa3_fp8(x, x, x)


def select(kernel: str, device: torch.device, dtype: torch.dtype, head_dim: int = 128) -> str:
    """Make `kernel` ("auto", one of KERNELS or OPT_IN) this process's self-attention; return
    its name.

    "auto" takes the fastest usable exact kernel; naming one that cannot run (or fails to
    build) is a CheckpointError saying why, before any weights load.
    """
    global _current
    if kernel == "auto":
        chosen = next(k for k in KERNELS if usable(k, device, dtype) is None)
    else:
        reason = usable(kernel, device, dtype)
        if reason:
            raise CheckpointError(f"attention {kernel!r}: {reason}")
        try:
            _build(kernel, device, head_dim)
        except Exception as exc:  # a missing nvcc, a failed build: the kernel cannot run here
            raise CheckpointError(f"attention {kernel!r} failed to build or run: {exc}") from exc
        chosen = kernel
    _current = chosen
    return chosen


def current() -> str:
    """The kernel self-attention runs through now (recorded in every manifest)."""
    return _current


def self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The DiT's self-attention [B, L, N, D] -> [B, L, N, D] through the selected kernel."""
    return _RUN[_current](q, k, v)


#: every name in KERNELS and OPT_IN, and what runs it
_RUN: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {"fa4": fa4, "sdpa": sdpa, "fa3-fp8": fa3_fp8}
