"""LoRA files in the layouts producers bring (ComfyUI, kohya, diffusers), written for the tests.

Key names are made here from our module names on their own: kohya by replacing dots, diffusers
through the hand-written tables below (an oracle independent of models/lora.py's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from models.dit import HumoDiT
from models.specs import ModelSpec

#: our in-block module -> diffusers' Wan name
DIFFUSERS_BLOCK = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    "norm3": "norm2",
}
#: our top-level module -> diffusers' Wan name
DIFFUSERS_TOP = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
}
#: the per-block linears every Wan LoRA trainer targets, plus HuMo's audio cross-attention
BLOCK_LINEARS = (
    "self_attn.q",
    "self_attn.k",
    "self_attn.v",
    "self_attn.o",
    "cross_attn.q",
    "cross_attn.k",
    "cross_attn.v",
    "cross_attn.o",
    "ffn.0",
    "ffn.2",
    "audio_cross_attn_wrapper.audio_cross_attn.q",
    "audio_cross_attn_wrapper.audio_cross_attn.k",
    "audio_cross_attn_wrapper.audio_cross_attn.v",
    "audio_cross_attn_wrapper.audio_cross_attn.o",
)
TOP_MODULES = ("patch_embedding", "text_embedding.0", "time_embedding.2", "time_projection.1", "head.head")
#: the (up, down, alpha) suffixes of each layout
SUFFIXES = {
    "comfyui": (".lora_up.weight", ".lora_down.weight", ".alpha"),
    "kohya": (".lora_up.weight", ".lora_down.weight", ".alpha"),
    "diffusers": (".lora_B.weight", ".lora_A.weight", ".alpha"),
}
DEFAULT_PREFIX = {"comfyui": "diffusion_model.", "kohya": "lora_unet_", "diffusers": "transformer."}


def param_shapes(spec: ModelSpec) -> dict[str, torch.Size]:
    with torch.device("meta"):
        return {n: p.shape for n, p in HumoDiT(spec.dit).named_parameters()}


def block_linears(spec: ModelSpec) -> list[str]:
    return [f"blocks.{i}.{m}" for i in range(spec.dit.num_layers) for m in BLOCK_LINEARS]


def file_module(module: str, fmt: str, prefix: str | None = None) -> str:
    """Our module name as a key stem of the layout."""
    prefix = DEFAULT_PREFIX[fmt] if prefix is None else prefix
    if fmt == "kohya":
        return prefix + module.replace(".", "_")
    if fmt == "diffusers":
        head, _, n_rest = module.partition(".")
        n, _, rest = n_rest.partition(".")
        if head == "blocks" and rest in DIFFUSERS_BLOCK:
            module = f"blocks.{n}.{DIFFUSERS_BLOCK[rest]}"
        else:
            module = DIFFUSERS_TOP.get(module, module)  # the audio parts keep HuMo's names
    return prefix + module


def lora_key_shapes(
    shapes: Mapping[str, torch.Size], modules: Sequence[str], fmt: str, rank: int, alpha: bool = True
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a LoRA on `modules` (names only: for tests of the mapping without a file)."""
    up_s, down_s, alpha_s = SUFFIXES[fmt]
    out: dict[str, tuple[int, ...]] = {}
    for module in modules:
        weight = shapes[f"{module}.weight"]
        stem = file_module(module, fmt)
        out[stem + down_s] = (rank, *weight[1:])  # a conv's down is [r, in, kt, kh, kw]
        out[stem + up_s] = (weight[0], rank, *([1] * (len(weight) - 2)))
        if alpha:
            out[stem + alpha_s] = ()
    return out


@dataclass
class Written:
    """A LoRA file and what it holds, by our names, for hand computations."""

    path: Path
    up: dict[str, torch.Tensor] = field(default_factory=dict)  #: module -> [out, r]
    down: dict[str, torch.Tensor] = field(default_factory=dict)  #: module -> [r, in*k]
    scale: dict[str, float] = field(default_factory=dict)  #: module -> alpha / r (or 1)
    diffs: dict[str, torch.Tensor] = field(default_factory=dict)  #: parameter -> full delta

    def expected(self, base: Mapping[str, torch.Tensor], strength: float) -> dict[str, torch.Tensor]:
        """The deltas in float64, by parameter: strength * scale * up @ down, or strength * diff."""
        out = {}
        for module, up in self.up.items():
            shape = base[f"{module}.weight"].shape
            out[f"{module}.weight"] = strength * self.scale[module] * (up.double() @ self.down[module].double())
            out[f"{module}.weight"] = out[f"{module}.weight"].reshape(shape)
        for param, diff in self.diffs.items():
            out[param] = strength * diff.double()
        return out


def write_lora(
    path: Path,
    shapes: Mapping[str, torch.Size],
    modules: Sequence[str],
    fmt: str,
    *,
    rank: int,
    alpha: float | None = None,
    seed: int = 0,
    prefix: str | None = None,
    diffs: Sequence[str] = (),
    extra: Mapping[str, torch.Tensor] | None = None,
) -> Written:
    """A random LoRA on `modules` in layout `fmt`; `diffs`: parameters given full deltas (ComfyUI keys)."""
    g = torch.Generator().manual_seed(seed)
    up_s, down_s, alpha_s = SUFFIXES[fmt]
    tensors: dict[str, torch.Tensor] = {}
    written = Written(path)
    for module in modules:
        weight = shapes[f"{module}.weight"]
        down = torch.randn(rank, *weight[1:], generator=g) * 0.1
        up = torch.randn(weight[0], rank, *([1] * (len(weight) - 2)), generator=g) * 0.1
        stem = file_module(module, fmt, prefix)
        tensors[stem + down_s], tensors[stem + up_s] = down, up
        if alpha is not None:
            tensors[stem + alpha_s] = torch.tensor(alpha)
        written.up[module], written.down[module] = up.flatten(1), down.flatten(1)
        written.scale[module] = 1.0 if alpha is None else alpha / rank
    for param in diffs:
        module, _, attr = param.rpartition(".")
        key = {"weight": f"{module}.diff", "bias": f"{module}.diff_b"}.get(attr, f"{param}.diff")
        tensors[(prefix if prefix is not None else "diffusion_model.") + key] = diff = (
            torch.randn(shapes[param], generator=g) * 0.1
        )
        written.diffs[param] = diff
    tensors.update(extra or {})
    save_file(tensors, path)
    return written
