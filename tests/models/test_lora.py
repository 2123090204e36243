"""LoRAs: reading every layout, refusing what does not fit, and patching weights in and out exactly."""

import hashlib
import json

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from models import RenderRequest
from models import lora as lora_module
from models.errors import InputError
from models.fp8 import FP8Linear, _quantise_rows, enable_fp8
from models.lora import Patcher, bases, inspect, load, map_key, plan
from models.specs import HUMO_1_7B, HUMO_17B, TINY, TINY_CONCAT, get_spec
from models.tiny import random_dit

from .lora_files import BLOCK_LINEARS, TOP_MODULES, block_linears, lora_key_shapes, param_shapes, write_lora

FORMATS = ("comfyui", "kohya", "diffusers")


def tiny_modules(spec):
    return [*block_linears(spec), *TOP_MODULES]


def params(dit):
    return {n: p.detach().clone() for n, p in dit.named_parameters()}


def assert_base(dit, base):
    for name, p in dit.named_parameters():
        assert torch.equal(p, base[name]), name


# -- each layout, merged ------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [TINY, TINY_CONCAT], ids=lambda s: s.name)
@pytest.mark.parametrize("fmt", FORMATS)
def test_two_stacked_loras_merge_as_w_plus_strength_scale_up_down(tmp_path, spec, fmt):
    shapes = param_shapes(spec)
    modules = tiny_modules(spec)
    a = write_lora(tmp_path / "a.safetensors", shapes, modules, fmt, rank=4, alpha=2.0, seed=1)
    b = write_lora(tmp_path / "b.safetensors", shapes, modules[::3], fmt, rank=2, seed=2)  # no alpha: scale 1
    dit = random_dit(spec)
    base = params(dit)

    lora_a, lora_b = load(a.path, spec), load(b.path, spec)
    record = Patcher(dit).use([(lora_a, 0.7), (lora_b, -1.3)])

    assert lora_a.info.format == lora_b.info.format == fmt
    assert set(lora_a.info.targets) == {f"{m}.weight" for m in modules}
    assert lora_a.info.modules == len(modules) and lora_a.info.rank == 4 and lora_b.info.rank == 2
    assert lora_a.info.skipped == ()
    assert record.patched == len(modules) and record.restored == 0
    da, db = a.expected(base, 0.7), b.expected(base, -1.3)
    for name, p in dit.named_parameters():
        want = base[name].double() + da.get(name, 0) + db.get(name, 0)
        torch.testing.assert_close(p, want.float(), rtol=1e-6, atol=1e-6, msg=name)
        if name in da:
            assert not torch.equal(p, base[name]), name
    assert torch.equal(dit.patch_embedding.bias, base["patch_embedding.bias"])  # biases untouched


@pytest.mark.parametrize(
    ("fmt", "prefix"),
    [("comfyui", "model.diffusion_model."), ("comfyui", ""), ("diffusers", "diffusion_model."), ("diffusers", "")],
)
def test_every_prefix_reads_alike(tmp_path, fmt, prefix):
    shapes = param_shapes(TINY)
    w = write_lora(tmp_path / "l.safetensors", shapes, ["blocks.1.ffn.2", "head.head"], fmt, rank=3, prefix=prefix)
    info = inspect(w.path, TINY)
    assert info.format == fmt and info.targets == ("blocks.1.ffn.2.weight", "head.head.weight")


def test_weights_keep_their_dtype_and_change_in_place(tmp_path):
    shapes = param_shapes(TINY)
    w = write_lora(tmp_path / "l.safetensors", shapes, ["blocks.0.self_attn.q"], "comfyui", rank=2, alpha=4.0)
    dit = random_dit(TINY).to(torch.bfloat16)
    param = dit.blocks[0].self_attn.q.weight
    before, storage = param.detach().clone(), param.data_ptr()
    Patcher(dit).use([(load(w.path, TINY), 1.0)])
    assert param.dtype == torch.bfloat16 and param.data_ptr() == storage
    want = before.double() + w.expected({"blocks.0.self_attn.q.weight": before}, 1.0)["blocks.0.self_attn.q.weight"]
    torch.testing.assert_close(param, want.to(torch.bfloat16))
    assert not torch.equal(param, before)


