"""Opt-in FP8 (e4m3) matrix products for the DiT's big linears on Hopper GPUs. Never default.

Weights are quantised once per output channel; activations per row at every call; the
product runs in torch._scaled_mm with float32 accumulation and a bf16 result. Attention
stays in bf16 (it is most of the work, and its softmax is where fp8 costs most accuracy).
"""

from __future__ import annotations

import torch
from torch import nn

E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max


def supported(device: torch.device | str = "cuda") -> bool:
    if not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(torch.device(device)) >= (8, 9)


def _quantise_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[M, K] -> e4m3 values and float32 scales [M, 1] with x ~= q * scale."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12)
    scale = amax / E4M3_MAX
    return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


class FP8Linear(nn.Module):
    """A Linear whose product runs in FP8; keeps the original's parameters for the state dict."""

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


def enable_fp8(dit: nn.Module) -> int:
    """Swap the per-token linears of every block for FP8Linear; returns how many were swapped."""
    swapped = 0
    for block in dit.blocks:
        targets = [(block.self_attn, n) for n in ("q", "k", "v", "o")]
        targets += [(block.cross_attn, n) for n in ("q", "o")]  # k/v see only 512 text tokens
        targets += [(block.audio_cross_attn_wrapper.audio_cross_attn, n) for n in ("q", "o")]
        targets += [(block.ffn, "0"), (block.ffn, "2")]
        for owner, name in targets:
            layer = getattr(owner, name) if not name.isdigit() else owner[int(name)]
            if isinstance(layer, nn.Linear) and layer.in_features % 16 == 0 and layer.out_features % 16 == 0:
                if name.isdigit():
                    owner[int(name)] = FP8Linear(layer)
                else:
                    setattr(owner, name, FP8Linear(layer))
                swapped += 1
    return swapped
