"""The manifest: everything needed to re-render a clip exactly, written last."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from models import RenderResult


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def build_manifest(
    take, attempt, result: RenderResult, checkpoint_digest: str | None, outputs: dict, host: str, gpu: str
) -> dict:
    req = result.request
    return {
        "manifest_version": 1,
        "take_id": take.id,
        "batch_id": take.batch_id,
        "producer": take.producer,
        "attempt": attempt.number,
        "checkpoint": {"name": req.spec.name, "dit_sha256": checkpoint_digest},
        "request": {
            "prompt": req.prompt,
            "negative_prompt": req.negative_prompt,
            "mode": req.mode,
            "seed": req.seed,
            "width": req.width,
            "height": req.height,
            "frames": req.frames,
            "steps": req.steps,
            "shift": req.shift,
            "scale_text": req.scales.text,
            "scale_audio": req.scales.audio,
            "scale_image": req.scales.image,
        },
        "inputs": {"image": take.image_sha256, "audio": take.audio_sha256},
        "sampler": {"name": "flow-unipc", "order": 2, "steps": req.steps, "shift": req.shift},
        "audio_fit": {
            "action": result.audio_fit.action,
            "audio_seconds": result.audio_fit.audio_seconds,
            "clip_seconds": result.audio_fit.clip_seconds,
        },
        "outputs": outputs,
        "frames_sha256": result.frames_sha256,
        "timings": {k: round(v, 4) for k, v in result.timings.items()},
        "software": {name: _version(name) for name in ("humo-farm", "torch", "diffusers", "transformers", "av")}
        | {"python": platform.python_version()},
        "hardware": {"host": host, "gpu": gpu},
    }
