"""The self-attention kernel: chosen once at load, recorded, and run inside compiled blocks.

FlashAttention-4 needs a Hopper GPU, so here a stand-in with its signature takes the place of
`flash_attn.cute.flash_attn_func` (the GPU benchmark checks the real one against cuDNN).
"""

import sys
import types

import pytest
import torch
import torch.nn.functional as F

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

    stand_in(monkeypatch, "flash_attn.cute", flash_attn_func=flash_attn_func)
    monkeypatch.setattr(attention, "_current", "fa4")
    return calls


def stand_in(monkeypatch, name: str, **functions) -> None:
    """Put a module `name` (and its empty parent package) holding `functions` in sys.modules."""
    module = types.ModuleType(name)
    for attr, fn in functions.items():
        setattr(module, attr, fn)
    parent = name.rpartition(".")[0]
    monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
    monkeypatch.setitem(sys.modules, name, module)


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


@pytest.mark.parametrize("stand_in", ["fa4_stand_in", "fa3_stand_in"])
def test_the_kernel_is_one_op_inside_a_compiled_block(stand_in, request):
    """torch.compile traces the block through the op's fake (no graph break: fullgraph; FP8's
    quantisation is traced with the block, for inductor to fuse) and calls the kernel at run time."""
    calls = request.getfixturevalue(stand_in)
    dit = random_dit(TINY).bfloat16()  # the FP8 kernel returns bf16, as the DiT runs on a GPU
    x, t, text, audio = (a.bfloat16() if a.is_floating_point() else a for a in tiny_inputs())
    tokens, grid = dit.patchify(x)
    _, e0 = dit.embed_time(t)
    args = (tokens, e0, dit.embed_text(text), dit.audio_proj(audio), attention_rope(dit, grid), grid[0])
    block = dit.blocks[0]
    with torch.no_grad():
        eager = block(*args)
        compiled = torch.compile(block, backend="aot_eager", fullgraph=True, dynamic=False)(*args)
    torch.testing.assert_close(compiled, eager)
    assert len(calls) == 2  # once eager, once in the compiled graph


def attention_rope(dit, grid):
    from models.dit import rope_table

    return rope_table(grid, dit.cfg.head_dim, CPU)


def test_fp8_attention_is_opt_in(kernel_restored, monkeypatch):
    """ "auto" never takes the FP8 kernel, even where it could run; naming it says what it needs."""
    monkeypatch.setattr(attention, "usable", lambda kernel, device, dtype: None)
    assert attention.select("auto", CPU, torch.bfloat16) == "fa4"
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="flashinfer is not installed|needs a Hopper"):
        attention.select("fa3-fp8", CPU, torch.bfloat16)
    assert "fa3-fp8" in str(attention.usable("flex", CPU, torch.bfloat16))  # the choices name it


def test_quantise_heads_scales_each_head_to_the_fp8_range():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 50, 3, 16, generator=g) * torch.tensor([0.01, 1.0, 300.0])[:, None]  # heads far apart
    q, scale = attention.quantise_heads(x)
    assert q.dtype == torch.float8_e4m3fn and q.shape == (50, 6, 16) and scale.shape == (6,)
    back = (q.float() * scale[:, None]).unflatten(1, (2, 3)).transpose(0, 1)  # [B, L, N, D] again
    for b in range(2):
        for n in range(3):
            head = x[b, :, n]
            assert back[b, :, n].abs().max() == pytest.approx(head.abs().max().item(), rel=1e-6)  # max -> 448 exactly
            assert ((back[b, :, n] - head).norm() / head.norm()).item() < 0.04  # e4m3: 3 mantissa bits


@pytest.fixture
def fa3_stand_in(monkeypatch, kernel_restored):
    """flashinfer.prefill with a CPU single_prefill_with_kv_cache (dequantise, float32 SDPA) that
    records its inputs; "fa3-fp8" selected."""
    calls = []

    def single_prefill_with_kv_cache(q, k, v, *, scale_q, scale_k, scale_v, o_dtype, backend):
        calls.append((q.dtype, q.shape, backend))
        qd, kd, vd = (t.float() * s[:, None] for t, s in ((q, scale_q), (k, scale_k), (v, scale_v)))
        out = F.scaled_dot_product_attention(qd.transpose(0, 1), kd.transpose(0, 1), vd.transpose(0, 1))
        return out.transpose(0, 1).to(o_dtype).contiguous()  # [L, H, D], allocated like the kernel's

    stand_in(monkeypatch, "flashinfer.prefill", single_prefill_with_kv_cache=single_prefill_with_kv_cache)
    monkeypatch.setattr(attention, "_current", "fa3-fp8")
    return calls


def test_fp8_attention_keeps_batches_and_heads_apart(fa3_stand_in):
    """Batch and heads share the kernel's head axis: each output row is its own batch's and
    head's attention, within FP8's error of the exact one."""
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 40, 3, 16, generator=g) for _ in range(3))
    k[1] *= 4  # the second batch element's scores are much sharper: mixing would show
    out = attention.self_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    exact = attention.sdpa(q, k, v)
    assert out.shape == exact.shape and out.dtype == torch.bfloat16
    assert fa3_stand_in == [(torch.float8_e4m3fn, torch.Size([40, 6, 16]), "fa3")]
    err = [[((out[b].float() - exact[c]).norm() / exact[c].norm()).item() for c in range(2)] for b in range(2)]
    assert err[0][0] < 0.15 and err[1][1] < 0.15  # FP8's error (its own batch's result)
    assert err[0][1] > 0.5 and err[1][0] > 0.5  # far from the other batch's


def test_a_kernel_that_fails_to_build_is_a_load_error(fa3_stand_in, monkeypatch):
    """flashinfer builds FA3 at its first call; select makes that call, so a missing nvcc is
    a CheckpointError at load, and the kernel is not selected."""

    def no_nvcc(*args, **kwargs):
        raise RuntimeError("Could not find nvcc")

    monkeypatch.setattr(sys.modules["flashinfer.prefill"], "single_prefill_with_kv_cache", no_nvcc)
    monkeypatch.setattr(attention, "usable", lambda kernel, device, dtype: None)
    attention._current = "sdpa"
    with pytest.raises(CheckpointError, match="attention 'fa3-fp8' failed to build or run: Could not find nvcc"):
        attention.select("fa3-fp8", CPU, torch.bfloat16)
    assert attention.current() == "sdpa"


def test_a_kernel_builds_at_select(fa3_stand_in, monkeypatch):
    monkeypatch.setattr(attention, "usable", lambda kernel, device, dtype: None)
    assert attention.select("fa3-fp8", CPU, torch.bfloat16, head_dim=64) == "fa3-fp8"
    assert fa3_stand_in == [(torch.float8_e4m3fn, torch.Size([128, 1, 64]), "fa3")]  # one call, at the head size


def test_load_refuses_a_kernel_that_cannot_run_before_reading_weights(tmp_path, kernel_restored):
    from models.pipeline import Pipeline

    with pytest.raises(CheckpointError, match="attention 'fa3-fp8': (flashinfer is not installed|FA3 FP8)"):
        Pipeline.load("tiny", tmp_path / "no-weights-here", attention="fa3-fp8")
