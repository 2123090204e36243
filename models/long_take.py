"""The tensor side of a long take's windows (models/windows.py plans them).

- `hold`: a window's first `overlap` latent frames are the previous window's final latents,
  noised to the current sigma (x_t = (1 - sigma) x0 + sigma eps, flow matching's path) before
  every DiT pass, so the window continues what is already there and no pixel is re-encoded.
- `window_audio`: a window hears the whole track's audio windows at its own global latent
  frames, plus the silent reference frame.
- `colour_hold`: a window's latents keep the first window's per-channel mean and spread (the
  latent channels carry the colour), eased in over the frames after the overlap.
- `join`: the global latent sequence from the windows' latents.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .windows import Window

#: the spread below which a channel is left as it is (a flat channel has no colour to match)
_FLAT = 1e-6


def hold(latents: torch.Tensor, previous: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """latents [C, F, h, w] with its first k frames set to the previous window's k final frames
    `previous` [C, k, h, w] noised to `sigma` with the window's own noise `noise` [C, k, h, w]."""
    k = previous.shape[1]
    held = latents.clone()
    held[:, :k] = (1 - sigma) * previous + sigma * noise
    return held


def window_audio(whole: torch.Tensor, window: Window) -> torch.Tensor:
    """The audio windows [length+1, 8, 5, A] a window hears: the whole track's [F, 8, 5, A] at
    its global latent frames, then zeros for the reference frame."""
    own = whole[window.start : window.stop]
    return torch.cat([own, own.new_zeros(1, *own.shape[1:])])


def channel_stats(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of latents [C, F, h, w]: two [C, 1, 1, 1]."""
    flat = latents.flatten(1)
    return flat.mean(1).view(-1, 1, 1, 1), flat.std(1).view(-1, 1, 1, 1)


def colour_hold(latents: torch.Tensor, overlap: int, target: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """A window's latents [C, F, h, w] with the frames after its overlap matched to `target`'s
    per-channel statistics, the match eased in linearly over the first `overlap` of them so the
    join stays continuous. The overlap frames (held to the previous window) are untouched."""
    new = latents[:, overlap:]
    mean, std = channel_stats(new)
    want_mean, want_std = target
    scale = torch.where(std > _FLAT, want_std / std.clamp_min(_FLAT), torch.ones_like(std))
    matched = (new - mean) * scale + want_mean
    ease = torch.clamp(torch.arange(1, new.shape[1] + 1, device=new.device) / (overlap + 1), max=1.0)
    out = latents.clone()
    out[:, overlap:] = new + ease.view(1, -1, 1, 1) * (matched - new)
    return out


def join(windows: Sequence[Window], latents: Sequence[torch.Tensor]) -> torch.Tensor:
    """The take's global latents [C, F, h, w] from each window's [C, length, h, w]: every
    window adds its frames after its overlap."""
    return torch.cat([lat[:, w.overlap :] for w, lat in zip(windows, latents, strict=True)], dim=1)
