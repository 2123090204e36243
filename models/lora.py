"""LoRAs for the DiT: reading the files producers bring, and patching them into the weights.

A LoRA is one `.safetensors` file in one of three layouts (Wan2.1 / HuMo LoRAs as ComfyUI
users have them):

- ComfyUI / lightx2v: `diffusion_model.<module>.lora_down.weight` [r, in], `.lora_up.weight`
  [out, r], optional `.alpha` (scale alpha / r, else 1); full deltas `<module>.diff` (the
  weight's, or a bare parameter's such as `blocks.N.modulation`) and `<module>.diff_b` (the
  bias's). The prefix may also be `model.diffusion_model.` or absent.
- kohya: `lora_unet_<module with dots as underscores>.lora_down.weight` / `.lora_up.weight` /
  `.alpha`, resolved by exact lookup in a table built from our module names.
- diffusers / PEFT: `transformer.<module>.lora_A.weight` [r, in] / `.lora_B.weight` [out, r],
  in diffusers' Wan names (renamed by explicit tables) or ours; the prefix may also be
  `diffusion_model.` or absent.

Keys of Wan I2V's image branch (HuMo has none) are skipped and reported; any other key that
maps to nothing is an error naming it, and a delta whose shape does not fit the checkpoint is
a wrong-base error naming the module and both shapes. The architecture comes from `HumoDiT`
itself, built on the meta device once per config.

Public surface:
    inspect(path, spec) -> LoraInfo      what a file changes, from its header alone
    bases(path) -> list[str]             the specs in SPECS the file fits
    plan(shapes, spec, name) -> LoraInfo the same from key names and shapes (no file)
    map_key(key, spec) -> str | None     the parameter one file key changes
    load(path, spec) -> Lora             the deltas as tensors, with the file's sha256
    Patcher(module).use([(lora, strength), ...]) -> PatchRecord
                                         weights = base + the deltas, in place; [] restores
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from .checkpoints import _names
from .dit import HumoDiT
from .errors import InputError
from .fp8 import FP8Linear, _quantise_rows
from .probe import file_sha256
from .specs import SPECS, DiTConfig, ModelSpec

#: how a key ends -> what the tensor is
ROLES = {
    ".lora_down.weight": "down",
    ".lora_up.weight": "up",
    ".lora_A.weight": "down",
    ".lora_B.weight": "up",
    ".alpha": "alpha",
    ".diff_b": "diff_b",
    ".diff": "diff",
}
#: prefixes before our (or diffusers') module names, longest first
PREFIXES = ("model.diffusion_model.", "diffusion_model.", "transformer.")
KOHYA_PREFIX = "lora_unet_"

#: diffusers' Wan names inside a block -> ours
DIFFUSERS_BLOCK = {
    "attn1.to_q": "self_attn.q",
    "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn1.norm_q": "self_attn.norm_q",
    "attn1.norm_k": "self_attn.norm_k",
    "attn2.to_q": "cross_attn.q",
    "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o",
    "attn2.norm_q": "cross_attn.norm_q",
    "attn2.norm_k": "cross_attn.norm_k",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
    "norm2": "norm3",  # diffusers' norm2 is the cross-attention norm, Wan's norm3
    "scale_shift_table": "modulation",
}
#: diffusers' Wan names outside the blocks -> ours
DIFFUSERS_TOP = {
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "proj_out": "head.head",
    "patch_embedding": "patch_embedding",
    "scale_shift_table": "head.modulation",
}
#: Wan I2V's image branch inside a block (Wan's and diffusers' names): HuMo has none
SKIP_BLOCK = frozenset(
    {
        "cross_attn.k_img",
        "cross_attn.v_img",
        "cross_attn.norm_k_img",
        "attn2.add_k_proj",
        "attn2.add_v_proj",
        "attn2.norm_added_k",
    }
)
#: ... and its top-level sub-trees
SKIP_TOP = ("img_emb", "condition_embedder.image_embedder")

BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
KOHYA_BLOCK = re.compile(r"blocks_(\d+)_(.+)")


# -- the architecture ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Arch:
    """What the mapping needs of one DiT config: parameter shapes and owner tables."""

    shapes: dict[str, torch.Size]  #: every parameter, in the model's order
    layers: int
    block_owners: frozenset[str]  #: in-block paths of modules with parameters, and bare parameters
    top_owners: frozenset[str]
    kohya_block: dict[str, str]  #: underscored in-block path -> path
    kohya_top: dict[str, str]


@lru_cache(maxsize=8)
def _arch(cfg: DiTConfig) -> _Arch:
    with torch.device("meta"):
        shapes = {n: p.shape for n, p in HumoDiT(cfg).named_parameters()}
    owners = {_owner(name, shapes) for name in shapes}
    block = frozenset(m.group(2) for o in owners if (m := BLOCK.fullmatch(o)) and m.group(1) == "0")
    top = frozenset(o for o in owners if not o.startswith("blocks."))
    return _Arch(shapes, cfg.num_layers, block, top, _underscored(block), _underscored(top))


def _owner(param: str, shapes: Mapping[str, torch.Size]) -> str:
    """The module a parameter belongs to, or the parameter itself when it is bare (modulation)."""
    module, _, attr = param.rpartition(".")
    return module if attr in ("weight", "bias") and f"{module}.weight" in shapes else param


def _underscored(paths: frozenset[str]) -> dict[str, str]:
    table = {p.replace(".", "_"): p for p in paths}
    assert len(table) == len(paths), "two module names underscore alike"  # kohya would be ambiguous
    return table


# -- mapping keys -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Key:
    """One file key resolved: what it is and which owner it changes."""

    key: str
    role: str  #: up, down, alpha, diff, diff_b ("" when the key is no LoRA tensor)
    owner: str | None  #: our module (or bare parameter) name; None when nothing here
    format: str  #: comfyui, kohya or diffusers
    skip: bool = False  #: for a module HuMo lacks
    block: int | None = None  #: the block index past this model's blocks, when that is the problem


def _resolve(key: str, a: _Arch) -> _Key:
    role, stem = _role(key)
    if key.startswith(KOHYA_PREFIX):
        return _resolve_kohya(key, role, stem[len(KOHYA_PREFIX) :], a)
    fmt = "diffusers" if key.startswith("transformer.") or ".lora_A." in key or ".lora_B." in key else "comfyui"
    name = next((stem[len(p) :] for p in PREFIXES if stem.startswith(p)), stem)
    if m := BLOCK.fullmatch(name):
        n, path = int(m.group(1)), m.group(2)
        if path in SKIP_BLOCK:
            return _Key(key, role, None, fmt, skip=True)
        if path not in a.block_owners and path in DIFFUSERS_BLOCK:  # our names first: ours has norm2 too
            path, fmt = DIFFUSERS_BLOCK[path], "diffusers"
        return _block_key(key, role, n, path, fmt, a)
    if any(name == s or name.startswith(s + ".") for s in SKIP_TOP):
        return _Key(key, role, None, fmt, skip=True)
    if name not in a.top_owners and name in DIFFUSERS_TOP:
        name, fmt = DIFFUSERS_TOP[name], "diffusers"
    return _Key(key, role, name if name in a.top_owners else None, fmt)


def _role(key: str) -> tuple[str, str]:
    for suffix, role in ROLES.items():
        if key.endswith(suffix):
            return role, key[: -len(suffix)]
    return "", key


def _resolve_kohya(key: str, role: str, name: str, a: _Arch) -> _Key:
    if m := KOHYA_BLOCK.fullmatch(name):
        n, path = int(m.group(1)), m.group(2)
        if path in {s.replace(".", "_") for s in SKIP_BLOCK}:
            return _Key(key, role, None, "kohya", skip=True)
        return _block_key(key, role, n, a.kohya_block.get(path, ""), "kohya", a)
    if any(name == s.replace(".", "_") or name.startswith(s.replace(".", "_") + "_") for s in SKIP_TOP):
        return _Key(key, role, None, "kohya", skip=True)
    return _Key(key, role, a.kohya_top.get(name), "kohya")


def _block_key(key: str, role: str, n: int, path: str, fmt: str, a: _Arch) -> _Key:
    if path not in a.block_owners:
        return _Key(key, role, None, fmt)
    if n >= a.layers:
        return _Key(key, role, None, fmt, block=n)
    return _Key(key, role, f"blocks.{n}.{path}", fmt)


def _target(owner: str, group: str, a: _Arch) -> str | None:
    """The parameter a group of keys changes: a LoRA pair or `diff` the weight, `diff_b` the bias."""
    if group == "diff" and owner in a.shapes:  # a bare parameter's delta
        return owner
    param = f"{owner}.bias" if group == "diff_b" else f"{owner}.weight"
    if param not in a.shapes or (group == "lora" and len(a.shapes[param]) < 2):
        return None
    return param


def map_key(key: str, spec: ModelSpec) -> str | None:
    """The parameter of `spec`'s DiT that a file key changes; None if it changes nothing there."""
    a = _arch(spec.dit)
    k = _resolve(key, a)
    if not k.role or k.owner is None:
        return None
    return _target(k.owner, "lora" if k.role in ("up", "down", "alpha") else k.role, a)


