"""The sequence-parallel DiT on gloo groups of CPU ranks gives the unsharded model's output."""

import multiprocessing
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from models import RenderRequest
from models.sequence_parallel import GroupSizeError, SequenceParallelDiT, check_group_size
from models.specs import HUMO_17B, TINY
from models.tiny import random_dit
from workers.hero_group import RankGroup

#: the tiny DiT with 4 heads, so that groups of 2 and 4 ranks can split them
CONFIG = replace(TINY.dit, num_heads=4)
SPEC = replace(TINY, dit=CONFIG)
#: latent sizes (F, H, W) -> tokens: 75 (padded on 2 and 4 ranks; slices start mid-frame),
#: 60 (no padding), 6 (on 4 ranks the last rank holds nothing but padding)
SHAPES = [(5, 6, 10), (5, 6, 8), (2, 2, 6)]

multiprocessing.get_context("forkserver").set_forkserver_preload([__name__])


def inputs(shape, seed: int, batch: int = 2):
    g = torch.Generator().manual_seed(seed)
    c = CONFIG
    f, h, w = shape
    return (
        torch.randn(batch, c.in_dim, f, h, w, generator=g),
        torch.tensor([900.0, 250.0][:batch]),
        torch.randn(batch, c.text_len, c.text_dim, generator=g),
        torch.randn(batch, f, c.audio_window, c.audio_blocks, c.audio_channels, generator=g),  # audio in every frame
    )


def run_rank(rank: int, size: int, store: str, state: dict, out: str) -> None:
    """One rank: the sequence-parallel DiT, loaded strictly from HumoDiT's state dict."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    dit = SequenceParallelDiT(CONFIG).eval()
    dit.load_state_dict(state)  # strict: the same keys as HumoDiT
    with torch.no_grad():
        outputs = [dit(*inputs(shape, seed)) for seed, shape in enumerate(SHAPES)]
    try:
        SequenceParallelDiT(TINY.dit)  # 2 heads
        error = None
    except GroupSizeError as exc:
        error = str(exc)
    torch.save({"outputs": outputs, "error": error}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize("size", [2, 4])
def test_sharded_forward_equals_the_unsharded_one(size, tmp_path):
    dit = random_dit(SPEC, seed=1)
    with torch.no_grad():
        expected = [dit(*inputs(shape, seed)) for seed, shape in enumerate(SHAPES)]
    # forkserver: the ranks fork from one process that imported the models once (4 imports cost ~20 s here)
    mp.start_processes(
        run_rank,
        args=(size, str(tmp_path / "store"), dit.state_dict(), str(tmp_path)),
        nprocs=size,
        start_method="forkserver",
    )
    for rank in range(size):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for shape, out, want in zip(SHAPES, got["outputs"], expected):
            torch.testing.assert_close(
                out, want, rtol=1e-5, atol=1e-5, msg=lambda m, rank=rank, shape=shape: f"rank {rank}, {shape}: {m}"
            )
        if size == 4:
            assert "group of 4 ranks cannot split 2 attention heads" in got["error"]
            assert "divides 2: 1, 2" in got["error"]


@pytest.mark.parametrize(
    "heads,size,ok", [(40, 8, True), (40, 5, True), (40, 3, False), (40, 16, False), (2, 4, False)]
)
def test_group_size_must_divide_the_heads(heads, size, ok):
    cfg = replace(HUMO_17B.dit, num_heads=heads)
    if ok:
        check_group_size(cfg, size)
    else:
        with pytest.raises(GroupSizeError, match=f"group of {size} ranks cannot split {heads} attention heads"):
            check_group_size(cfg, size)


def test_render_through_a_two_rank_group_matches_the_single_process_render(weights, pipelines, media):
    request = RenderRequest(
        prompt="a presenter talks to camera", mode="TIA", image=str(media["image"]), audio=str(media["audio"]), seed=7
    )
    expected = pipelines["tiny"].render(request)
    steps = []
    with RankGroup("tiny", weights, 2, device="cpu", load_timeout=120) as group:
        result = group.render(request, lambda i, n: steps.append((i, n)), timeout=120)
    assert steps == [(i, 4) for i in range(1, 5)]
    torch.testing.assert_close(result.latents, expected.latents, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(result.video, expected.video, rtol=1e-4, atol=1e-4)
    assert result.audio_fit == expected.audio_fit


def test_every_rank_of_a_group_patches_the_same_loras(weights, pipelines, media, tmp_path):
    """A hero take with a LoRA stack: each rank patches its own copy of the DiT alike, so the
    group's clip equals the single-process render with the same stack."""
    from models.request import LoraUse
    from models.specs import TINY

    from .lora_files import block_linears, param_shapes, write_lora

    stack = []
    for seed, strength in ((1, 0.8), (2, -0.5)):
        path = tmp_path / f"lora-{seed}.safetensors"
        write_lora(path, param_shapes(TINY), block_linears(TINY), "kohya", rank=2, alpha=1.0, seed=seed)
        stack.append(LoraUse(str(path), strength))
    request = RenderRequest(prompt="a presenter", mode="TA", audio=str(media["audio"]), seed=7, loras=tuple(stack))
    try:
        expected = pipelines["tiny"].render(request)
        plain = pipelines["tiny"].render(
            RenderRequest(prompt="a presenter", mode="TA", audio=str(media["audio"]), seed=7)
        )
    finally:
        pipelines["tiny"].use_loras(())  # the shared pipeline back to its base
    assert not torch.equal(expected.latents, plain.latents)  # the stack changes the clip
    with RankGroup("tiny", weights, 2, device="cpu", load_timeout=120) as group:
        result = group.render(request, timeout=120)
    torch.testing.assert_close(result.latents, expected.latents, rtol=1e-4, atol=1e-4)
    assert [u["strength"] for u in result.engine["loras"]["loras"]] == [0.8, -0.5]
    assert result.engine["loras"]["patched"] == expected.engine["loras"]["patched"] > 0
