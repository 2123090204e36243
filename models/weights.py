"""Where a checkpoint's weights folder is: given, from HUMO_WEIGHTS, or (tiny) generated."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CheckpointError
from .specs import ModelSpec, get_spec

#: a folder laid out like the official release (HuMo/, Wan2.1-T2V-1.3B/, whisper-large-v3/)
ENV_VAR = "HUMO_WEIGHTS"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "humo-farm"


def weights_dir(checkpoint: str, weights: str | Path | None = None) -> Path:
    spec = get_spec(checkpoint)
    folder = Path(weights) if weights else (Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else None)
    if folder is not None and (folder / spec.files.dit).is_file():
        return folder
    if spec.name.startswith("tiny"):
        return _tiny_folder(spec)
    where = folder or f"${ENV_VAR}"
    raise CheckpointError(
        f"{spec.name}: no weights at {where}/{spec.files.dit}; download the official release into one "
        f"folder (HuMo/, Wan2.1-T2V-1.3B/, whisper-large-v3/) and pass --weights or set {ENV_VAR}"
    )


def _tiny_folder(spec: ModelSpec) -> Path:
    """The tiny models' seeded random weights, written once in the official layout."""
    from .tiny import write_weights

    folder = CACHE / "weights-tiny-v1"
    if not (folder / spec.files.dit).is_file():
        tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
        write_weights(tmp, spec)
        folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(tmp.rglob("*")):  # merge into the shared folder, file by file
            target = folder / path.relative_to(tmp)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif not target.exists():
                os.replace(path, target)
    return folder
