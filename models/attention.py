"""Attention kernels: which one runs the DiT's self-attention, chosen once per process at load.

Self-attention is ~70% of a HuMo forward, so its kernel decides a render's speed:
  - "fa4": FlashAttention-4 (the `flash-attn-4` package, CuTe DSL; the `hopper` extra). On
    one H200 at HuMo's shapes it ran 685 TFLOP/s against cuDNN's 581, at the same error.
    It is wrapped as a custom op, so torch.compile fuses the work around it and never traces
    into it; the sequence-parallel DiT calls it between its all-to-alls like any kernel.
  - "sdpa": PyTorch's fused scaled_dot_product_attention, cuDNN's backend first on CUDA.

Cross-attention (512 text tokens, 16 audio tokens a frame) is small and stays on SDPA.
`select` picks the kernel ("auto": the fastest that is installed and runs on the device) and
the manifest records `current()` through the pipeline's engine settings.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
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

KERNELS = ("fa4", "sdpa")  #: fastest first; "auto" takes the first that `usable` allows
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


def usable(kernel: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """None when `kernel` can run the DiT on `device` in `dtype`, else the reason it cannot."""
    if kernel == "sdpa":
        return None
    if kernel != "fa4":
        return f"unknown attention kernel {kernel!r}; choose one of auto, {', '.join(KERNELS)}"
    if importlib.util.find_spec("flash_attn") is None or importlib.util.find_spec("flash_attn.cute") is None:
        return "FlashAttention-4 is not installed (pip install '.[hopper]')"
    if device.type != "cuda" or torch.cuda.get_device_capability(device)[0] not in (9, 10):
        return "FlashAttention-4 needs a Hopper or Blackwell GPU (compute capability 9.x or 10.x)"
    if dtype not in (torch.bfloat16, torch.float16):
        return f"FlashAttention-4 runs bf16 or fp16, not {str(dtype).removeprefix('torch.')}"
    return None


def select(kernel: str, device: torch.device, dtype: torch.dtype) -> str:
    """Make `kernel` ("auto" or one of KERNELS) this process's self-attention; return its name.

    "auto" takes the fastest usable kernel; naming one that cannot run is a CheckpointError
    saying why, before any weights load.
    """
    global _current
    if kernel == "auto":
        chosen = next(k for k in KERNELS if usable(k, device, dtype) is None)
    else:
        reason = usable(kernel, device, dtype)
        if reason:
            raise CheckpointError(f"attention {kernel!r}: {reason}")
        chosen = kernel
    _current = chosen
    return chosen


def current() -> str:
    """The kernel self-attention runs through now (recorded in every manifest)."""
    return _current


def self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The DiT's self-attention [B, L, N, D] -> [B, L, N, D] through the selected kernel."""
    return fa4(q, k, v) if _current == "fa4" else sdpa(q, k, v)
