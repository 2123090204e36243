"""A long take's finished windows in storage: saved as they finish, read back by the next attempt.

Each finished window's latents go to `storage.window_key(take, index)` as safetensors, with
what they were rendered from (the take's fingerprint: checkpoint, request, inputs, LoRA stack)
and by which attempt on which GPU in the file's metadata; the take's row counts the windows
saved from the first on (`states.window_saved`). The next attempt reads them back in order,
up to the first one missing or rendered from anything else, and resumes after them
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

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from sqlalchemy.orm import Session, sessionmaker

from farm import states
from farm.db import run_with_retry
from farm.errors import ObjectMissing, StorageError
from farm.storage import Storage, window_key
from farm.tables import Take
from models.request import ResolvedRequest

from .job import Job

log = logging.getLogger(__name__)


def fingerprint(take: Take) -> str:
    """What a window's latents depend on besides the device: equal fingerprints, same latents."""
    what = {
        "checkpoint": take.checkpoint,
        "params": take.params,
        "image": take.image_sha256,
        "audio": take.audio_sha256,
        "loras": take.loras or [],
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


class WindowStore:
    def __init__(self, factory: sessionmaker[Session], storage: Storage, gpu: str):
        self.factory, self.storage, self.gpu = factory, storage, gpu

    def resume(self, job: Job, req: ResolvedRequest) -> tuple[list[torch.Tensor], list[dict]]:
        """The finished windows an earlier attempt stored, in order (what `render(resume=)`
        takes), and where each came from; records the attempt's start window."""
        windows, steps = len(req.windows), req.steps
        found: list[torch.Tensor] = []
        origins: list[dict] = []
        if windows == 1:
            return found, origins
        want = fingerprint(job.take)
        for index in range(min(job.take.windows_saved, windows)):
            key = window_key(job.take.id, index)
            try:
                tensors, meta = _read(self.storage.get_bytes(key))
            except (ObjectMissing, StorageError, SafetensorError, ValueError) as exc:
                log.warning("take %s: window %d not read back (%s); resuming before it", job.take.id, index + 1, exc)
                break
            shape = (req.spec.vae.z_dim, req.windows[index].length, req.height // 8, req.width // 8)
            if meta.get("fingerprint") != want or meta.get("window") != str(index):
                log.warning("take %s: stored window %d is of other inputs; not used", job.take.id, index + 1)
                break
            if tuple(tensors["latents"].shape) != shape:  # planned otherwise since (another window length)
                log.warning("take %s: stored window %d does not fit the take's plan; not used", job.take.id, index + 1)
                break
            found.append(tensors["latents"])
            origins.append({"window": index, "attempt": int(meta["attempt"]), "gpu": meta["gpu"]})
        if found:
            start = len(found)
            run_with_retry(
                self.factory,
                lambda s: states.start_at_window(
                    s, job.take.id, job.attempt, start, start * steps, windows * steps, windows
                ),
                what=f"resume of take {job.take.id}",
            )
            job.attempt.start_window = start
            take, number = job.take.id, job.attempt.number
            log.info("take %s attempt %d: resumes at window %d of %d", take, number, start + 1, windows)
        return found, origins

    def on_window(self, job: Job):
        """The engine's on_window for this attempt: each finished window of a long take to storage."""
        broken = False

        def save(index: int, count: int, latents: torch.Tensor) -> None:
            nonlocal broken
            if count == 1 or broken:  # a single clip has nothing to resume
                return
            key, data = window_key(job.take.id, index), _write(latents, job, index, self.gpu)
            try:
                self.storage.put_stream(key, io.BytesIO(data), "application/octet-stream")
                ours = run_with_retry(
                    self.factory, lambda s: states.window_saved(s, job.take.id, job.attempt, index + 1), seconds=30
                )
            except Exception as exc:  # the render goes on; a later attempt resumes before this window
                broken = True
                log.warning("take %s: window %d of %d not saved (%s)", job.take.id, index + 1, count, exc)
                return
            if ours:
                log.info("take %s: window %d of %d saved (%.1f MB)", job.take.id, index + 1, count, len(data) / 1e6)

        return save

    def delete(self, take_id: str, windows: int) -> None:
        """The take's stored windows, once its clip is recorded (they only serve a resume)."""
        for index in range(windows if windows > 1 else 0):
            try:
                self.storage.delete(window_key(take_id, index))
            except StorageError as exc:  # left behind: a few MB, nobody's
                log.warning("take %s: window %d not deleted (%s)", take_id, index + 1, exc)


def _write(latents: torch.Tensor, job: Job, index: int, gpu: str) -> bytes:
    meta = {
        "fingerprint": fingerprint(job.take),
        "take": job.take.id,
        "window": str(index),
        "attempt": str(job.attempt.number),
        "gpu": gpu,
    }
    return save_tensors({"latents": latents.detach().to("cpu", torch.float32).contiguous()}, metadata=meta)


def _read(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The latents and the metadata (safetensors keeps it in the JSON header after its length)."""
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    return load_tensors(data), header.get("__metadata__") or {}