# -- planning: keys and shapes -> what the file changes -----------------------------------------
@dataclass(frozen=True)
class Entry:
    """One parameter's delta: a low-rank pair (up, down, alpha) or a full delta (diff)."""

    target: str  #: our parameter
    module: str  #: our module (or bare parameter)
    up: str | None = None
    down: str | None = None
    alpha: str | None = None
    diff: str | None = None
    rank: int | None = None


@dataclass(frozen=True)
class LoraInfo:
    format: str  #: comfyui, kohya or diffusers
    targets: tuple[str, ...]  #: our parameters it changes, in the model's order
    modules: int  #: how many modules (or bare parameters) those belong to
    rank: int | None  #: the largest rank; None for a file of full deltas only
    skipped: tuple[str, ...]  #: file keys ignored because HuMo lacks the module
    entries: tuple[Entry, ...] = field(default=(), repr=False)

    def describe(self) -> dict[str, Any]:
        """JSON-ready, for the API."""
        return {
            "format": self.format,
            "targets": list(self.targets),
            "modules": self.modules,
            "rank": self.rank,
            "skipped": list(self.skipped),
        }


def plan(shapes: Mapping[str, Sequence[int]], spec: ModelSpec, name: str = "LoRA") -> LoraInfo:
    """What a LoRA with these keys and shapes changes in `spec`'s DiT; InputError("lora") if it cannot.

    `name` (the file's) starts every message.
    """
    a = _arch(spec.dit)
    keys = [_resolve(k, a) for k in shapes]
    if not any(k.role for k in keys):
        raise InputError(
            "lora",
            f"{name}: holds no LoRA tensors (no key ends in .lora_down.weight, .lora_up.weight, .lora_A.weight, "
            f".lora_B.weight, .diff or .diff_b; first keys: {_names(list(shapes), 5)}); pick a LoRA file, "
            "not a full checkpoint",
        )
    _check_known(keys, spec, name)
    skipped = tuple(k.key for k in keys if k.skip)
    groups = _group([k for k in keys if k.owner is not None], name)
    beyond = sorted({k.block for k in keys if k.block is not None})
    if not groups and not beyond:
        raise InputError(
            "lora",
            f"{name}: every key is for modules HuMo lacks ({_names(list(skipped))}); it changes nothing in "
            f"{spec.name}; pick a LoRA made for HuMo or Wan2.1 text-to-video",
        )
    entries = [_entry(owner, group, got, shapes, a, name) for (owner, group), got in groups.items()]
    order = {p: i for i, p in enumerate(a.shapes)}
    entries.sort(key=lambda e: order[e.target])
    _check_shapes(entries, shapes, a, spec, name)  # first: a wider model's LoRA is named by its width
    if beyond:
        n = spec.dit.num_layers
        raise InputError(
            "lora",
            f"{name}: this LoRA changes blocks up to {beyond[-1]}; {spec.name} has {n} blocks (0-{n - 1}); "
            "pick a checkpoint it was made for",
        )
    ranks = [e.rank for e in entries if e.rank is not None]
    formats = {k.format for k in keys if k.role and not k.skip}
    return LoraInfo(
        format=next(f for f in ("kohya", "diffusers", "comfyui") if f in formats),
        targets=tuple(e.target for e in entries),
        modules=len({e.module for e in entries}),
        rank=max(ranks) if ranks else None,
        skipped=skipped,
        entries=tuple(entries),
    )


