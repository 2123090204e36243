"""The self-attention kernel: chosen once at load, recorded, and run inside compiled blocks.

FlashAttention-4 needs a Hopper GPU, so here a stand-in with its signature takes the place of
`flash_attn.cute.flash_attn_func` (the GPU benchmark checks the real one against cuDNN).
"""

import sys
import types

import pytest
import torch

from models import attention
from models.errors import CheckpointError
from models.specs import TINY
from models.tiny import random_dit

CPU = torch.device("cpu")


@pytest.fixture
def kernel_restored():
    before = attention.current()
    yield
    attention._current = before


def test_auto_takes_sdpa_where_fa4_cannot_run(kernel_restored):
    assert attention.select("auto", CPU, torch.float32) == "sdpa" == attention.current()


@pytest.mark.parametrize(
    ("kernel", "message"),
    [("fa4", "FlashAttention-4 is not installed|needs a Hopper"), ("flex", "unknown attention kernel 'flex'")],
)
def test_a_kernel_that_cannot_run_is_refused_with_the_reason(kernel, message, kernel_restored):
    attention.select("sdpa", CPU, torch.float32)
    with pytest.raises(CheckpointError, match=message):
        attention.select(kernel, CPU, torch.float32)
    assert attention.current() == "sdpa"  # a refused choice changes nothing


@pytest.fixture
def fa4_stand_in(monkeypatch, kernel_restored):
    """flash_attn.cute with a CPU flash_attn_func that counts its calls; "fa4" selected."""
    calls = []

    def flash_attn_func(q, k, v):
        calls.append(q.shape)
        return attention.sdpa(q, k, v) * 1.5, None  # returns (out, lse) like some releases

    cute = types.ModuleType("flash_attn.cute")
    cute.flash_attn_func = flash_attn_func
    monkeypatch.setitem(sys.modules, "flash_attn", types.ModuleType("flash_attn"))
    monkeypatch.setitem(sys.modules, "flash_attn.cute", cute)
    monkeypatch.setattr(attention, "_current", "fa4")
    return calls


def tiny_inputs():
    g = torch.Generator().manual_seed(3)
    c = TINY.dit
    return (
        torch.randn(1, c.in_dim, 3, 6, 8, generator=g),
        torch.tensor([700]),
        torch.randn(1, c.text_len, c.text_dim, generator=g),
        torch.randn(1, 3, c.audio_window, c.audio_blocks, c.audio_channels, generator=g),
    )


def test_self_attention_runs_through_the_selected_kernel(fa4_stand_in):
    dit = random_dit(TINY)
    inputs = tiny_inputs()
    with torch.no_grad():
        out = dit(*inputs)
        attention._current = "sdpa"
        plain = dit(*inputs)
    assert len(fa4_stand_in) == TINY.dit.num_layers  # self-attention only; cross-attention stays on SDPA
    assert not torch.allclose(out, plain)  # the stand-in's output (scaled) reached the result


def test_the_kernel_is_one_op_inside_a_compiled_block(fa4_stand_in):
    """torch.compile traces the block through the op's fake (no graph break: fullgraph) and
    calls the kernel at run time."""
    dit = random_dit(TINY)
    x, t, text, audio = tiny_inputs()
    tokens, grid = dit.patchify(x)
    _, e0 = dit.embed_time(t)
    args = (tokens, e0, dit.embed_text(text), dit.audio_proj(audio), attention_rope(dit, grid), grid[0])
    block = dit.blocks[0]
    with torch.no_grad():
        eager = block(*args)
        compiled = torch.compile(block, backend="aot_eager", fullgraph=True, dynamic=False)(*args)
    torch.testing.assert_close(compiled, eager)
    assert len(fa4_stand_in) == 2  # once eager, once in the compiled graph


def attention_rope(dit, grid):
    from models.dit import rope_table

    return rope_table(grid, dit.cfg.head_dim, CPU)
