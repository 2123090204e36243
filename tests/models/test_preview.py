"""Live previews: the current prediction x0 as a small JPEG through a latent-to-RGB map fitted
to the checkpoint's own VAE; previews never change what renders."""

import io

import pytest
import torch
from PIL import Image

from models import RenderRequest
from models.preview import UPSCALE, PreviewMap, fitting_images, least_squares


def test_least_squares_recovers_an_affine_map():
    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(3, 16, generator=g), torch.randn(3, generator=g)
    latents = torch.randn(500, 16, generator=g)
    w, b = least_squares(latents, latents @ weight.T + bias)
    torch.testing.assert_close(w, weight, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(b, bias, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["tiny", "tiny-concat"])
def test_the_fitted_map_explains_the_fitting_colours(pipelines, name):
    """On the VAE it was fitted to, the map predicts each latent pixel's colour clearly better
    than the mean colour does (a fit that failed, or paired the wrong pixels, would not; the
    tiny VAEs are random, so their latents hold the colour only in part: about half here)."""
    pipe = pipelines[name]
    images = fitting_images()
    latents = torch.cat([pipe.vae.encode(img[None]) for img in images])[:, :, 0]  # [N, C, h, w]
    target = torch.nn.functional.avg_pool2d(images[:, :, 0], 8)
    predicted = torch.stack([pipe.preview_map.rgb(z) for z in latents])
    assert predicted.shape == target.shape
    residual = ((predicted - target) ** 2).sum()
    spread = ((target - target.mean(dim=(0, 2, 3), keepdim=True)) ** 2).sum()
    assert residual < 0.75 * spread


def decode(jpeg: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(jpeg))
    image.load()
    return image


def test_previews_come_after_every_step_cost_nothing_unasked_and_change_nothing(pipelines, media):
    pipe = pipelines["tiny"]
    request = RenderRequest(
        prompt="p", mode="TIA", image=str(media["image"]), audio=str(media["audio"]), seed=4, steps=4, sampler="euler"
    ).resolved()
    seen = []

    def on_preview(i, n, make):
        seen.append((i, n, make() if i in (2, n) else None))  # the thunk runs only when called

    with_previews = pipe.render(request, on_preview=on_preview)
    without = pipe.render(request)
    assert [(i, n) for i, n, _ in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    torch.testing.assert_close(with_previews.latents, without.latents, rtol=0, atol=0)
    for _, _, jpeg in (seen[1], seen[3]):
        image = decode(jpeg)
        assert image.format == "JPEG"
        assert image.size == (request.width // 8 * UPSCALE, request.height // 8 * UPSCALE)
    # Euler's last step goes to sigma 0, x_t - sigma * v exactly: the last preview is the clip's own latents
    final = pipe.preview_map.jpeg(without.latents)
    assert decode(seen[3][2]).tobytes() == decode(final).tobytes()
    assert decode(seen[1][2]).tobytes() != decode(final).tobytes()  # step 2 predicted something else


def test_a_preview_map_is_fitted_once_per_pipeline(pipelines):
    pipe = pipelines["tiny"]
    assert isinstance(pipe.preview_map, PreviewMap) and pipe.preview_map is pipe.preview_map
    assert pipe.preview_map.weight.shape == (3, pipe.spec.vae.z_dim)
