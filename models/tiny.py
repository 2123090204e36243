"""Random, seeded weights written in the official formats and folder layout.

The tiny specs have no published weights: this writes a complete weights folder for them
(DiT, VAE, umT5 + tokenizer, Whisper) exactly as the official release lays out its files,
so the farm's embedded default and the tests go through the real loading code. It also
writes the full-size layouts' formats at tiny shapes for the loader tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, WhisperFeatureExtractor, WhisperForConditionalGeneration
from transformers import WhisperConfig as HFWhisperConfig
from transformers.utils import logging as hf_logging

from .dit import HumoDiT
from .specs import ModelSpec
from .text import build_text_encoder
from .text import official_key_map as text_key_map
from .vae import build_vae
from .vae import official_key_map as vae_key_map

#: a few sentences to give the tiny tokenizer a vocabulary
CORPUS = [
    "a person speaks to the camera in a bright studio, medium shot, natural light",
    "a singer performs on a dark stage with warm spotlights and a calm expression",
    "close-up of a presenter smiling and talking, soft background blur, cinematic",
    "an actor turns towards the window and whispers, rain on the glass, night",
]


def random_dit(spec: ModelSpec, seed: int = 0) -> HumoDiT:
    """A DiT with seeded random weights; zero-init parts of Wan are made non-zero so tests see them."""
    torch.manual_seed(seed)
    dit = HumoDiT(spec.dit)
    with torch.no_grad():
        for p in dit.parameters():
            p.normal_(0, 0.5 / max(1, p.shape[-1]) ** 0.5)
    return dit.eval()


def write_dit(dit: HumoDiT, path: Path, extras: dict[str, torch.Tensor] | None = None, shards: int = 2) -> None:
    """`ema.pth` (flat torch.save) or `*.safetensors.index.json` + shards, by the path's name."""
    state = {k: v.detach().clone().contiguous() for k, v in dit.state_dict().items()}
    state.update(extras or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".index.json"):
        base = path.name[: -len(".safetensors.index.json")]
        keys = list(state)
        per = -(-len(keys) // shards)
        weight_map = {}
        for i in range(shards):
            name = f"{base}-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = {k: state[k] for k in keys[i * per : (i + 1) * per]}
            save_file(part, path.parent / name)
            weight_map.update({k: name for k in part})
        total = sum(v.numel() * v.element_size() for v in state.values())
        path.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    else:
        torch.save(state, path)


def write_tokenizer(folder: Path, vocab_size: int) -> None:
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(folder)


def write_whisper(folder: Path, spec: ModelSpec, seed: int) -> None:
    w = spec.whisper
    torch.manual_seed(seed)
    config = HFWhisperConfig(
        d_model=w.d_model,
        encoder_layers=w.encoder_layers,
        encoder_attention_heads=w.encoder_attention_heads,
        encoder_ffn_dim=w.encoder_ffn_dim,
        num_mel_bins=w.num_mel_bins,
        decoder_layers=1,
        decoder_attention_heads=w.encoder_attention_heads,
        decoder_ffn_dim=w.encoder_ffn_dim,
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        max_target_positions=32,
    )
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar in a farm log
    WhisperForConditionalGeneration(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=w.num_mel_bins).save_pretrained(folder)


def write_weights(folder: str | Path, spec: ModelSpec, seed: int = 0) -> Path:
    """Write a complete weights folder for `spec` in the official layout; returns it."""
    folder = Path(folder)
    files = spec.files
    write_dit(random_dit(spec, seed), folder / files.dit)

    torch.manual_seed(seed + 1)
    vae = build_vae(spec.vae)
    names = vae_key_map(vae, spec.vae)
    state = vae.state_dict()
    (folder / files.vae).parent.mkdir(parents=True, exist_ok=True)
    torch.save({official: state[ours].clone() for official, ours in names.items()}, folder / files.vae)

    torch.manual_seed(seed + 2)
    t5 = build_text_encoder(spec.text)
    state = t5.state_dict()
    torch.save(
        {official: state[ours].clone() for official, ours in text_key_map(spec.text).items()}, folder / files.text
    )
    write_tokenizer(folder / files.tokenizer, spec.text.vocab_size)

    write_whisper(folder / files.whisper, spec, seed + 3)
    return folder
