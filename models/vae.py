"""The Wan2.1 VAE: diffusers' AutoencoderKLWan, loaded from the official `Wan2.1_VAE.pth`.

The official file uses Wan's own module names; `official_key` maps each diffusers key to
its official name structurally (by position in the block layout, never by substring).
Latents are normalised per channel as Wan does: z = (mu - mean) / std.

`VideoVAE.stream` decodes a long take's latents one latent frame at a time through the
causal decoder's cache (diffusers' own frame loop, without its concatenation), so its memory
is that of one latent frame whatever the length.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from diffusers import AutoencoderKLWan

from .specs import VAEConfig

#: resnet parts: diffusers name -> index inside Wan's `residual` Sequential
_RESNET = {
    "norm1": "residual.0",
    "conv1": "residual.2",
    "norm2": "residual.3",
    "conv2": "residual.6",
    "conv_shortcut": "shortcut",
}
_MIDDLE = {("resnets", "0"): "0", ("attentions", "0"): "1", ("resnets", "1"): "2"}
_TOP = {"quant_conv": "conv1", "post_quant_conv": "conv2"}
_ENDS = {"conv_in": "conv1", "norm_out": "head.0", "conv_out": "head.2"}


def build_vae(cfg: VAEConfig) -> AutoencoderKLWan:
    return AutoencoderKLWan(
        base_dim=cfg.base_dim,
        z_dim=cfg.z_dim,
        dim_mult=list(cfg.dim_mult),
        num_res_blocks=cfg.num_res_blocks,
        temperal_downsample=list(cfg.temporal_downsample),
    )


def official_key(key: str, cfg: VAEConfig) -> str:
    """The official Wan2.1_VAE.pth name of a diffusers AutoencoderKLWan state-dict key."""
    parts = key.split(".")
    head, rest = parts[0], parts[1:]
    if head in _TOP:
        return ".".join([_TOP[head], *rest])
    if head not in ("encoder", "decoder"):
        raise KeyError(key)
    section = rest[0]
    if section in _ENDS:
        return ".".join([head, _ENDS[section], *rest[1:]])
    if section == "mid_block":
        middle = _MIDDLE[(rest[1], rest[2])]
        tail = rest[3:]
        if rest[1] == "resnets":
            tail = _resnet_tail(tail)
        return ".".join([head, "middle", middle, *tail])
    if section == "down_blocks":  # the encoder's blocks are already one flat list
        index, tail = rest[1], rest[2:]
        if tail[0] in _RESNET:
            tail = _resnet_tail(tail)
        return ".".join([head, "downsamples", index, *tail])
    if section == "up_blocks":  # each decoder block: num_res_blocks+1 resnets, then an upsampler
        per_block = cfg.num_res_blocks + 2
        block, kind = int(rest[1]), rest[2]
        if kind == "resnets":
            position, tail = block * per_block + int(rest[3]), _resnet_tail(rest[4:])
        elif kind == "upsamplers":
            position, tail = block * per_block + cfg.num_res_blocks + 1, rest[4:]
        else:
            raise KeyError(key)
        return ".".join([head, "upsamples", str(position), *tail])
    raise KeyError(key)


def _resnet_tail(tail: list[str]) -> list[str]:
    return [*_RESNET[tail[0]].split("."), *tail[1:]]


def official_key_map(vae: AutoencoderKLWan, cfg: VAEConfig) -> dict[str, str]:
    """official name -> diffusers name, for every tensor of `vae`."""
    mapping = {official_key(k, cfg): k for k in vae.state_dict()}
    if len(mapping) != len(vae.state_dict()):
        raise AssertionError("VAE key mapping is not one-to-one")
    return mapping


class VideoVAE:
    """Encode frames to normalised latents and back, on whatever device the VAE sits."""

    def __init__(self, vae: AutoencoderKLWan):
        self.vae = vae.eval().requires_grad_(False)
        cfg = vae.config
        self.mean = torch.tensor(cfg.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(cfg.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] in [-1, 1] -> normalised latent mean [B, 16, 1+(T-1)/4, H/8, W/8]."""
        mu = self.vae.encode(video.to(self.device, self.dtype)).latent_dist.mode().float()
        return (mu - self.mean.to(mu.device)) * self.inv_std.to(mu.device)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, 16, F, h, w] -> video [B, 3, 1+4(F-1), 8h, 8w] in [-1, 1]."""
        z = latents.float() / self.inv_std.to(latents.device) + self.mean.to(latents.device)
        # cuDNN picks the fastest conv3d algorithm per shape (the decode is conv-bound)
        with torch.backends.cudnn.flags(enabled=True, benchmark=True):
            return self.vae.decode(z.to(self.device, self.dtype)).sample.float().clamp(-1, 1)

    @torch.no_grad()
    def stream(self, latents: torch.Tensor) -> Iterator[torch.Tensor]:
        """Normalised latents [16, F, h, w] -> video chunks [3, t, 8h, 8w] in [-1, 1], one per
        latent frame (t = 1, then 4), on the VAE's device: 1+4(F-1) frames in all.

        The decoder's causal cache (`_feat_map`, as diffusers' `_decode` keeps it) carries each
        conv's last frames to the next chunk: the frames equal one whole decode's.
        """
        vae = self.vae
        if vae.config.patch_size is not None:  # Wan2.2's patchified VAE: not HuMo's
            raise ValueError("streamed decoding supports the Wan2.1 VAE (no patch_size)")
        mean, inv_std = self.mean[0].to(latents.device), self.inv_std[0].to(latents.device)
        vae.clear_cache()
        try:
            with torch.backends.cudnn.flags(enabled=True, benchmark=True):
                for i in range(latents.shape[1]):
                    z = latents[:, i : i + 1].float() / inv_std + mean  # [16, 1, h, w]
                    x = vae.post_quant_conv(z[None].to(self.device, self.dtype))  # a 1x1x1 conv: per frame
                    vae._conv_idx = [0]
                    out = vae.decoder(x, feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=i == 0)
                    yield out[0].float().clamp(-1, 1)
        finally:
            vae.clear_cache()