def _check_known(keys: list[_Key], spec: ModelSpec, name: str) -> None:
    unknown = [k.key for k in keys if not k.skip and k.block is None and (not k.role or k.owner is None)]
    if unknown:
        raise InputError(
            "lora",
            f"{name}: {len(unknown)} keys match no module of {spec.name}'s DiT: {_names(unknown)}; "
            "pick a LoRA made for HuMo or Wan2.1 (not for a text encoder, a VAE or another model)",
        )


def _group(keys: list[_Key], name: str) -> dict[tuple[str, str], dict[str, str]]:
    """(owner, "lora" | "diff" | "diff_b") -> role -> file key; a role given twice is an error."""
    groups: dict[tuple[str, str], dict[str, str]] = {}
    for k in keys:
        assert k.owner is not None
        group = "lora" if k.role in ("up", "down", "alpha") else k.role
        got = groups.setdefault((k.owner, group), {})
        if k.role in got:
            raise InputError("lora", f"{name}: {got[k.role]} and {k.key} are the same tensor; keep one of them")
        got[k.role] = k.key
    return groups


def _entry(
    owner: str, group: str, got: dict[str, str], shapes: Mapping[str, Sequence[int]], a: _Arch, name: str
) -> Entry:
    target = _target(owner, group, a)
    if target is None:
        keys = ", ".join(got.values())
        raise InputError("lora", f"{name}: {keys}: {owner} takes no such delta; pick a LoRA made for HuMo or Wan2.1")
    if group != "lora":
        return Entry(target, owner, diff=got[group])
    for role, other in (("up", "down"), ("down", "up")):
        if role not in got:
            raise InputError(
                "lora", f"{name}: {got.get(other, got.get('alpha'))} has no matching lora_{role}; re-export the LoRA"
            )
    up, down = list(shapes[got["up"]]), list(shapes[got["down"]])
    if len(up) < 2 or len(down) < 2 or up[1] != down[0] or math.prod(up[2:]) != 1:
        raise InputError(
            "lora",
            f"{name}: {got['up']} is {up} and {got['down']} is {down}, which do not make a low-rank pair; "
            "the file is damaged, re-export the LoRA",
        )
    if "alpha" in got and math.prod(shapes[got["alpha"]]) != 1:
        alpha = list(shapes[got["alpha"]])
        raise InputError("lora", f"{name}: {got['alpha']} is {alpha}, an alpha must be one number; re-export the LoRA")
    return Entry(target, owner, up=got["up"], down=got["down"], alpha=got.get("alpha"), rank=down[0])