def test_full_deltas_change_weights_biases_and_bare_parameters(tmp_path):
    shapes = param_shapes(TINY)
    diffs = ["blocks.0.self_attn.o.weight", "blocks.0.self_attn.o.bias", "blocks.0.modulation", "blocks.1.norm3.weight"]
    w = write_lora(tmp_path / "d.safetensors", shapes, [], "comfyui", rank=1, diffs=diffs)
    dit = random_dit(TINY)
    base = params(dit)

    lora = load(w.path, TINY)
    Patcher(dit).use([(lora, 0.5)])

    assert lora.info.rank is None and lora.info.format == "comfyui"
    assert set(lora.info.targets) == set(diffs) and lora.info.modules == 3
    expected = w.expected(base, 0.5)
    for name, p in dit.named_parameters():
        want = base[name].double() + expected.get(name, 0)
        torch.testing.assert_close(p, want.float(), rtol=1e-6, atol=1e-6, msg=name)
    assert not torch.equal(dit.blocks[0].modulation, base["blocks.0.modulation"])


# -- strengths, restoring, switching ------------------------------------------------------------
def test_strength_zero_leaves_every_weight_bit_for_bit(tmp_path):
    shapes = param_shapes(TINY)
    w = write_lora(tmp_path / "l.safetensors", shapes, tiny_modules(TINY), "kohya", rank=4, alpha=1.0)
    dit = random_dit(TINY)
    base = params(dit)
    record = Patcher(dit).use([(load(w.path, TINY), 0.0)])
    assert record.patched == 0
    assert_base(dit, base)


def test_a_render_is_unchanged_at_strength_zero_and_after_restoring(pipelines, tmp_path):
    pipe = pipelines["tiny"]
    shapes = param_shapes(TINY)
    w = write_lora(tmp_path / "l.safetensors", shapes, tiny_modules(TINY), "comfyui", rank=4, alpha=4.0)
    lora = load(w.path, TINY)
    request = RenderRequest(prompt="p", mode="T", steps=1, seed=1)
    patcher = Patcher(pipe.dit)
    base = pipe.render(request).frames_sha256
    try:
        patcher.use([(lora, 0.0)])
        assert pipe.render(request).frames_sha256 == base
        patcher.use([(lora, 1.0)])
        assert pipe.render(request).frames_sha256 != base  # the LoRA reaches the picture
        patcher.use([])
        assert pipe.render(request).frames_sha256 == base
    finally:
        patcher.use([])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_use_nothing_restores_the_base_bit_for_bit_after_two_loras(tmp_path, dtype):
    shapes = param_shapes(TINY)
    a = write_lora(tmp_path / "a.safetensors", shapes, tiny_modules(TINY), "comfyui", rank=4, alpha=3.0, seed=1)
    b = write_lora(tmp_path / "b.safetensors", shapes, block_linears(TINY)[:5], "diffusers", rank=2, seed=2)
    dit = random_dit(TINY).to(dtype)  # a subtraction would not come back exactly
    base = params(dit)
    patcher = Patcher(dit)
    patcher.use([(load(a.path, TINY), 1.0), (load(b.path, TINY), 2.0)])
    patcher.use([(load(b.path, TINY), 1.0)])  # switching keeps the originals, not the last weights
    assert not torch.equal(dit.blocks[0].self_attn.q.weight, base["blocks.0.self_attn.q.weight"])

    record = patcher.use([])

    assert record.patched == 0 and record.restored == 5
    assert_base(dit, base)


def test_switching_sets_equals_applying_the_new_set_on_the_base(tmp_path):
    shapes = param_shapes(TINY)
    a = write_lora(tmp_path / "a.safetensors", shapes, tiny_modules(TINY), "kohya", rank=4, alpha=2.0, seed=1)
    b = write_lora(tmp_path / "b.safetensors", shapes, block_linears(TINY)[::2], "comfyui", rank=3, seed=2)
    lora_a, lora_b = load(a.path, TINY), load(b.path, TINY)
    switched, fresh = random_dit(TINY).to(torch.bfloat16), random_dit(TINY).to(torch.bfloat16)

    patcher = Patcher(switched)
    patcher.use([(lora_a, 1.0)])
    record = patcher.use([(lora_b, 0.8)])
    Patcher(fresh).use([(lora_b, 0.8)])

    assert record.patched == len(lora_b.info.targets)
    assert record.restored == len(set(lora_a.info.targets) - set(lora_b.info.targets))
    fresh_params = params(fresh)
    assert_base(switched, fresh_params)


