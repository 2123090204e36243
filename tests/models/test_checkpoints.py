"""Loading every official format, strictly, on checkpoints the tests write themselves."""

import json

import pytest
import torch
from safetensors.torch import save_file

from models.audio import AudioEncoder
from models.checkpoints import load_into, open_checkpoint
from models.dit import HumoDiT
from models.errors import CheckpointError
from models.pipeline import Pipeline
from models.specs import TINY, TINY_CONCAT
from models.text import build_text_encoder
from models.text import official_key_map as text_keys
from models.tiny import random_dit, write_dit
from models.vae import build_vae, official_key, official_key_map

from .test_dit import tiny_inputs


def meta_dit(spec):
    with torch.device("meta"):
        return HumoDiT(spec.dit)


def run(dit, spec=TINY):
    x, t, text, audio = tiny_inputs()
    if spec.dit.in_dim != x.shape[1]:
        x = torch.randn(1, spec.dit.in_dim, *x.shape[2:], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return dit(x, t, text, audio)


def test_ema_pth_loads_and_reproduces_the_model(tmp_path):
    original = random_dit(TINY, seed=7)
    write_dit(original, tmp_path / "ema.pth", extras={"mask_head.0.weight": torch.ones(3)})
    loaded = meta_dit(TINY)
    top = {n for n, _ in loaded.named_children()}
    load_into(loaded, open_checkpoint(tmp_path / "ema.pth"), extra_ok=lambda k: k.split(".")[0] not in top)
    assert not any(p.is_meta for p in loaded.parameters())
    torch.testing.assert_close(run(loaded), run(original), rtol=0, atol=0)


def test_sharded_safetensors_stream_and_reproduce_the_model(tmp_path):
    original = random_dit(TINY_CONCAT, seed=8)
    index = tmp_path / "humo.safetensors.index.json"
    write_dit(original, index, shards=3)
    assert len(list(tmp_path.glob("humo-*-of-00003.safetensors"))) == 3
    loaded = meta_dit(TINY_CONCAT)
    load_into(loaded, open_checkpoint(index))
    torch.testing.assert_close(run(loaded, TINY_CONCAT), run(original, TINY_CONCAT), rtol=0, atol=0)


def test_bf16_load_casts_floating_tensors(tmp_path):
    write_dit(random_dit(TINY), tmp_path / "ema.pth")
    loaded = meta_dit(TINY)
    load_into(loaded, open_checkpoint(tmp_path / "ema.pth"), dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}


def test_missing_key_is_an_error_naming_it(tmp_path):
    state = random_dit(TINY).state_dict()
    del state["blocks.1.audio_cross_attn_wrapper.norm1_audio.bias"]
    torch.save(state, tmp_path / "ema.pth")
    with pytest.raises(CheckpointError, match=r"missing keys: blocks\.1\.audio_cross_attn_wrapper\.norm1_audio\.bias"):
        load_into(meta_dit(TINY), open_checkpoint(tmp_path / "ema.pth"))


def test_unexpected_key_inside_the_model_is_an_error_even_where_extras_are_allowed(tmp_path):
    write_dit(random_dit(TINY), tmp_path / "ema.pth", extras={"blocks.0.self_attn.q.lora": torch.ones(2)})
    dit = meta_dit(TINY)
    top = {n for n, _ in dit.named_children()}
    with pytest.raises(CheckpointError, match=r"unexpected keys: blocks\.0\.self_attn\.q\.lora"):
        load_into(dit, open_checkpoint(tmp_path / "ema.pth"), extra_ok=lambda k: k.split(".")[0] not in top)


def test_training_only_extras_are_refused_where_not_allowed(tmp_path):
    index = tmp_path / "humo.safetensors.index.json"
    write_dit(random_dit(TINY_CONCAT), index, extras={"mask_head.weight": torch.ones(2)})
    with pytest.raises(CheckpointError, match=r"unexpected keys: mask_head\.weight"):
        load_into(meta_dit(TINY_CONCAT), open_checkpoint(index))


def test_wrong_shape_names_the_key_and_both_shapes(tmp_path):
    state = random_dit(TINY).state_dict()
    state["head.head.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "ema.pth")
    with pytest.raises(CheckpointError, match=r"head\.head\.bias has shape \[7\], the architecture needs \[64\]"):
        load_into(meta_dit(TINY), open_checkpoint(tmp_path / "ema.pth"))


def test_missing_shard_and_unreadable_file_are_clear_errors(tmp_path):
    index = tmp_path / "humo.safetensors.index.json"
    write_dit(random_dit(TINY_CONCAT), index, shards=2)
    (tmp_path / "humo-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="shard humo-00002-of-00002.safetensors is missing"):
        open_checkpoint(index)
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth: cannot read checkpoint"):
        open_checkpoint(tmp_path / "garbage.pth")
    with pytest.raises(CheckpointError, match="file not found"):
        open_checkpoint(tmp_path / "nope.pth")


def test_index_listing_a_key_its_shard_lacks(tmp_path):
    save_file({"a": torch.zeros(1)}, tmp_path / "s.safetensors")
    (tmp_path / "m.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "s.safetensors", "b": "s.safetensors"}})
    )
    with pytest.raises(CheckpointError, match="the index lists keys the shard lacks: b"):
        open_checkpoint(tmp_path / "m.safetensors.index.json")


def test_vae_official_names_follow_wans_layout():
    cfg = TINY.vae
    assert official_key("encoder.conv_in.weight", cfg) == "encoder.conv1.weight"
    assert official_key("encoder.down_blocks.3.conv_shortcut.bias", cfg) == "encoder.downsamples.3.shortcut.bias"
    assert official_key("encoder.down_blocks.0.norm2.gamma", cfg) == "encoder.downsamples.0.residual.3.gamma"
    assert official_key("encoder.mid_block.attentions.0.to_qkv.weight", cfg) == "encoder.middle.1.to_qkv.weight"
    assert official_key("decoder.mid_block.resnets.1.conv2.bias", cfg) == "decoder.middle.2.residual.6.bias"
    assert (
        official_key("decoder.up_blocks.0.upsamplers.0.time_conv.weight", cfg) == "decoder.upsamples.3.time_conv.weight"
    )
    assert official_key("decoder.up_blocks.1.resnets.0.conv1.weight", cfg) == "decoder.upsamples.4.residual.2.weight"
    assert official_key("decoder.up_blocks.3.resnets.2.norm1.gamma", cfg) == "decoder.upsamples.14.residual.0.gamma"
    assert official_key("decoder.norm_out.gamma", cfg) == "decoder.head.0.gamma"
    assert official_key("quant_conv.weight", cfg) == "conv1.weight"
    assert official_key("post_quant_conv.bias", cfg) == "conv2.bias"


def test_full_size_vae_mapping_is_one_to_one_with_194_tensors():
    from models.specs import HUMO_1_7B

    with torch.device("meta"):
        vae = build_vae(HUMO_1_7B.vae)
    mapping = official_key_map(vae, HUMO_1_7B.vae)
    assert len(mapping) == len(set(mapping.values())) == 194


def test_vae_pth_round_trip_reproduces_decoding(tmp_path):
    torch.manual_seed(0)
    original = build_vae(TINY.vae).eval()
    mapping = official_key_map(original, TINY.vae)
    state = original.state_dict()
    torch.save({k: state[v] for k, v in mapping.items()}, tmp_path / "Wan2.1_VAE.pth")
    with torch.device("meta"):
        loaded = build_vae(TINY.vae)
    load_into(loaded, open_checkpoint(tmp_path / "Wan2.1_VAE.pth"), rename=official_key_map(loaded, TINY.vae))
    z = torch.randn(1, 16, 2, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval().decode(z).sample, original.decode(z).sample, rtol=0, atol=0)


def test_umt5_pth_round_trip_keeps_embeddings_tied(tmp_path):
    torch.manual_seed(0)
    original = build_text_encoder(TINY.text).eval()
    state = original.state_dict()
    torch.save({k: state[v] for k, v in text_keys(TINY.text).items()}, tmp_path / "t5.pth")
    with torch.device("meta"):
        loaded = build_text_encoder(TINY.text)
    load_into(loaded, open_checkpoint(tmp_path / "t5.pth"), rename=text_keys(TINY.text))
    assert loaded.encoder.embed_tokens.weight is loaded.shared.weight
    ids = torch.randint(0, TINY.text.vocab_size, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.eval()(input_ids=ids).last_hidden_state, original(input_ids=ids).last_hidden_state
        )


def test_whisper_folder_loads_the_encoder_only(weights):
    encoder = AudioEncoder.from_folder(weights / TINY.files.whisper)
    assert not any(p.is_meta for p in encoder.encoder.parameters())
    with pytest.raises(CheckpointError, match="not a Whisper folder"):
        AudioEncoder.from_folder(weights / "nowhere")


def test_pipeline_loads_every_file_of_the_official_layout(weights):
    pipe = Pipeline.load("tiny", weights, device="cpu")
    for module in (pipe.dit, pipe.vae.vae, pipe.text.model, pipe.audio.encoder):
        assert not any(p.is_meta for p in module.parameters())
    with pytest.raises(CheckpointError, match="file not found"):
        Pipeline.load("tiny", weights / "empty", device="cpu")
