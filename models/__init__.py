"""HuMo inference engine: `render(request, on_step)` turns a take into a clip.

Knows nothing of the farm. See `models.pipeline` for the steps and `models.specs` for the
checkpoints.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CheckpointError, InputError, ModelsError, RenderCanceled
from .request import RenderRequest
from .specs import MODES, SPECS, ModelSpec, get_spec

if TYPE_CHECKING:
    from .pipeline import OnPreview, OnStep, OnWindow, Pipeline, RenderResult

__all__ = [
    "MODES",
    "SPECS",
    "CheckpointError",
    "InputError",
    "ModelSpec",
    "ModelsError",
    "OnPreview",
    "OnStep",
    "OnWindow",
    "Pipeline",
    "RenderCanceled",
    "RenderRequest",
    "RenderResult",
    "get_spec",
    "load_pipeline",
    "render",
]

#: imported on first use (PEP 562): the farm's API and dispatcher import this package for its
#: requests and errors alone, and must not pay for torch, diffusers and transformers
_FROM_PIPELINE = ("OnPreview", "OnStep", "OnWindow", "Pipeline", "RenderResult")


def __getattr__(name: str):
    if name not in _FROM_PIPELINE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(".pipeline", __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


_pipelines: dict[tuple[str, str, str, str], Pipeline] = {}


def load_pipeline(
    checkpoint: str, weights: str | Path | None = None, device: str | None = None, attention: str = "auto"
) -> Pipeline:
    """The pipeline for a checkpoint, loaded once per process and reused (attention: the
    self-attention kernel, models.attention; "auto" takes the fastest installed)."""
    from .pipeline import Pipeline
    from .weights import weights_dir

    folder = weights_dir(checkpoint, weights)
    key = (get_spec(checkpoint).name, str(folder), str(device), attention)
    if key not in _pipelines:
        _pipelines[key] = Pipeline.load(checkpoint, folder, device=device, attention=attention)
    return _pipelines[key]


def render(
    request: RenderRequest,
    on_step: OnStep | None = None,
    *,
    weights: str | Path | None = None,
    device: str | None = None,
) -> RenderResult:
    """Render one take. on_step(i, n) runs after every denoising step and may raise to cancel."""
    resolved = request.resolved()  # bad input fails before any model loads
    return load_pipeline(resolved.spec.name, weights, device).render(resolved, on_step)