def _delta_shape(e: Entry, shapes: Mapping[str, Sequence[int]], want: torch.Size) -> list[int]:
    """The shape of the weight the file's delta is for; a flattened conv down counts as fitting."""
    if e.diff is not None:
        return list(shapes[e.diff])
    out, down = shapes[e.up or ""][0], list(shapes[e.down or ""])
    if len(down) == 2 and len(want) > 2 and out == want[0] and down[1] == math.prod(want[1:]):
        return list(want)
    return [out, *down[1:]]


def _check_shapes(
    entries: list[Entry], shapes: Mapping[str, Sequence[int]], a: _Arch, spec: ModelSpec, name: str
) -> None:
    for e in entries:  # in the model's order: the first that differs is named
        want = a.shapes[e.target]
        got = _delta_shape(e, shapes, want)
        if got == list(want):
            continue
        what = e.module if e.target == f"{e.module}.weight" else e.target
        ours = f"{spec.name}'s {what} is {list(want)} (the LoRA's is {got}); pick a checkpoint it was made for"
        width = _width(got, want, spec.dit.dim)
        if width is not None:
            raise InputError("lora", f"{name}: this LoRA is for a model of width {width}; {ours}")
        raise InputError("lora", f"{name}: this LoRA does not fit {spec.name}: {ours}")


def _width(got: list[int], want: torch.Size, dim: int) -> int | None:
    """The LoRA's model width, read where our shape has ours; None when it is the same or unknown."""
    if len(got) != len(want):
        return None
    return next((g for g, w in zip(got, want) if w == dim and g != dim), None)


