"""A long take's finished windows in storage: saved as they finish, read back by the next attempt.

Each finished window's latents go to `storage.window_key(take, index)` as safetensors, with
what they were rendered from (the fingerprint: the checkpoint's weights digest, the resolved
request, the inputs and the LoRA stack), the digest of the window before it (the one it was
held to) and the attempt and GPU that rendered it in the file's metadata; the take's row counts
the windows saved from the first on (`states.window_saved`). The next attempt reads them back
in order, up to the first one missing, of other inputs or not held to the one before it (an
attempt declared lost that came back and wrote over one), and resumes after them
(`states.start_at_window`): a worker killed in window 5 of 9 costs window 5, not the take. On
the same device the resumed take ends on the same latents as an uninterrupted one.

A window is stored before the next one starts (a few MB: well under a second against a
window's minutes of GPU time), so the count on the row is always what storage holds. One that
cannot be stored is logged and ends the saving for this attempt (the count is a prefix); the
render goes on and a later attempt resumes earlier. The take's windows are deleted once its
clip is recorded.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from sqlalchemy.orm import Session, sessionmaker

from farm import states
from farm.db import run_with_retry
from farm.errors import ObjectMissing, StorageError
from farm.retention import delete_take_windows
from farm.storage import Storage, window_key
from farm.tables import Take
from models.request import ResolvedRequest

from .job import Job

log = logging.getLogger(__name__)


def fingerprint(take: Take, req: ResolvedRequest, weights: str | None) -> str:
    """What a window's latents depend on besides the device: equal fingerprints, same latents."""
    what = {
        "checkpoint": req.spec.name,
        "weights": weights,  #: the DiT files' sha256: new weights under the same name differ
        "request": req.record(),  #: every parameter as resolved (a changed default differs)
        "windows": [(w.start, w.length) for w in req.windows],
        "image": take.image_sha256,
        "audio": take.audio_sha256,
        "loras": take.loras or [],
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def digest(latents: torch.Tensor) -> str:
    """A window's latents as stored (float32 on the host), hashed: the next window names it."""
    return hashlib.sha256(_host(latents).numpy().tobytes()).hexdigest()


class WindowStore:
    def __init__(self, factory: sessionmaker[Session], storage: Storage, gpu: str, weights: Callable[[], str | None]):
        """weights: the loaded checkpoint's digest (asked once a long take needs it)."""
        self.factory, self.storage, self.gpu, self.weights = factory, storage, gpu, weights

    def resume(self, job: Job, req: ResolvedRequest) -> tuple[list[torch.Tensor], list[dict]]:
        """The finished windows an earlier attempt stored, in order (what `render(resume=)`
        takes), and where each came from; records the attempt's start window."""
        found: list[torch.Tensor] = []
        origins: list[dict] = []
        if len(req.windows) == 1 or not job.take.windows_saved:
            return found, origins
        want, held_to = fingerprint(job.take, req, self.weights()), ""
        for window in req.windows[: job.take.windows_saved]:
            index = window.index
            try:
                latents, meta = _read(self.storage.get_bytes(window_key(job.take.id, index)))
                origin = {"window": index, "attempt": int(meta["attempt"]), "gpu": str(meta["gpu"])}
                shape = (req.spec.vae.z_dim, window.length, req.height // 8, req.width // 8)
                if meta.get("fingerprint") != want or meta.get("window") != str(index):
                    raise ValueError("rendered from other inputs")
                if meta.get("previous") != held_to:
                    raise ValueError("not held to the stored window before it")
                if tuple(latents.shape) != shape:
                    raise ValueError(f"latents {tuple(latents.shape)}, the take's plan {shape}")
            except (ObjectMissing, StorageError, SafetensorError, ValueError, KeyError, TypeError) as exc:
                log.warning("take %s: stored window %d not used (%s); resuming there", job.take.id, index + 1, exc)
                break
            found.append(latents)
            origins.append(origin)
            held_to = digest(latents)
        start, windows, steps = len(found), len(req.windows), req.steps
        run_with_retry(
            self.factory,
            lambda s: states.start_at_window(s, job.take.id, job.attempt, start, windows, steps),
            what=f"start of take {job.take.id}",
        )
        job.attempt.start_window = start
        if start:
            take, number = job.take.id, job.attempt.number
            log.info("take %s attempt %d: resumes at window %d of %d", take, number, start + 1, windows)
        return found, origins

    def on_window(self, job: Job, req: ResolvedRequest, resumed: list[torch.Tensor]):
        """The engine's on_window for this attempt: each finished window of a long take to storage."""
        if len(req.windows) == 1:  # a single clip has nothing to resume
            return None
        fp = fingerprint(job.take, req, self.weights())
        held_to = digest(resumed[-1]) if resumed else ""
        broken = False

        def save(index: int, count: int, latents: torch.Tensor) -> None:
            nonlocal broken, held_to
            if broken:
                return
            host = _host(latents)
            meta = {"fingerprint": fp, "window": str(index), "previous": held_to, "take": job.take.id,
                    "attempt": str(job.attempt.number), "gpu": self.gpu}  # fmt: skip
            data = save_tensors({"latents": host}, metadata=meta)
            try:
                self.storage.put_stream(window_key(job.take.id, index), io.BytesIO(data), "application/octet-stream")
                ours = run_with_retry(
                    self.factory, lambda s: states.window_saved(s, job.take.id, job.attempt, index + 1), seconds=30
                )
            except Exception as exc:  # the render goes on; a later attempt resumes before this window
                ours = False
                log.warning("take %s: window %d of %d not saved (%s)", job.take.id, index + 1, count, exc)
            else:
                if ours:
                    log.info("take %s: window %d of %d saved (%.1f MB)", job.take.id, index + 1, count, len(data) / 1e6)
                else:  # the next step stops the render; its windows are another attempt's business
                    log.warning(
                        "take %s: window %d stored, but the take is no longer this attempt's", job.take.id, index + 1
                    )
            broken = not ours
            held_to = digest(host)

        return save

    def delete(self, take_id: str, windows: int) -> None:
        """The take's stored windows, once its clip is recorded (they only serve a resume)."""
        if windows > 1:  # one this misses goes at the beat's next pass (farm.retention)
            delete_take_windows(self.storage, take_id, windows)


def _host(latents: torch.Tensor) -> torch.Tensor:
    return latents.detach().to("cpu", torch.float32).contiguous()


def _read(data: bytes) -> tuple[torch.Tensor, dict]:
    """The latents and the metadata (safetensors keeps it in the JSON header after its length)."""
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return load_tensors(data)["latents"], meta if isinstance(meta, dict) else {}
