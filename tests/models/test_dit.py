import json
from pathlib import Path

import pytest
import torch

from models.dit import HumoDiT, apply_rope, rope_table
from models.errors import ModelsError, ShapeError
from models.specs import HUMO_1_7B, HUMO_17B, TINY
from models.tiny import random_dit

REFERENCE = Path(__file__).parent / "data" / "humo_checkpoint_keys.json"  #: official key names and shapes


@pytest.mark.parametrize("spec,name", [(HUMO_1_7B, "HuMo-1.7B"), (HUMO_17B, "HuMo-17B")])
def test_full_size_architecture_matches_official_keys_and_shapes(spec, name):
    official = json.loads(REFERENCE.read_text())[name]
    with torch.device("meta"):
        dit = HumoDiT(spec.dit)
    ours = {k: list(v.shape) for k, v in dit.state_dict().items()}
    assert sorted(set(official) - set(ours)) == []
    assert sorted(set(ours) - set(official)) == []
    assert {k: v for k, v in ours.items() if official[k] != v} == {}


def test_parameter_counts_match_the_published_ones():
    with torch.device("meta"):
        small, big = HumoDiT(HUMO_1_7B.dit), HumoDiT(HUMO_17B.dit)
    assert sum(p.numel() for p in small.state_dict().values()) == 1_741_569_088
    assert sum(p.numel() for p in big.state_dict().values()) == 17_055_925_312


def tiny_inputs(batch=1, frames=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = TINY.dit
    return (
        torch.randn(batch, c.in_dim, frames, 6, 8, generator=g),
        torch.tensor([900] * batch),
        torch.randn(batch, c.text_len, c.text_dim, generator=g),
        torch.randn(batch, frames, c.audio_window, c.audio_blocks, c.audio_channels, generator=g),
    )


def test_forward_shape_and_batch_independence():
    dit = random_dit(TINY)
    x, t, text, audio = tiny_inputs(batch=2)
    with torch.no_grad():
        both = dit(x, t, text, audio)
        first = dit(x[:1], t[:1], text[:1], audio[:1])
    assert both.shape == x.shape and both.dtype == torch.float32
    torch.testing.assert_close(both[:1], first, rtol=1e-5, atol=1e-5)


def test_audio_reaches_only_its_own_latent_frame():
    """Each latent frame's tokens attend only to that frame's audio tokens."""
    dit = random_dit(TINY)
    dit.blocks = dit.blocks[:1]  # one block: no mixing through self-attention afterwards
    x, t, text, audio = tiny_inputs()
    changed = audio.clone()
    changed[:, 3] += 5.0  # latent frame 3's window only
    block = dit.blocks[0]
    with torch.no_grad():
        tokens = torch.randn(1, 5 * 12, TINY.dit.dim)
        a1, a2 = dit.audio_proj(audio), dit.audio_proj(changed)
        out1 = block.audio_cross_attn_wrapper(tokens, a1, 5).view(1, 5, 12, -1)
        out2 = block.audio_cross_attn_wrapper(tokens, a2, 5).view(1, 5, 12, -1)
    diff = (out1 - out2).abs().amax(dim=(0, 2, 3))
    assert diff[3] > 1e-3
    assert torch.all(diff[[0, 1, 2, 4]] == 0)


def test_rope_rotates_pairs_by_position_and_keeps_norm():
    table = rope_table((2, 3, 4), 32, torch.device("cpu"))
    assert table.shape == (24, 1, 16, 2)
    x = torch.randn(1, 24, 2, 32)
    y = apply_rope(x, table)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    # position 0 is the identity; the first pair at frame 1 turns by exactly 1 radian
    torch.testing.assert_close(y[0, 0], x[0, 0])
    e, o = x[0, 12, 0, 0], x[0, 12, 0, 1]
    c, s = torch.cos(torch.tensor(1.0)), torch.sin(torch.tensor(1.0))
    torch.testing.assert_close(y[0, 12, 0, :2], torch.stack([e * c - o * s, e * s + o * c]))


def reshaped(index: int, shape):
    """tiny_inputs() with input `index` replaced by zeros of `shape`."""
    args = list(tiny_inputs())
    args[index] = torch.zeros(shape, dtype=args[index].dtype)
    return args


@pytest.mark.parametrize(
    "args,message",
    [
        (reshaped(0, (1, 15, 5, 6, 8)), r"x: expected \[B, in_dim=16, F, H, W\], got \[1, 15, 5, 6, 8\]"),
        (reshaped(0, (16, 5, 6, 8)), r"x: expected \[B, in_dim=16, F, H, W\], got \[16, 5, 6, 8\]"),
        (reshaped(0, (1, 16, 5, 7, 8)), r"x: F, H, W = 5, 7, 8 must be multiples of the patch size \(1, 2, 2\)"),
        (reshaped(1, (2,)), r"t: expected \[B=1\] for x of shape \[1, 16, 5, 6, 8\], got \[2\]"),
        (reshaped(1, ()), r"t: expected \[B=1\] .* got \[\]"),
        (reshaped(2, (1, 32, 16)), r"text: expected \[B=1, text_len=32, text_dim=32\] .* got \[1, 32, 16\]"),
        (reshaped(2, (1, 20, 32)), r"text: expected \[B=1, text_len=32, text_dim=32\] .* got \[1, 20, 32\]"),
        (
            reshaped(3, (1, 4, 8, 5, 32)),
            r"audio_windows: expected \[B=1, F=5, audio_window=8, audio_blocks=5, audio_channels=32\] "
            r"for x of shape \[1, 16, 5, 6, 8\], got \[1, 4, 8, 5, 32\]",
        ),
        (reshaped(3, (2, 5, 8, 5, 32)), r"audio_windows: expected \[B=1, F=5, .* got \[2, 5, 8, 5, 32\]"),
        (reshaped(3, (1, 5, 8, 5, 16)), r"audio_windows: expected .*audio_channels=32\] .* got \[1, 5, 8, 5, 16\]"),
    ],
)
def test_forward_names_the_input_of_a_wrong_shape(args, message):
    dit = random_dit(TINY)
    with pytest.raises(ShapeError, match=message) as info:
        dit(*args)
    assert isinstance(info.value, ModelsError) and isinstance(info.value, ValueError)


def test_forward_checks_before_it_computes(monkeypatch):
    dit = random_dit(TINY)
    monkeypatch.setattr(dit, "patchify", lambda x: pytest.fail("patchify ran on bad input"))
    with pytest.raises(ShapeError, match="text"):
        dit(*reshaped(2, (1, 32, 16)))


# importing inductor, torch warns about its own use of torch.jit (torch/utils/mkldnn.py), not ours
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compile_blocks_is_reported():
    dit = random_dit(TINY)
    assert not dit.blocks_compiled
    dit.compile_blocks()  # wraps each block in torch.compile; nothing compiles until a call
    assert dit.blocks_compiled
