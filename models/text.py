"""Text encoding: umT5-XXL's encoder (transformers' UMT5EncoderModel) from Wan's `.pth`.

Wan ships the encoder as its own module tree (`blocks.N.attn.q`, ...); `official_key_map`
names, for each transformers key, the official key it loads from.
"""

from __future__ import annotations

import html
import re

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, UMT5Config, UMT5EncoderModel

from .specs import TextConfig


def build_text_encoder(cfg: TextConfig) -> UMT5EncoderModel:
    config = UMT5Config(
        vocab_size=cfg.vocab_size,
        d_model=cfg.d_model,
        d_kv=cfg.d_kv,
        d_ff=cfg.d_ff,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance,
        feed_forward_proj="gated-gelu",  # Wan's T5 gate: tanh-approximated GELU
        dropout_rate=0.0,
        is_encoder_decoder=False,
        use_cache=False,
    )
    return UMT5EncoderModel(config)


def official_key_map(cfg: TextConfig) -> dict[str, str]:
    """official Wan T5 key -> transformers UMT5EncoderModel key."""
    mapping = {"token_embedding.weight": "shared.weight", "norm.weight": "encoder.final_layer_norm.weight"}
    for i in range(cfg.num_layers):
        ours, theirs = f"blocks.{i}", f"encoder.block.{i}.layer"
        mapping.update(
            {
                f"{ours}.norm1.weight": f"{theirs}.0.layer_norm.weight",
                f"{ours}.attn.q.weight": f"{theirs}.0.SelfAttention.q.weight",
                f"{ours}.attn.k.weight": f"{theirs}.0.SelfAttention.k.weight",
                f"{ours}.attn.v.weight": f"{theirs}.0.SelfAttention.v.weight",
                f"{ours}.attn.o.weight": f"{theirs}.0.SelfAttention.o.weight",
                f"{ours}.pos_embedding.embedding.weight": f"{theirs}.0.SelfAttention.relative_attention_bias.weight",
                f"{ours}.norm2.weight": f"{theirs}.1.layer_norm.weight",
                f"{ours}.ffn.gate.0.weight": f"{theirs}.1.DenseReluDense.wi_0.weight",
                f"{ours}.ffn.fc1.weight": f"{theirs}.1.DenseReluDense.wi_1.weight",
                f"{ours}.ffn.fc2.weight": f"{theirs}.1.DenseReluDense.wo.weight",
            }
        )
    return mapping


def clean_prompt(text: str) -> str:
    """Wan's prompt cleaning: unescape HTML entities, collapse whitespace."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()


class TextEncoder:
    def __init__(self, model: UMT5EncoderModel, tokenizer: PreTrainedTokenizerBase, text_len: int):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.text_len = text_len

    @classmethod
    def tokenizer_from(cls, folder: str) -> PreTrainedTokenizerBase:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)

    @property
    def device(self) -> torch.device:
        return self.model.shared.weight.device

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> [B, text_len, d_model] float32: each prompt's states, zero past its end."""
        batch = self.tokenizer(
            [clean_prompt(p) for p in prompts],
            padding="max_length",
            truncation=True,
            max_length=self.text_len,
            add_special_tokens=True,
            return_tensors="pt",
        )
        ids, mask = batch.input_ids.to(self.device), batch.attention_mask.to(self.device)
        states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        return states * mask[..., None].to(states.dtype)
