"""Live previews: the current prediction of a render as a small JPEG, without the VAE.

Every denoising step predicts the clean latents x0 (flow matching: x_t = (1 - s) x0 + s noise
and the DiT predicts v = noise - x0, so x0 = x_t - s v). A linear map from the 16 latent
channels to RGB turns one latent frame into an image at 1/8 of the clip's size: a 16x3 matrix
product on ~6,000 pixels, nothing next to a step. The map is fitted to the checkpoint's own
VAE by least squares on synthetic colour images (solid fields, ramps, a checker), once per
pipeline, so it needs no published constants and follows whatever VAE is loaded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

SIDE = 64  #: the fitting images' side, pixels (8 latent pixels)
UPSCALE = 2  #: a preview pixel per 4x4 pixels of the clip: big enough to judge framing


def fitting_images(side: int = SIDE) -> torch.Tensor:
    """[N, 3, 1, side, side] in [-1, 1]: solid colours over the RGB cube, ramps along each
    channel, and a checker; enough spread for a 17-parameter fit per channel."""
    levels = torch.tensor([-0.9, 0.0, 0.9])
    solids = [torch.stack([r, g, b]) for r in levels for g in levels for b in levels]
    images = [c[:, None, None].expand(3, side, side) for c in solids]
    ramp = torch.linspace(-1, 1, side)
    for ch in range(3):
        img = torch.zeros(3, side, side)
        img[ch] = ramp[None, :]
        images.append(img)
    checker = ((torch.arange(side)[:, None] // 8 + torch.arange(side)[None, :] // 8) % 2) * 1.6 - 0.8
    images.append(checker.expand(3, side, side) * torch.tensor([1.0, -1.0, 0.5])[:, None, None])
    return torch.stack(images)[:, :, None]


def least_squares(latents: torch.Tensor, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The affine map rgb ~= weight @ latent + bias over pixels: latents [P, C], rgb [P, 3]
    -> weight [3, C], bias [3] (float64 solve)."""
    a = torch.cat([latents.double(), torch.ones(len(latents), 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(a, rgb.double()).solution  # [C + 1, 3]
    return solution[:-1].T.float(), solution[-1].float()


@dataclass(frozen=True)
class PreviewMap:
    weight: torch.Tensor  #: [3, C]
    bias: torch.Tensor  #: [3]

    @classmethod
    def fit(cls, vae, device: torch.device) -> PreviewMap:
        """Fit to a models.vae.VideoVAE: encode the fitting images, pair each latent pixel with
        the mean colour of the 8x8 pixels it covers."""
        images = fitting_images()
        latents = torch.cat([vae.encode(img[None].to(device)) for img in images]).float().cpu()  # [N, C, 1, h, w]
        target = torch.nn.functional.avg_pool2d(images[:, :, 0], 8)  # [N, 3, h, w]
        c = latents.shape[1]
        weight, bias = least_squares(
            latents[:, :, 0].permute(0, 2, 3, 1).reshape(-1, c), target.permute(0, 2, 3, 1).reshape(-1, 3)
        )
        return cls(weight.to(device), bias.to(device))

    def rgb(self, frame: torch.Tensor) -> torch.Tensor:
        """One latent frame [C, h, w] -> RGB [3, h, w] in [-1, 1]."""
        out = torch.einsum("oc,chw->ohw", self.weight.to(frame.device), frame.float())
        return (out + self.bias.to(frame.device)[:, None, None]).clamp(-1, 1)

    def jpeg(self, latents: torch.Tensor, quality: int = 80) -> bytes:
        """Latents [C, F, h, w] -> a JPEG of the middle frame, UPSCALE times the latent size."""
        frame = self.rgb(latents[:, latents.shape[1] // 2])
        pixels = ((frame + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        image = Image.fromarray(np.ascontiguousarray(pixels))
        image = image.resize((image.width * UPSCALE, image.height * UPSCALE), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return buffer.getvalue()