# -- files --------------------------------------------------------------------------------------
def _read_shapes(path: Path) -> dict[str, list[int]]:
    """Key -> shape from the safetensors header; no tensor is read."""
    if not path.is_file():
        raise InputError("lora", f"{path.name}: file not found; upload the LoRA's .safetensors file")
    try:
        with safe_open(path, framework="pt") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # any foreign file: say what it is not
        raise InputError(
            "lora",
            f"{path.name}: not a safetensors file ({exc}); a LoRA must be one .safetensors file "
            "(ComfyUI, kohya or diffusers layout)",
        ) from exc


def inspect(path: str | Path, spec: ModelSpec) -> LoraInfo:
    """What the file changes in `spec`'s DiT, from its header; InputError("lora") if it cannot apply."""
    path = Path(path)
    return plan(_read_shapes(path), spec, path.name)


def bases(path: str | Path) -> list[str]:
    """The names of the specs in SPECS this LoRA fits (an unreadable file still raises)."""
    path = Path(path)
    shapes = _read_shapes(path)
    fits = []
    for name, spec in SPECS.items():
        try:
            plan(shapes, spec, path.name)
        except InputError:
            continue
        fits.append(name)
    return fits


@dataclass(frozen=True, eq=False)
class LowRank:
    up: torch.Tensor  #: [out, r] (or [out, r, 1, 1, 1] for a conv)
    down: torch.Tensor  #: [r, in] (or [r, in, kt, kh, kw])
    scale: float  #: alpha / r, or 1

    def delta(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """up @ down * scale in float32, in the weight's shape."""
        up = self.up.to(device, torch.float32).flatten(1)  # [out, r]
        down = self.down.to(device, torch.float32).flatten(1)  # [r, in*k]
        return (up @ down).mul_(self.scale).reshape(shape)


@dataclass(frozen=True, eq=False)
class Lora:
    """A LoRA's deltas read for one spec; identified by its file's sha256."""

    name: str  #: the file's name
    sha256: str
    spec: str  #: the spec it was read for
    info: LoraInfo
    deltas: dict[str, LowRank | torch.Tensor]  #: our parameter -> low-rank pair or full delta


def load(path: str | Path, spec: ModelSpec) -> Lora:
    """Read the file's deltas for `spec` (on the CPU, in the file's dtype)."""
    info = inspect(path, spec)
    path = Path(path)
    deltas: dict[str, LowRank | torch.Tensor] = {}
    with safe_open(path, framework="pt") as f:
        for e in info.entries:
            if e.diff is not None:
                deltas[e.target] = f.get_tensor(e.diff)
                continue
            up, down = f.get_tensor(e.up or ""), f.get_tensor(e.down or "")
            alpha = float(f.get_tensor(e.alpha).float().item()) if e.alpha else None
            deltas[e.target] = LowRank(up, down, 1.0 if alpha is None else alpha / down.shape[0])
    return Lora(path.name, file_sha256(path), spec.name, info, deltas)


# -- patching -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatchRecord:
    """What one `Patcher.use` did, for the render's record."""

    loras: tuple[tuple[str, str, float], ...]  #: (name, sha256, strength) in the order stacked
    patched: int  #: parameters written as base + deltas
    restored: int  #: parameters put back to the base
    seconds: float

    def describe(self) -> dict[str, Any]:
        return {
            "loras": [{"name": n, "sha256": s, "strength": w} for n, s, w in self.loras],
            "patched": self.patched,
            "restored": self.restored,
            "seconds": round(self.seconds, 4),
        }


class Patcher:
    """Applies sets of LoRAs to one module's weights in place, and takes them off again.

    The first change to a parameter keeps its original, so restoring copies the base back bit
    for bit instead of subtracting. Originals stay beside the weights on the GPU while at least
    `reserve_bytes` of its memory stays free for the render (switching is then a device copy),
    else in pinned host memory. The Patcher must be the only writer of the module's weights
    while it holds originals.
    """

    def __init__(self, module: nn.Module, reserve_bytes: int = 24 * 2**30):
        self.module = module
        self.reserve_bytes = reserve_bytes
        self._base: dict[str, torch.Tensor] = {}  #: parameter -> original, on the GPU or the CPU
        #: (sha256, strength) of the set in place; None while a use is under way
        self._applied: tuple[tuple[str, float], ...] | None = ()
        self._patched: set[str] = set()

    @torch.no_grad()
    def use(self, loras: Sequence[tuple[Lora, float]]) -> PatchRecord:
        """Make the weights base + sum of strength * delta over `loras`, stacked in order."""
        start = time.perf_counter()
        wanted = tuple((lora.sha256, float(strength)) for lora, strength in loras)
        record = tuple((lora.name, lora.sha256, float(strength)) for lora, strength in loras)
        if wanted == self._applied:
            return PatchRecord(record, 0, 0, time.perf_counter() - start)
        stacks = self._stacks(loras)
        self._applied = None  # until every write is done: a failed use is redone in full
        stale = self._patched - set(stacks)
        for name in stale:
            self._write(name, self._base[name])
            self._patched.discard(name)
        for name, stack in stacks.items():
            merged = self._merged(name, stack)
            self._patched.add(name)
            self._write(name, merged)
        self._applied = wanted
        return PatchRecord(record, len(stacks), len(stale), time.perf_counter() - start)

    def _stacks(self, loras: Sequence[tuple[Lora, float]]) -> dict[str, list[tuple[LowRank | torch.Tensor, float]]]:
        """Parameter -> its deltas in order; checked against the module before anything changes."""
        stacks: dict[str, list[tuple[LowRank | torch.Tensor, float]]] = {}
        for lora, strength in loras:
            for name, delta in lora.deltas.items():
                param = self._param(name, lora)
                want = param.shape
                got = delta.up.shape[:1] + delta.down.shape[1:] if isinstance(delta, LowRank) else delta.shape
                if math.prod(got) != param.numel() or got[0] != want[0]:
                    raise InputError(
                        "lora",
                        f"{lora.name} was read for {lora.spec}; this model's {name} is {list(want)}; "
                        "load it for this checkpoint",
                    )
                if strength != 0:  # a zero strength adds nothing: the parameter stays the base
                    stacks.setdefault(name, []).append((delta, float(strength)))
        return stacks

    def _param(self, name: str, lora: Lora) -> nn.Parameter:
        try:
            return self.module.get_parameter(name)
        except AttributeError:
            raise InputError(
                "lora", f"{lora.name} was read for {lora.spec}; this model has no {name}; load it for this checkpoint"
            ) from None

    def _merged(self, name: str, stack: list[tuple[LowRank | torch.Tensor, float]]) -> torch.Tensor:
        """base + the stack in float32 on the parameter's device, cast once to its dtype."""
        param = self.module.get_parameter(name)
        if name not in self._base:
            self._base[name] = self._keep(param)
        w = self._base[name].to(param.device, torch.float32, non_blocking=True, copy=True)  # never the base
        for delta, strength in stack:
            if isinstance(delta, LowRank):
                w.add_(delta.delta(param.shape, param.device), alpha=strength)
            else:
                w.add_(delta.to(param.device, torch.float32).reshape(param.shape), alpha=strength)
        return w.to(param.dtype)

    def _write(self, name: str, value: torch.Tensor) -> None:
        param = self.module.get_parameter(name)
        param.data.copy_(value)
        owner, _, attr = name.rpartition(".")
        layer = self.module.get_submodule(owner) if owner else self.module
        if isinstance(layer, FP8Linear) and attr == "weight":  # its fp8 copy is made from the weight
            q, scale = _quantise_rows(param.detach())
            layer.weight_fp8.copy_(q)
            layer.weight_scale.copy_(scale.reshape(1, -1))

    def _keep(self, param: torch.Tensor) -> torch.Tensor:
        """A copy of the original: on its GPU while the render keeps its reserve, else the CPU."""
        if param.is_cuda:
            free, _ = torch.cuda.mem_get_info(param.device)
            if free - param.numel() * param.element_size() >= self.reserve_bytes:
                return param.detach().clone()
        return _cpu_copy(param)


def _cpu_copy(param: torch.Tensor) -> torch.Tensor:
    copy = torch.empty(param.shape, dtype=param.dtype, device="cpu", pin_memory=torch.cuda.is_available())
    return copy.copy_(param.detach())