def test_the_same_set_again_patches_nothing(tmp_path):
    shapes = param_shapes(TINY)
    a = write_lora(tmp_path / "a.safetensors", shapes, tiny_modules(TINY), "comfyui", rank=4, seed=1)
    b = write_lora(tmp_path / "b.safetensors", shapes, tiny_modules(TINY)[:3], "comfyui", rank=4, seed=2)
    dit = random_dit(TINY)
    patcher = Patcher(dit)
    first = patcher.use([(load(a.path, TINY), 1.0), (load(b.path, TINY), 0.5)])
    patched = params(dit)

    again = patcher.use([(load(a.path, TINY), 1.0), (load(b.path, TINY), 0.5)])  # re-read: same sha256

    assert first.patched == len(tiny_modules(TINY)) and (again.patched, again.restored) == (0, 0)
    assert_base(dit, patched)
    assert again.describe()["loras"] == [
        {"name": "a.safetensors", "sha256": hashlib.sha256(a.path.read_bytes()).hexdigest(), "strength": 1.0},
        {"name": "b.safetensors", "sha256": hashlib.sha256(b.path.read_bytes()).hexdigest(), "strength": 0.5},
    ]
    assert patcher.use([(load(a.path, TINY), 1.0), (load(b.path, TINY), 0.25)]).patched == len(tiny_modules(TINY))
    assert patcher.use([(load(b.path, TINY), 0.5), (load(a.path, TINY), 1.0)]).patched == len(tiny_modules(TINY))


def test_fp8_linears_are_requantised_after_patching_and_restoring(tmp_path):
    shapes = param_shapes(TINY)
    w = write_lora(tmp_path / "l.safetensors", shapes, ["blocks.0.self_attn.q", "blocks.1.ffn.0"], "kohya", rank=4)
    dit = random_dit(TINY)
    enable_fp8(dit)
    layer = dit.blocks[0].self_attn.q
    assert isinstance(layer, FP8Linear)
    q0, s0 = layer.weight_fp8.clone(), layer.weight_scale.clone()
    patcher = Patcher(dit)

    patcher.use([(load(w.path, TINY), 1.0)])
    q, s = _quantise_rows(layer.weight.detach())
    assert torch.equal(layer.weight_fp8.view(torch.uint8), q.view(torch.uint8))
    assert torch.equal(layer.weight_scale, s.reshape(1, -1)) and not torch.equal(layer.weight_scale, s0)

    patcher.use([])
    assert torch.equal(layer.weight_fp8.view(torch.uint8), q0.view(torch.uint8))
    assert torch.equal(layer.weight_scale, s0)


def test_a_lora_read_for_another_spec_is_refused_before_anything_changes(tmp_path):
    shapes = param_shapes(TINY_CONCAT)
    w = write_lora(tmp_path / "l.safetensors", shapes, ["blocks.0.ffn.0", "patch_embedding"], "comfyui", rank=2)
    dit = random_dit(TINY)
    base = params(dit)
    with pytest.raises(InputError, match=r"l\.safetensors was read for tiny-concat; this model's patch_embedding"):
        Patcher(dit).use([(load(w.path, TINY_CONCAT), 1.0)])
    assert_base(dit, base)


# -- wrong base, bases() ------------------------------------------------------------------------
def test_a_17b_lora_on_the_1_7b_names_the_module_and_both_shapes(tmp_path):
    shapes = param_shapes(HUMO_17B)  # the meta device: no 17B weights exist here
    w = write_lora(tmp_path / "big.safetensors", shapes, ["blocks.0.self_attn.q", "blocks.0.ffn.0"], "comfyui", rank=1)
    with pytest.raises(InputError) as err:
        inspect(w.path, HUMO_1_7B)
    assert err.value.field == "lora"
    assert err.value.message == (
        "big.safetensors: this LoRA is for a model of width 5120; humo-1.7b's blocks.0.self_attn.q is [1536, 1536] "
        "(the LoRA's is [5120, 5120]); pick a checkpoint it was made for"
    )
    assert inspect(w.path, HUMO_17B).targets == ("blocks.0.self_attn.q.weight", "blocks.0.ffn.0.weight")
    assert bases(w.path) == ["humo-17b"]


