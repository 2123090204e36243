"""FP8 linears, as far as a CPU runs them: the module swap, the quantisation and the product."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from models.errors import CheckpointError
from models.fp8 import E4M3, E4M3_MAX, FP8Linear, enable_fp8, supported
from models.pipeline import Pipeline
from models.specs import TINY
from models.tiny import random_dit

#: what enable_fp8 swaps in every block: the linears that see every video token
SWAPPED = [
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
]


def fp8_names(dit: nn.Module) -> set[str]:
    return {name for name, module in dit.named_modules() if isinstance(module, FP8Linear)}


def test_fp8_is_not_supported_on_the_cpu():
    assert supported("cpu") is False
    assert supported(torch.device("cpu")) is False


def test_enable_fp8_swaps_the_per_token_linears_and_leaves_the_rest():
    dit = random_dit(TINY)
    keys = set(dit.state_dict())
    kept = {name: m for name, m in dit.named_modules() if isinstance(m, nn.Linear)}
    assert enable_fp8(dit) == 2 * len(SWAPPED)
    assert fp8_names(dit) == {f"blocks.{i}.{path}" for i in range(2) for path in SWAPPED}
    # cross-attention k/v, the embeddings, the head and the audio projection stay as they were
    left = {name: m for name, m in kept.items() if name not in fp8_names(dit)}
    assert {"blocks.0.cross_attn.k", "blocks.1.audio_cross_attn_wrapper.audio_cross_attn.v", "head.head"} <= set(left)
    assert all(dit.get_submodule(name) is m for name, m in left.items())
    assert set(dit.state_dict()) == keys  # the checkpoint's keys: the fp8 copies are not saved


def test_linears_of_sizes_scaled_mm_cannot_take_stay_as_they_are():
    dit = random_dit(replace(TINY, dit=replace(TINY.dit, ffn_dim=120)))  # not a multiple of 16
    assert enable_fp8(dit) == 2 * (len(SWAPPED) - 2)
    assert not any(name.split(".", 2)[2].startswith("ffn") for name in fp8_names(dit))


def test_weights_are_quantised_per_output_channel_within_e4m3_precision():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    with torch.no_grad():
        linear.weight.mul_(torch.logspace(-3, 1, 48)[:, None])  # rows of very different sizes
    fp8 = FP8Linear(linear)
    assert fp8.weight is linear.weight and fp8.bias is linear.bias
    assert fp8.weight_fp8.dtype == E4M3 and fp8.weight_fp8.shape == (48, 64)
    assert fp8.weight_scale.shape == (1, 48)
    q = fp8.weight_fp8.float()
    assert torch.all(q.abs().amax(dim=1) == E4M3_MAX)  # each row's largest value uses the full range
    scale = fp8.weight_scale.reshape(-1, 1)
    w = linear.weight.detach()
    error = (q * scale - w).abs()
    # e4m3 keeps 3 mantissa bits: half a step is 2**-4 of the value (2**-10 of the scale below normals)
    assert torch.all(error <= w.abs() * 2**-4 + scale * 2**-10 + 1e-9)
    assert error.max() > 0


def test_the_fp8_product_matches_the_linear_within_its_precision():
    torch.manual_seed(1)
    linear = nn.Linear(64, 32)
    with torch.no_grad():
        linear.weight.mul_(torch.logspace(-2, 1, 32)[:, None])  # a wrong weight scale shows
    x = torch.randn(2, 5, 64) * torch.logspace(-2, 2, 5)[None, :, None]  # and a wrong activation scale
    out = FP8Linear(linear)(x)
    with torch.no_grad():
        want = linear(x)
        # each product term is off by at most (1 + 2**-4)**2 - 1 < 0.13; the bf16 result by 2**-8
        bound = 0.13 * (x.abs() @ linear.weight.abs().T) + 2**-8 * want.abs() + 2**-8 * linear.bias.abs() + 1e-3
    assert out.shape == (2, 5, 32) and out.dtype == torch.bfloat16
    assert torch.all((out.float() - want).abs() <= bound)


def test_pipeline_load_refuses_fp8_without_a_capable_gpu_before_reading_weights(weights, tmp_path):
    with pytest.raises(CheckpointError, match=r"fp8 needs a CUDA GPU of compute capability 8\.9 or newer"):
        Pipeline.load("tiny", weights, device="cpu", fp8=True)
    with pytest.raises(CheckpointError, match="fp8 needs a CUDA GPU"):  # not "file not found"
        Pipeline.load("tiny", tmp_path / "nowhere", device="cpu", fp8=True)
