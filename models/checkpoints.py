"""Loading weights in the official formats into modules built on the meta device.

Formats: a flat `torch.save` state dict (`ema.pth`, the Wan VAE and umT5 `.pth`), a
`*.safetensors.index.json` with shards (HuMo-17B, Hub folders), a single `.safetensors`.
Tensors are streamed one at a time (memory-mapped `.pth`, `safe_open` for shards) and
assigned straight into the module on its target device and dtype, so a checkpoint never
exists twice in memory. Every missing, unexpected or misshapen key is an error naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from .errors import CheckpointError

log = logging.getLogger(__name__)

Tensors = Iterator[tuple[str, torch.Tensor]]


def expected_tensors(module: nn.Module) -> tuple[dict[str, torch.Size], dict[str, str]]:
    """Every tensor the module needs, once each, and its tied aliases (alias -> name)."""
    first: dict[int, str] = {}
    out: dict[str, torch.Size] = {}
    aliases: dict[str, str] = {}
    for key, tensor in module.state_dict(keep_vars=True).items():
        if id(tensor) in first:
            aliases[key] = first[id(tensor)]
        else:
            first[id(tensor)] = key
            out[key] = tensor.shape
    return out, aliases


class StateSource:
    """The key list of a checkpoint file, and a stream of its tensors."""

    def __init__(self, path: Path, keys: list[str], stream: Callable[[set[str]], Tensors], files: list[Path]):
        self.path, self.keys, self._stream = path, keys, stream
        self.files = files  #: every file the checkpoint is made of (index first)

    def tensors(self, wanted: set[str]) -> Tensors:
        return self._stream(wanted)


def files_sha256(paths: list[Path]) -> str:
    """sha256 over a checkpoint's files in order (the index and every shard): its identity."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
    return h.hexdigest()


def open_checkpoint(path: str | Path) -> StateSource:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    name = path.name
    try:
        if name.endswith(".index.json"):
            return _open_index(path)
        if name.endswith(".safetensors"):
            return _open_shards(path, {path: None})
        return _open_torch(path)
    except CheckpointError:
        raise
    except Exception as exc:  # a corrupt or foreign file: say which and why
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from exc


def _open_torch(path: Path) -> StateSource:
    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a flat state dict of tensors")

    def stream(wanted: set[str]) -> Tensors:
        for key in list(state):
            if key in wanted:
                yield key, state.pop(key)  # drop our reference as we go

    return StateSource(path, list(state), stream, [path])


def _open_index(path: Path) -> StateSource:
    index = json.loads(path.read_text())
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{path}: no weight_map in the index")
    shards: dict[Path, list[str]] = {}
    for key, shard in weight_map.items():
        shards.setdefault(path.parent / shard, []).append(key)
    for shard in shards:
        if not shard.is_file():
            raise CheckpointError(f"{path}: shard {shard.name} is missing")
    return _open_shards(path, shards)


def _open_shards(path: Path, shards: Mapping[Path, list[str] | None]) -> StateSource:
    keys: list[str] = []
    for shard, listed in shards.items():
        with safe_open(shard, framework="pt") as f:
            present = list(f.keys())
        if listed is not None and set(listed) - set(present):
            missing = sorted(set(listed) - set(present))
            raise CheckpointError(f"{shard}: the index lists keys the shard lacks: {_names(missing)}")
        keys.extend(listed if listed is not None else present)

    def stream(wanted: set[str]) -> Tensors:
        for shard in shards:  # one shard open at a time, one tensor in flight
            with safe_open(shard, framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                    if key in wanted:
                        yield key, f.get_tensor(key)

    files = [path] + [p for p in shards if p != path]
    return StateSource(path, keys, stream, files)


def _names(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def load_into(
    module: nn.Module,
    source: StateSource,
    *,
    rename: dict[str, str] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    extra_ok: Callable[[str], bool] = lambda key: False,
) -> None:
    """Assign every tensor of `source` into `module` (usually on meta), strictly.

    rename: file key -> module key, for files whose names differ from the module's.
    extra_ok: file keys that may be present and are then ignored.
    dtype: cast floating-point tensors to this dtype (None keeps the file's).
    """
    expected, aliases = expected_tensors(module)
    rename = rename or {k: k for k in source.keys}
    to_module = {k: rename[k] for k in source.keys if k in rename}
    unexpected = sorted(k for k in source.keys if k not in rename or rename[k] not in expected)
    unexpected_bad = [k for k in unexpected if not extra_ok(k)]
    missing = sorted(set(expected) - set(to_module.values()))
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if unexpected_bad:
        problems.append(f"unexpected keys: {_names(unexpected_bad)}")
    if problems:
        raise CheckpointError(f"{source.path}: does not match the architecture; " + "; ".join(problems))
    if unexpected:
        log.info("%s: ignoring %d training-only tensors: %s", source.path, len(unexpected), _names(unexpected))

    wanted = {k for k, v in to_module.items() if v in expected}
    for key, tensor in source.tensors(wanted):
        target = to_module[key]
        if tensor.shape != expected[target]:
            raise CheckpointError(
                f"{source.path}: {key} has shape {list(tensor.shape)}, the architecture needs {list(expected[target])}"
            )
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        _assign(module, target, tensor.to(device))
    for alias, name in aliases.items():  # re-tie: the alias shares the loaded parameter
        owner_path, _, attr = alias.rpartition(".")
        owner = module.get_submodule(owner_path) if owner_path else module
        setattr(owner, attr, module.get_parameter(name))


def _assign(module: nn.Module, key: str, tensor: torch.Tensor) -> None:
    owner_path, _, name = key.rpartition(".")
    owner = module.get_submodule(owner_path) if owner_path else module
    if name in owner._parameters:
        owner._parameters[name] = nn.Parameter(tensor, requires_grad=False)  # inference only
    elif name in owner._buffers:
        owner._buffers[name] = tensor
    else:
        raise CheckpointError(f"{key}: not a parameter or buffer of {type(module).__name__}")


def load_prefixed(folder: Path, prefixes: tuple[str, ...], expected: set[str]) -> dict[str, torch.Tensor]:
    """Load the tensors of a Hub-style folder whose keys sit under one of `prefixes`.

    Returns module-key -> tensor for a sub-module (e.g. Whisper's encoder of a seq2seq file),
    strict on the sub-module's keys; tensors of other sub-modules are never read.
    """
    for name in ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            source = open_checkpoint(folder / name)
            break
    else:
        raise CheckpointError(f"{folder}: no model.safetensors(.index.json) or pytorch_model.bin")
    for prefix in prefixes:
        rename = {k: k[len(prefix) :] for k in source.keys if k.startswith(prefix)}
        if rename:
            break
    else:
        raise CheckpointError(f"{source.path}: no keys under {' or '.join(prefixes)}")
    missing = sorted(expected - set(rename.values()))
    extra = sorted(k for k, v in rename.items() if v not in expected)
    if missing or extra:
        raise CheckpointError(
            f"{source.path}: does not match the architecture; missing keys: {_names(missing) or 'none'}; "
            f"unexpected keys: {_names(extra) or 'none'}"
        )
    return {rename[k]: t for k, t in source.tensors(set(rename))}