def test_a_lora_past_the_last_block_is_a_wrong_base(tmp_path):
    shapes = param_shapes(HUMO_17B)
    w = write_lora(tmp_path / "deep.safetensors", shapes, ["blocks.35.cross_attn.o"], "kohya", rank=1)
    with pytest.raises(InputError, match=r"deep\.safetensors: this LoRA changes blocks up to 35; humo-1\.7b has 30"):
        inspect(w.path, HUMO_1_7B)
    assert bases(w.path) == ["humo-17b"]
    same_width = {}
    for n in (1, 2):  # tiny's width, one block more than tiny has
        same_width[f"lora_unet_blocks_{n}_self_attn_o.lora_down.weight"] = (1, 64)
        same_width[f"lora_unet_blocks_{n}_self_attn_o.lora_up.weight"] = (64, 1)
    with pytest.raises(InputError) as err:
        plan(same_width, TINY, "deep.safetensors")
    assert err.value.message == (
        "deep.safetensors: this LoRA changes blocks up to 2; tiny has 2 blocks (0-1); pick a checkpoint it was made for"
    )


def test_bases_lists_the_specs_a_file_fits(tmp_path):
    shapes = param_shapes(TINY)
    blocks_only = write_lora(tmp_path / "b.safetensors", shapes, block_linears(TINY), "comfyui", rank=2)
    with_patch = write_lora(tmp_path / "p.safetensors", shapes, ["patch_embedding"], "kohya", rank=2)
    assert bases(blocks_only.path) == ["tiny", "tiny-concat"]
    assert bases(with_patch.path) == ["tiny"]
    with pytest.raises(InputError) as err:
        inspect(with_patch.path, TINY_CONCAT)
    assert err.value.message == (
        "p.safetensors: this LoRA does not fit tiny-concat: tiny-concat's patch_embedding is [64, 36, 1, 2, 2] "
        "(the LoRA's is [64, 16, 1, 2, 2]); pick a checkpoint it was made for"
    )


# -- mapping full-size names (no files) ---------------------------------------------------------
@pytest.mark.parametrize("spec", [HUMO_1_7B, HUMO_17B], ids=lambda s: s.name)
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_linear_of_the_real_checkpoints_maps_exactly(spec, fmt):
    shapes = param_shapes(spec)
    modules = [*block_linears(spec), *TOP_MODULES]
    keys = lora_key_shapes(shapes, modules, fmt, rank=32)

    info = plan(keys, spec)

    assert set(info.targets) == {f"{m}.weight" for m in modules} and len(info.targets) == len(modules)
    assert info.format == fmt and info.rank == 32 and info.skipped == ()
    assert len(info.targets) == spec.dit.num_layers * len(BLOCK_LINEARS) + len(TOP_MODULES)
    other = HUMO_17B if spec is HUMO_1_7B else HUMO_1_7B
    with pytest.raises(InputError, match="this LoRA is for a model of width"):
        plan(keys, other)


def test_kohya_text_and_audio_cross_attention_stay_apart():
    for n in (0, 3):
        text = f"lora_unet_blocks_{n}_cross_attn_q.lora_down.weight"
        assert map_key(text, HUMO_17B) == f"blocks.{n}.cross_attn.q.weight"
        audio = f"lora_unet_blocks_{n}_audio_cross_attn_wrapper_audio_cross_attn_q.lora_up.weight"
        assert map_key(audio, HUMO_17B) == f"blocks.{n}.audio_cross_attn_wrapper.audio_cross_attn.q.weight"
    assert map_key("lora_unet_blocks_0_cross_attn_k.alpha", TINY) == "blocks.0.cross_attn.k.weight"
    assert map_key("lora_unet_blocks_0_attn_q.lora_down.weight", TINY) is None  # no suffix guessing
    assert map_key("lora_unet_blocks_0_cross_attn_qq.lora_down.weight", TINY) is None


