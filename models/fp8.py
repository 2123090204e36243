"""Opt-in FP8 (e4m3) matrix products for the DiT's big linears on Hopper GPUs. Never default.

Weights are quantised once per output channel; activations per row at every call; the
product runs in torch._scaled_mm with float32 accumulation and a bf16 result. Attention
stays in bf16 (it is most of the work, and its softmax is where fp8 costs most accuracy).
"""

from __future__ import annotations

import torch
from torch import nn

from .dit import HumoDiT

E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max


def supported(device: torch.device | str = "cuda") -> bool:
    """Whether `device` has FP8 tensor cores (CUDA compute capability 8.9+)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(device) >= (8, 9)


def _quantise_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[M, K] -> e4m3 values and float32 scales [M, 1] with x ~= q * scale."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12)
    scale = amax / E4M3_MAX
    return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


class FP8Linear(nn.Module):
    """A Linear whose product runs in FP8; keeps the original's parameters for the state dict."""

    weight_fp8: torch.Tensor
    weight_scale: torch.Tensor

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        q, scale = _quantise_rows(linear.weight.detach())
        self.register_buffer("weight_fp8", q, persistent=False)  # [N, K]
        self.register_buffer("weight_scale", scale.reshape(1, -1), persistent=False)  # [1, N]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        a, a_scale = _quantise_rows(x.reshape(-1, shape[-1]))
        bias = None if self.bias is None else self.bias.to(torch.bfloat16)
        out = torch._scaled_mm(
            a, self.weight_fp8.t(), scale_a=a_scale, scale_b=self.weight_scale, bias=bias, out_dtype=torch.bfloat16
        )
        return out.reshape(*shape[:-1], self.out_features)


#: the per-token linears of a block, by path. Cross-attention k/v see only the 512 text tokens
#: (and the audio's the few audio tokens): too little work to gain from fp8.
TARGETS = (
    "self_attn.q",
    "self_attn.k",
    "self_attn.v",
    "self_attn.o",
    "cross_attn.q",
    "cross_attn.o",
    "audio_cross_attn_wrapper.audio_cross_attn.q",
    "audio_cross_attn_wrapper.audio_cross_attn.o",
    "ffn.0",
    "ffn.2",
)


def enable_fp8(dit: HumoDiT) -> int:
    """Swap the TARGETS of every block for FP8Linear; returns how many were swapped.

    A linear whose sizes are not multiples of 16 (what _scaled_mm needs) stays as it is.
    """
    swapped = 0
    for block in dit.blocks:
        for path in TARGETS:
            layer = block.get_submodule(path)
            if isinstance(layer, nn.Linear) and layer.in_features % 16 == 0 and layer.out_features % 16 == 0:
                owner, _, name = path.rpartition(".")
                setattr(block.get_submodule(owner), name, FP8Linear(layer))  # also replaces Sequential's "0"
                swapped += 1
    return swapped
