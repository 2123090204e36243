"""HuMo inference engine: `render(request, on_step)` turns a take into a clip.

Knows nothing of the farm. See `models.pipeline` for the steps and `models.specs` for the
checkpoints.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError, InputError, ModelsError, RenderCanceled
from .pipeline import OnStep, Pipeline, RenderResult
from .request import RenderRequest
from .specs import MODES, SPECS, ModelSpec, get_spec

__all__ = [
    "MODES",
    "SPECS",
    "CheckpointError",
    "InputError",
    "ModelSpec",
    "ModelsError",
    "OnStep",
    "Pipeline",
    "RenderCanceled",
    "RenderRequest",
    "RenderResult",
    "get_spec",
    "load_pipeline",
    "render",
]

_pipelines: dict[tuple[str, str, str], Pipeline] = {}


def load_pipeline(checkpoint: str, weights: str | Path | None = None, device: str | None = None) -> Pipeline:
    """The pipeline for a checkpoint, loaded once per process and reused."""
    from .weights import weights_dir

    folder = weights_dir(checkpoint, weights)
    key = (get_spec(checkpoint).name, str(folder), str(device))
    if key not in _pipelines:
        _pipelines[key] = Pipeline.load(checkpoint, folder, device=device)
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