def test_diffusers_names_map_through_explicit_tables():
    cases = {
        "transformer.blocks.4.attn1.to_out.0.lora_B.weight": "blocks.4.self_attn.o.weight",
        "transformer.blocks.4.attn2.to_k.lora_A.weight": "blocks.4.cross_attn.k.weight",
        "transformer.blocks.4.ffn.net.0.proj.lora_A.weight": "blocks.4.ffn.0.weight",
        "transformer.blocks.4.norm2.diff": "blocks.4.norm3.weight",
        "transformer.blocks.4.norm2.diff_b": "blocks.4.norm3.bias",
        "transformer.condition_embedder.time_proj.lora_A.weight": "time_projection.1.weight",
        "transformer.proj_out.lora_B.weight": "head.head.weight",
        "transformer.blocks.4.audio_cross_attn_wrapper.audio_cross_attn.v.lora_A.weight": (
            "blocks.4.audio_cross_attn_wrapper.audio_cross_attn.v.weight"
        ),
        "diffusion_model.blocks.4.modulation.diff": "blocks.4.modulation",
        "blocks.4.self_attn.norm_q.diff": "blocks.4.self_attn.norm_q.weight",
        "transformer.blocks.4.audio_attn2.to_q.lora_A.weight": None,  # diffusers' substring mangling
        "transformer.blocks.4.attn1.to_out.1.lora_A.weight": None,
    }
    assert {k: map_key(k, HUMO_1_7B) for k in cases} == cases


# -- skipped and unknown keys -------------------------------------------------------------------
def test_image_branch_keys_are_skipped_and_named(tmp_path):
    shapes = param_shapes(TINY)
    skipped = {
        "diffusion_model.blocks.0.cross_attn.k_img.lora_down.weight": torch.zeros(2, 64),
        "diffusion_model.blocks.0.cross_attn.k_img.lora_up.weight": torch.zeros(64, 2),
        "diffusion_model.blocks.1.cross_attn.v_img.lora_down.weight": torch.zeros(2, 64),
        "diffusion_model.blocks.1.cross_attn.norm_k_img.diff": torch.zeros(64),
        "diffusion_model.img_emb.proj.1.lora_down.weight": torch.zeros(2, 64),
        "diffusion_model.img_emb.proj.1.diff_b": torch.zeros(64),
    }
    w = write_lora(tmp_path / "i2v.safetensors", shapes, ["blocks.0.self_attn.q"], "comfyui", rank=2, extra=skipped)
    info = inspect(w.path, TINY)
    assert sorted(info.skipped) == sorted(skipped) and info.targets == ("blocks.0.self_attn.q.weight",)
    assert info.describe()["skipped"] == list(info.skipped)
    json.dumps(info.describe())

    diffusers = {
        "transformer.blocks.0.attn2.add_k_proj.lora_A.weight": (2, 64),
        "transformer.blocks.0.attn2.add_v_proj.lora_B.weight": (64, 2),
        "transformer.blocks.0.attn2.norm_added_k.diff": (64,),
        "transformer.condition_embedder.image_embedder.ff.net.0.proj.lora_A.weight": (2, 64),
        "lora_unet_blocks_1_cross_attn_k_img.lora_down.weight": (2, 64),
        "lora_unet_img_emb_proj_1.lora_up.weight": (64, 2),
        "transformer.blocks.0.attn2.to_q.lora_A.weight": (2, 64),
        "transformer.blocks.0.attn2.to_q.lora_B.weight": (64, 2),
    }
    info = plan(diffusers, TINY)
    assert info.targets == ("blocks.0.cross_attn.q.weight",) and len(info.skipped) == 6


