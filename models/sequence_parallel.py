"""The HuMo DiT split over a group of P processes by sequence (DeepSpeed-Ulysses).

Every rank holds the full weights (the same state-dict keys as HumoDiT) and the full inputs;
each runs the blocks on its own contiguous slice of the token sequence, L/P tokens.

1. Patchify the whole latent on every rank (cheap), pad the L tokens with zeros to Lp, a
   multiple of P, and keep slice r: global positions [r*Lp/P, (r+1)*Lp/P). The padding is
   at the end, so only the last ranks hold any.
2. Per block, per-token work (norms, modulation, projections, text cross-attention, FFN)
   needs nothing from the other ranks: every rank has the whole text context.
3. Self-attention: q/k/v are projected and RoPE-rotated at their global positions locally,
   then DeepSpeed's DistributedAttention all-to-alls them from [B, Lp/P, N, D] to
   [B, Lp, N/P, D] (scatter heads, gather sequence), attends, and all-to-alls back. The
   padded keys are cut off before attending (keys [:L]), so no real token sees padding.
4. Audio cross-attention needs no exchange. Each latent frame's S tokens attend to its own T
   audio tokens, and every rank computes all F*T audio tokens (a few hundred: cheap). A slice
   may start and end mid-frame, so its real tokens are laid out on frame boundaries by
   zero-padding the partial first and last frames (at most 2S extra queries), attended frame
   by frame exactly like the unsharded model, and cut back to the slice.
5. The head runs on the slice; an all-gather gives every rank the whole output (every rank
   then steps the sampler identically), and the padding is dropped.

The group size must divide the head count (HuMo-17B has 40 heads: 2, 4, 5, 8, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

from . import attention as kernels
from .attention import SDPA_BACKENDS
from .dit import HumoDiT, framewise, rope_table
from .errors import GroupSizeError
from .specs import DiTConfig


def check_group_size(cfg: DiTConfig, size: int) -> None:
    if size < 1 or cfg.num_heads % size:
        divisors = [d for d in range(1, cfg.num_heads + 1) if cfg.num_heads % d == 0]
        raise GroupSizeError(
            f"a sequence-parallel group of {size} ranks cannot split {cfg.num_heads} attention heads; "
            f"use a group size that divides {cfg.num_heads}: {', '.join(map(str, divisors))}"
        )


def init_deepspeed_comm() -> None:
    """Point deepspeed.comm at the torch.distributed group this process already joined.

    On the CPU DeepSpeed JIT-builds a small shared-memory op with g++ the first time (cached
    under ~/.cache/torch_extensions); it stays unused unless LOCAL_SIZE is set.
    """
    import deepspeed.comm

    if not deepspeed.comm.is_initialized():
        deepspeed.comm.init_distributed(dist_backend=dist.get_backend(), verbose=False)


def _attend_unpadded(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, length: int) -> torch.Tensor:
    """The local attention inside the all-to-alls: [B, Lp, N/P, D], keys past `length` are padding."""
    return kernels.self_attention(q, k[:, :length], v[:, :length])


@dataclass(eq=False)
class Shard:
    """Rank r's slice of one token grid: global positions [start, start + size), `valid` real."""

    length: int  #: L, real tokens in the whole sequence
    start: int
    size: int  #: Lp/P
    valid: int  #: real tokens in the slice (the rest is padding at its end)
    frames: int  #: F, latent frames in the whole sequence
    frame_tokens: int  #: S, tokens per latent frame
    rope: torch.Tensor  #: [size, 1, D/2, 2] RoPE at the slice's global positions
    exchange: Callable[..., torch.Tensor] = field(repr=False)  #: DistributedAttention over the group

    # -- the SequenceShard protocol of models.dit ----------------------------------------
    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.exchange(q, k, v, 0, length=self.length)  # batch dim 0; RoPE was applied before

    def framewise(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # q [B, size, N, D] local; k, v [B, F*T, N, D] for every frame
        if self.valid == 0:
            return torch.zeros_like(q)
        s = self.frame_tokens
        first, lead = divmod(self.start, s)  # the slice starts `lead` tokens into frame `first`
        frames = math.ceil((lead + self.valid) / s)
        t = k.shape[1] // self.frames  # T audio tokens per frame
        aligned = F.pad(q[:, : self.valid], (0, 0, 0, 0, lead, frames * s - lead - self.valid))
        keys = slice(first * t, (first + frames) * t)
        out = framewise(aligned, k[:, keys], v[:, keys], frames)[:, lead : lead + self.valid]
        return F.pad(out, (0, 0, 0, 0, 0, self.size - self.valid))

    # -- tokens in and out -----------------------------------------------------------------
    def take(self, tokens: torch.Tensor) -> torch.Tensor:
        """Whole-sequence [B, L, C] -> this slice [B, size, C], zero-padded."""
        part = tokens[:, self.start : self.start + self.valid]
        return F.pad(part, (0, 0, 0, self.size - self.valid))

    def gather(self, part: torch.Tensor, group) -> torch.Tensor:
        """Every rank's slice [B, size, C] -> the whole sequence [B, L, C] on every rank."""
        parts = [torch.empty_like(part) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, part.contiguous(), group=group)
        return torch.cat(parts, dim=1)[:, : self.length]


class SequenceParallelDiT(HumoDiT):
    """HumoDiT whose forward runs on this rank's slice of the sequence; same weights, same output.

    Build it like HumoDiT inside an initialised torch.distributed group, or wrap a loaded one
    with `adopt` (no copy: the modules, compiled or not, are shared).
    """

    def __init__(self, cfg: DiTConfig, group: dist.ProcessGroup | None = None):
        from deepspeed.sequence.layer import DistributedAttention

        ranks = dist.get_world_size(group)
        check_group_size(cfg, ranks)
        init_deepspeed_comm()
        super().__init__(cfg)
        self.group, self.ranks, self.rank = group, ranks, dist.get_rank(group)
        # scatter the heads (dim 2), gather the sequence (dim 1); no parameters of its own
        self.exchange = DistributedAttention(_attend_unpadded, group, scatter_idx=2, gather_idx=1)
        self._shards: dict[tuple, Shard] = {}

    @classmethod
    def adopt(cls, dit: HumoDiT, group: dist.ProcessGroup | None = None) -> SequenceParallelDiT:
        """The sequence-parallel twin of a loaded HumoDiT, sharing its modules."""
        init_deepspeed_comm()  # not on the meta device
        with torch.device("meta"):  # a throwaway skeleton: the loaded modules replace its own
            twin = cls(dit.cfg, group)
        for name, module in dit.named_children():
            setattr(twin, name, module)
        return twin.train(dit.training)

    def shard(self, grid: tuple[int, int, int], device: torch.device) -> Shard:
        """This rank's slice of a token grid (computed once per grid)."""
        key = (grid, device)
        if key not in self._shards:
            length = math.prod(grid)
            size = math.ceil(length / self.ranks)
            start = self.rank * size
            valid = max(0, min(size, length - start))
            rope = rope_table(grid, self.cfg.head_dim, device)[start : start + valid]
            identity = torch.zeros(size - valid, *rope.shape[1:], device=device)
            identity[..., 0] = 1  # cos 1, sin 0: the padding is not rotated (and never attended)
            self._shards[key] = Shard(
                length, start, size, valid, grid[0], grid[1] * grid[2], torch.cat([rope, identity]), self.exchange
            )
        return self._shards[key]

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, audio_windows: torch.Tensor
    ) -> torch.Tensor:
        """HumoDiT.forward's contract; every rank passes the same inputs and gets the whole output."""
        self.check_inputs(x, t, text, audio_windows)
        # 1. patchify the whole latent, keep this rank's slice [B, L/P, C]
        tokens, grid = self.patchify(x)
        shard = self.shard(grid, tokens.device)
        tokens = shard.take(tokens)
        # 2. conditioning, whole on every rank
        e, e0 = self.embed_time(t)
        context = self.embed_text(text)
        audio = self.audio_proj(audio_windows)  # [B, F*T, A]
        # 3. blocks on the slice
        with sdpa_kernel(SDPA_BACKENDS, set_priority=True):
            for block in self.blocks:
                tokens = block(tokens, e0, context, audio, shard.rope, grid[0], shard)
        # 4. head on the slice, gather the whole sequence, unpatchify
        return self.unpatchify(shard.gather(self.head(tokens, e), self.group), grid)
