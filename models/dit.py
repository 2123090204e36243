"""The HuMo diffusion transformer: Wan2.1 blocks plus audio cross-attention in every block.

Module and parameter names equal the official checkpoint's keys (the test's copy of them:
tests/models/data/humo_checkpoint_keys.json), so a state dict loads with no renaming.

Precision follows Wan: the residual stream, the time embedding, the modulation and the
output head stay in float32; the big matrix products run in the weights' dtype (bf16 on
GPU). Shapes: B batch, L video tokens, C model width, N heads, D head width, F latent
frames, S = H*W tokens per latent frame, T audio tokens per latent frame.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Generic, Protocol, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import sdpa_kernel

from . import attention as kernels
from .attention import SDPA_BACKENDS, sdpa
from .errors import ShapeError
from .specs import DiTConfig


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    """[B] timesteps -> [B, dim] (cos | sin), computed in float64 as Wan does."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = torch.outer(t.to(torch.float64), freqs)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


@lru_cache(maxsize=16)
def rope_table(grid: tuple[int, int, int], head_dim: int, device: torch.device) -> torch.Tensor:
    """Wan's 3-axis RoPE for a (F, H, W) token grid: (cos, sin) pairs [L, 1, D/2, 2].

    The head's D/2 rotation pairs split into frame, height and width parts
    (D/2 - 2*(D/2//3), D/2//3, D/2//3); each axis uses theta 10000 over its own width.
    Computed once per grid and device.
    """
    f, h, w = grid
    pairs = head_dim // 2
    split = (pairs - 2 * (pairs // 3), pairs // 3, pairs // 3)

    def axis_angles(n: int, n_pairs: int) -> torch.Tensor:
        inv = 1.0 / torch.pow(10000.0, torch.arange(0, 2 * n_pairs, 2, dtype=torch.float64) / (2 * n_pairs))
        return torch.outer(torch.arange(n, dtype=torch.float64), inv)  # [n, n_pairs]

    af, ah, aw = (axis_angles(n, p) for n, p in zip((f, h, w), split))
    angles = torch.cat(
        [
            af[:, None, None, :].expand(f, h, w, -1),
            ah[None, :, None, :].expand(f, h, w, -1),
            aw[None, None, :, :].expand(f, h, w, -1),
        ],
        dim=-1,
    ).reshape(f * h * w, 1, pairs)
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1).to(device=device, dtype=torch.float32)


def float32_sequential(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Run a Sequential with its Linears in float32 whatever the weights' dtype (Wan's time embedding)."""
    for layer in layers:
        x = F.linear(x, layer.weight.float(), layer.bias.float()) if isinstance(layer, nn.Linear) else layer(x)
    return x


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs of [B, L, N, D] by the table; float32 math, input dtype out."""
    pairs = x.float().unflatten(-1, (-1, 2))
    if torch.compiler.is_compiling():  # real arithmetic: inductor fuses it, it cannot fuse complex
        cos, sin = table.unbind(-1)
        even, odd = pairs.unbind(-1)
        rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
        return rotated.flatten(-2).to(x.dtype)
    rotated = torch.view_as_complex(pairs) * torch.view_as_complex(table)  # eager: one complex multiply
    return torch.view_as_real(rotated).flatten(-2).to(x.dtype)


class RMSNorm(nn.Module):
    """Wan's RMSNorm over the full width (before the head split); float32 inside."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype) * self.weight


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the weights' dtype; returns float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps)


def framewise(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, F*S, N, D] x [B, F*T, N, D] -> [B, F*S, N, D]: each frame's S queries see its T keys."""
    b = q.shape[0]
    q = q.flatten(0, 1).unflatten(0, (b * frames, -1))  # [B*F, S, N, D]
    k = k.flatten(0, 1).unflatten(0, (b * frames, -1))  # [B*F, T, N, D]
    v = v.flatten(0, 1).unflatten(0, (b * frames, -1))
    return sdpa(q, k, v).unflatten(0, (b, frames)).flatten(1, 2)  # [B, F*S, N, D]


class SequenceShard(Protocol):
    """A process's slice of the token sequence, for attention that needs more than its slice.

    None everywhere below means the whole sequence is here (one GPU). The sequence-parallel
    DiT (models/sequence_parallel.py) passes one through every block.
    """

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Self-attention of the local q/k/v [B, L/P, N, D] over the whole sequence."""

    def framewise(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Local queries [B, L/P, N, D] against every frame's audio keys [B, F*T, N, D]."""


class Attention(nn.Module):
    """q/k/v/o projections with qk RMSNorm; self-attention with RoPE or cross-attention."""

    def __init__(self, dim: int, num_heads: int, eps: float, kv_dim: int | None = None):
        super().__init__()
        kv_dim = kv_dim or dim
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_dim, dim)
        self.v = nn.Linear(kv_dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def project(self, x: torch.Tensor, context: torch.Tensor):
        dtype = self.q.weight.dtype
        x, context = x.to(dtype), context.to(dtype)
        n = self.num_heads
        q = self.norm_q(self.q(x)).unflatten(-1, (n, -1))  # [B, Lq, N, D]
        k = self.norm_k(self.k(context)).unflatten(-1, (n, -1))  # [B, Lk, N, D]
        v = self.v(context).unflatten(-1, (n, -1))
        return q, k, v

    def self_attention(self, x: torch.Tensor, rope: torch.Tensor, shard: SequenceShard | None = None) -> torch.Tensor:
        q, k, v = self.project(x, x)
        q, k = apply_rope(q, rope), apply_rope(k, rope)
        out = kernels.self_attention(q, k, v) if shard is None else shard.attention(q, k, v)
        return self.o(out.flatten(2))

    def cross_attention(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q, k, v = self.project(x, context)
        return self.o(sdpa(q, k, v).flatten(2))

    def framewise_attention(
        self, x: torch.Tensor, audio: torch.Tensor, frames: int, shard: SequenceShard | None = None
    ) -> torch.Tensor:
        """Each latent frame's S video tokens attend only to that frame's T audio tokens."""
        q, k, v = self.project(x, audio)
        out = framewise(q, k, v, frames) if shard is None else shard.framewise(q, k, v)
        return self.o(out.flatten(2))


class AudioCrossAttentionWrapper(nn.Module):
    def __init__(self, dim: int, audio_dim: int, num_heads: int, eps: float):
        super().__init__()
        self.audio_cross_attn = Attention(dim, num_heads, eps, kv_dim=audio_dim)
        self.norm1_audio = LayerNorm(dim, eps, elementwise_affine=True)

    def forward(
        self, x: torch.Tensor, audio: torch.Tensor, frames: int, shard: SequenceShard | None = None
    ) -> torch.Tensor:
        return self.audio_cross_attn.framewise_attention(self.norm1_audio(x), audio, frames, shard)


class Block(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim, eps = cfg.dim, cfg.eps
        self.norm1 = LayerNorm(dim, eps, elementwise_affine=False)
        self.self_attn = Attention(dim, cfg.num_heads, eps)
        self.norm3 = LayerNorm(dim, eps, elementwise_affine=True)
        self.cross_attn = Attention(dim, cfg.num_heads, eps)
        self.norm2 = LayerNorm(dim, eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)
        self.audio_cross_attn_wrapper = AudioCrossAttentionWrapper(dim, cfg.audio_dim, cfg.num_heads, eps)

    def forward(self, x, e, context, audio, rope, frames, shard: SequenceShard | None = None):
        # x [B, L, C] float32; e [B, 6, C] float32; context [B, text_len, C]; audio [B, F*T, A]
        # (with a shard: x and rope hold this process's L/P tokens; audio stays whole)
        # Wan's pre-norm: norm1 + t modulation -> self-attn (gated), norm3 (affine) -> text cross-attn,
        # norm1_audio (affine) -> audio cross-attn, norm2 + t modulation -> FFN (gated); t modulates no cross-attn
        dtype = self.modulation.dtype  # the weights' dtype, the matmuls' (the modulation is applied in float32)
        # six [B, 1, C] float32 modulations; addcmul fuses modulate and gated residual
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation.float() + e).unsqueeze(2).unbind(1)
        h = torch.addcmul(shift1, self.norm1(x), 1 + scale1)
        x = torch.addcmul(x, self.self_attn.self_attention(h.to(dtype), rope, shard), gate1)
        x = x + self.cross_attn.cross_attention(self.norm3(x), context)
        x = x + self.audio_cross_attn_wrapper(x, audio, frames, shard)
        h = torch.addcmul(shift2, self.norm2(x), 1 + scale2)
        return torch.addcmul(x, self.ffn(h.to(dtype)), gate2)


class Head(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm = LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, math.prod(cfg.patch_size) * cfg.out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.modulation.float() + e[:, None]).unbind(1)
        h = self.norm(x) * (1 + scale[:, None]) + shift[:, None]
        return F.linear(h, self.head.weight.float(), self.head.bias.float())


Layer = TypeVar("Layer", bound=nn.Module)


class AdapterLayer(nn.Module, Generic[Layer]):
    """Holds one layer under `.layer`, the official audio_proj's key layout."""

    def __init__(self, layer: Layer):
        super().__init__()
        self.layer: Layer = layer

    def forward(self, x):
        return self.layer(x)


class AudioProjection(nn.Module):
    """A latent frame's window of Whisper features [W, 5, A_in] -> T audio tokens [T, A]."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        in_dim = cfg.audio_window * cfg.audio_blocks * cfg.audio_channels
        self.tokens, self.out_dim = cfg.audio_tokens, cfg.audio_dim
        self.audio_proj_glob_1 = AdapterLayer(nn.Linear(in_dim, cfg.audio_hidden))
        self.audio_proj_glob_2 = AdapterLayer(nn.Linear(cfg.audio_hidden, cfg.audio_hidden))
        self.audio_proj_glob_3 = AdapterLayer(nn.Linear(cfg.audio_hidden, cfg.audio_tokens * cfg.audio_dim))
        self.audio_proj_glob_norm = AdapterLayer(LayerNorm(cfg.audio_dim, 1e-5, elementwise_affine=True))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        # windows [B, F, W, 5, A_in] -> tokens [B, F*T, A]
        b, f = windows.shape[:2]
        h = windows.flatten(2).to(self.audio_proj_glob_1.layer.weight.dtype)
        h = torch.relu(self.audio_proj_glob_1(h))
        h = torch.relu(self.audio_proj_glob_2(h))
        h = self.audio_proj_glob_3(h).unflatten(-1, (self.tokens, self.out_dim))
        return self.audio_proj_glob_norm(h).reshape(b, f * self.tokens, self.out_dim)


class HumoDiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)
        self.audio_proj = AudioProjection(cfg)

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (load_into casts them all to one); the big matrix products run in it."""
        return self.patch_embedding.weight.dtype

    def compile_blocks(self) -> HumoDiT:
        """torch.compile each block (one shared graph: blocks differ only in weights).

        Fuses the float32 norm/modulate/gate/RoPE element-wise work around the matmuls.
        The result is the same function; compile once per process and frame size.
        forward itself stays eager: its input checks and the embeddings run outside the graphs.
        """
        for block in self.blocks:
            block.compile(dynamic=False)
        return self

    @property
    def blocks_compiled(self) -> bool:
        """Whether every block runs through torch.compile (nn.Module.compile sets _compiled_call_impl)."""
        return all(getattr(block, "_compiled_call_impl", None) is not None for block in self.blocks)

    def check_inputs(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, audio_windows: torch.Tensor) -> None:
        """Raise ShapeError naming the first input whose shape forward cannot take.

        Only Python ints are compared: nothing syncs the device, and a compiled caller guards on
        shapes anyway.
        """
        c = self.cfg
        if x.ndim != 5 or x.shape[1] != c.in_dim:
            raise ShapeError(f"x: expected [B, in_dim={c.in_dim}, F, H, W], got {list(x.shape)}")
        b, _, f, h, w = x.shape
        if f % c.patch_size[0] or h % c.patch_size[1] or w % c.patch_size[2]:
            raise ShapeError(f"x: F, H, W = {f}, {h}, {w} must be multiples of the patch size {c.patch_size}")
        audio = {"audio_window": c.audio_window, "audio_blocks": c.audio_blocks, "audio_channels": c.audio_channels}
        for name, tensor, dims in (
            ("t", t, {"B": b}),
            ("text", text, {"B": b, "text_len": c.text_len, "text_dim": c.text_dim}),
            ("audio_windows", audio_windows, {"B": b, "F": f, **audio}),
        ):
            if tuple(tensor.shape) != tuple(dims.values()):
                want = ", ".join(f"{k}={v}" for k, v in dims.items())
                raise ShapeError(f"{name}: expected [{want}] for x of shape {list(x.shape)}, got {list(tensor.shape)}")

    def embed_text(self, text: torch.Tensor) -> torch.Tensor:
        """[B, text_len, text_dim] (zero-padded umT5 states) -> [B, text_len, C]."""
        return self.text_embedding(text.to(self.dtype))

    def embed_time(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B] timesteps -> e [B, C] and the six modulations e0 [B, 6, C], in float32."""
        e = float32_sequential(self.time_embedding, sinusoidal_embedding(self.cfg.freq_dim, t).float())
        return e, float32_sequential(self.time_projection, e).unflatten(1, (6, -1))

    def patchify(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """[B, C_in, F, H, W] -> float32 tokens [B, L, C] and their (F, H/2, W/2) grid."""
        _, _, f, hh, ww = x.shape
        pt, ph, pw = self.cfg.patch_size
        w = self.patch_embedding.weight
        tokens = self.patch_embedding(x.to(w.dtype)).flatten(2).transpose(1, 2).float()
        return tokens, (f // pt, hh // ph, ww // pw)

    def unpatchify(self, out: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Head output [B, L, pt*ph*pw*out] -> [B, out, F, H, W]."""
        pt, ph, pw = self.cfg.patch_size
        f, h, w = grid
        out = out.view(out.shape[0], *grid, pt, ph, pw, self.cfg.out_dim)
        out = torch.einsum("bfhwpqrc->bcfphqwr", out)
        return out.reshape(out.shape[0], self.cfg.out_dim, f * pt, h * ph, w * pw)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        audio_windows: torch.Tensor,
    ) -> torch.Tensor:
        """Predict the flow velocity.

        x: [B, in_dim, F, H, W] latents (plus conditioning channels for 17B);
        t: [B] timesteps in [0, 1000); text: [B, text_len, text_dim];
        audio_windows: [B, F, W, 5, A_in] Whisper feature windows, one per latent frame.
        Returns [B, out_dim, F, H, W] in float32. A wrong shape is a ShapeError naming the input.
        """
        self.check_inputs(x, t, text, audio_windows)
        # 1. patchify: [B, C, F, H/2, W/2] -> [B, L, C], float32 residual stream
        tokens, grid = self.patchify(x)
        # 2. conditioning
        e, e0 = self.embed_time(t)
        context = self.embed_text(text)
        audio = self.audio_proj(audio_windows)  # [B, F*T, A]
        rope = rope_table(grid, self.cfg.head_dim, tokens.device)
        # 3. blocks
        with sdpa_kernel(SDPA_BACKENDS, set_priority=True):
            for block in self.blocks:
                tokens = block(tokens, e0, context, audio, rope, grid[0])
        # 4. head and unpatchify: [B, L, pt*ph*pw*out] -> [B, out, F, H, W]
        return self.unpatchify(self.head(tokens, e), grid)