def test_unknown_keys_are_errors_naming_them(tmp_path):
    shapes = param_shapes(TINY)
    typo = "diffusion_model.blocks.0.self_attn.q_typo.lora_down.weight"
    w = write_lora(
        tmp_path / "t.safetensors",
        shapes,
        ["blocks.0.self_attn.q"],
        "comfyui",
        rank=2,
        extra={typo: torch.zeros(2, 64)},
    )
    with pytest.raises(InputError) as err:
        inspect(w.path, TINY)
    assert err.value.field == "lora"
    assert err.value.message == (
        f"t.safetensors: 1 keys match no module of tiny's DiT: {typo}; "
        "pick a LoRA made for HuMo or Wan2.1 (not for a text encoder, a VAE or another model)"
    )
    many = {f"lora_te_encoder_layer_{i}.lora_down.weight": (2, 8) for i in range(15)}
    with pytest.raises(InputError) as err:
        plan(many, TINY, "t.safetensors")
    assert err.value.message.startswith("t.safetensors: 15 keys match no module of tiny's DiT: lora_te_encoder_")
    assert "lora_te_encoder_layer_11.lora_down.weight (and 3 more); pick a LoRA" in err.value.message


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"blocks.0.self_attn.q.weight": (64, 64)}, "holds no LoRA tensors"),
        ({"blocks.0.self_attn.q.lora_down.weight": (2, 64)}, "blocks.0.self_attn.q.lora_down.weight has no matching"),
        (
            {"blocks.0.self_attn.q.lora_down.weight": (2, 64), "blocks.0.self_attn.q.lora_up.weight": (64, 3)},
            "do not make a low-rank pair",
        ),
        (
            {"blocks.0.self_attn.q.diff": (64, 64), "diffusion_model.blocks.0.self_attn.q.diff": (64, 64)},
            "are the same tensor; keep one",
        ),
        ({"blocks.0.cross_attn.k_img.diff": (64, 64)}, "every key is for modules HuMo lacks"),
        ({"blocks.0.norm3.lora_down.weight": (1, 64), "blocks.0.norm3.lora_up.weight": (64, 1)}, "no such delta"),
    ],
)
def test_files_that_are_not_usable_loras_say_why(keys, message):
    with pytest.raises(InputError, match=message):
        plan(keys, TINY)


def test_a_file_that_is_not_safetensors_says_so(tmp_path):
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "photo.safetensors", format="PNG")
    (tmp_path / "noise.safetensors").write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    (tmp_path / "empty.safetensors").write_bytes(b"")
    for name in ("photo.safetensors", "noise.safetensors", "empty.safetensors"):
        with pytest.raises(InputError, match=rf"^lora: {name}: not a safetensors file \(") as err:
            inspect(tmp_path / name, TINY)
        assert err.value.field == "lora"
        with pytest.raises(InputError, match="not a safetensors file"):
            bases(tmp_path / name)
    with pytest.raises(InputError, match="missing.safetensors: file not found"):
        inspect(tmp_path / "missing.safetensors", TINY)


def test_load_identifies_the_file_by_its_sha256(tmp_path):
    shapes = param_shapes(TINY)
    w = write_lora(tmp_path / "l.safetensors", shapes, ["head.head"], "diffusers", rank=2, alpha=1.0)
    lora = load(w.path, get_spec("tiny"))
    assert lora.sha256 == hashlib.sha256(w.path.read_bytes()).hexdigest()
    assert lora.spec == "tiny" and lora.name == "l.safetensors" and set(lora.deltas) == {"head.head.weight"}


def test_inspect_reads_only_the_header(tmp_path, monkeypatch):
    shapes = param_shapes(TINY)
    w = write_lora(tmp_path / "l.safetensors", shapes, block_linears(TINY), "comfyui", rank=2)

    class HeaderOnly:
        def __init__(self, path, framework):
            self.file = safe_open(path, framework=framework)

        def __enter__(self):
            self.opened = self.file.__enter__()
            return self

        def __exit__(self, *exc):
            return self.file.__exit__(*exc)

        def keys(self):
            return self.opened.keys()

        def get_slice(self, key):
            return self.opened.get_slice(key)

        def get_tensor(self, key):
            raise AssertionError(f"inspect read {key}")

    monkeypatch.setattr(lora_module, "safe_open", HeaderOnly)
    assert len(inspect(w.path, TINY).targets) == len(block_linears(TINY))
    assert bases(w.path) == ["tiny", "tiny-concat"]
