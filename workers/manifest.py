"""The manifest: everything needed to re-render a clip exactly, written last."""

from __future__ import annotations

import platform
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from models import RenderResult
from models.probe import file_sha256

#: the exact versions `make` installs (pip constraints); its hash makes the software reproducible
LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"


#: the packages whose versions decide a clip's frames; the attention kernels' (extras, outside the
#: lock) say which build of the kernel the manifest's engine.dit.attention ran (None: not installed)
PACKAGES = ("humo-farm", "torch", "diffusers", "transformers", "av", "flash-attn-4", "flashinfer-python")


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@cache
def software() -> dict:
    """The versions that rendered, and the sha256 of the lock file the environment was
    installed from (None where the package runs without its repository's lock)."""
    versions = {name: _version(name) for name in PACKAGES}
    lock = file_sha256(LOCK) if LOCK.is_file() else None
    return versions | {"python": platform.python_version(), "lock_sha256": lock}


def build_manifest(
    take,
    attempt,
    result: RenderResult,
    checkpoint_digest: str | None,
    outputs: dict,
    host: str,
    gpu: str,
    consent: dict | None = None,
) -> dict:
    """consent: per input, its status and records at render time (farm.consent.snapshot)."""
    req = result.request
    return {
        "manifest_version": 1,
        "take_id": take.id,
        "batch_id": take.batch_id,
        "producer": take.producer,
        "attempt": attempt.number,
        "checkpoint": {"name": req.spec.name, "dit_sha256": checkpoint_digest},
        "request": req.record(),
        #: loras: [{sha256, strength}] in the order they were stacked
        #: consent: {image|audio: {status, records: [{id, sha256 of the record's content}], synthetic_by}}
        "inputs": {
            "image": take.image_sha256,
            "audio": take.audio_sha256,
            "loras": take.loras or [],
            "consent": consent or {},
        },
        "engine": result.engine,  #: what the engine ran with (sampler, order, passes), as it reports it
        "audio_fit": {
            "action": result.audio_fit.action,
            "audio_seconds": result.audio_fit.audio_seconds,
            "clip_seconds": result.audio_fit.clip_seconds,
        },
        "outputs": outputs,
        "frames_sha256": result.frames_sha256,
        "timings": {k: round(v, 4) for k, v in result.timings.items()},
        "software": software(),
        "hardware": {"host": host, "gpu": gpu},
    }
