"""The finisher: a rendered clip becomes stored objects and a done attempt, off the GPU's path.

It writes the MP4 and thumbnail, signs the clip's content credentials (C2PA: what made it,
the manifest's hash, the consent records; workers/credentials.py), uploads clip, thumbnail
and manifest (last: its presence marks the outputs complete) to its attempt's own keys and
records the attempt (the record names them the take's outputs only if the attempt still holds
the take), while the GPU renders the next take. One thread and one take in flight: the next hand-over waits
for the last upload. An upload that fails after its retries fails the attempt (retried).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy.orm import Session, sessionmaker

from farm import consent
from farm.credentials import manifest_digest
from farm.db import run_with_retry
from farm.storage import Storage, output_keys
from models import RenderResult
from models.probe import file_sha256

from .attempt_logs import AttemptLogs
from .credentials import ClipSigner
from .job import Job
from .manifest import build_manifest
from .windows import WindowStore

log = logging.getLogger(__name__)


class Finisher:
    def __init__(
        self,
        factory: sessionmaker[Session],
        storage: Storage,
        digest: Callable[[], str | None],
        signer: ClipSigner,
        logs: AttemptLogs,
        windows: WindowStore,
    ):
        """digest: the checkpoint's weights digest, asked when a manifest is written; signer:
        signs every clip's content credentials; logs: where each attempt's log lines go;
        windows: a long take's stored windows, deleted once its clip is recorded."""
        self.factory, self.storage, self.digest, self.signer = factory, storage, digest, signer
        self.logs, self.windows = logs, windows
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finisher")
        self._pending: Future | None = None

    def hand_over(self, job: Job, result: RenderResult, background: bool) -> str:
        """Finish the take on the thread ("rendered; finishing") or here (its outcome)."""
        self.drain()  # the previous take's upload, if still going
        if background:
            self._pending = self._thread.submit(self._finish_safely, job, result)
            return "rendered; finishing"
        return self._finish_safely(job, result)

    def drain(self) -> str | None:
        """Wait for the take in flight; its outcome (None when there was none)."""
        pending, self._pending = self._pending, None
        return pending.result() if pending is not None else None

    def close(self) -> None:
        self.drain()
        self._thread.shutdown(wait=True)

    def _finish_safely(self, job: Job, result: RenderResult) -> str:
        with self.logs.capturing(job.log):  # this thread's lines are the take's too
            try:
                outcome = self._finish(job, result)
                log.info("take %s attempt %d: %s", job.take.id, job.attempt.number, outcome)
            except Exception as exc:  # an upload that failed after its retries: the take goes back
                outcome = job.failed(self.factory, exc)
            finally:
                job.scratch.cleanup()
        self.logs.store(job.log)  # the attempt ended: its lines are complete
        return outcome

    def _finish(self, job: Job, result: RenderResult) -> str:
        keys = output_keys(job.take.id, job.attempt.number)
        encoded, clip, thumb = job.folder / "encoded.mp4", job.folder / "clip.mp4", job.folder / "thumbnail.jpg"
        result.write(encoded, thumb)
        attempt, digest = job.attempt, self.digest()
        # the consent records as they stand at render time
        consent_now = run_with_retry(self.factory, lambda s: consent.snapshot(s, job.take), what="consent snapshot")
        manifest = build_manifest(job.take, attempt, result, digest, {}, attempt.host, attempt.gpu, consent_now)
        definition = self.signer.definition(
            job.take.id, manifest_digest(manifest), consent_now, job.take.checkpoint, digest
        )
        seconds = self.signer.sign(encoded, clip, definition)
        log.info("take %s attempt %d: content credentials signed in %.4f s", job.take.id, attempt.number, seconds)
        self.storage.put_file(keys["clip_key"], clip, "video/mp4")
        self.storage.put_file(keys["thumbnail_key"], thumb, "image/jpeg")
        clip_sha, clip_size = file_sha256(clip), clip.stat().st_size
        manifest["outputs"] = {  # left out of manifest_digest: the signed clip's hash is known only now
            "clip": {"key": keys["clip_key"], "sha256": clip_sha, "size": clip_size},
            "thumbnail": {"key": keys["thumbnail_key"], "sha256": file_sha256(thumb)},
            "credentials": {"signing_seconds": round(seconds, 4), "development_chain": self.signer.chain.development},
        }
        path = job.folder / "manifest.json"
        path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        self.storage.put_file(keys["manifest_key"], path, "application/json")  # last: it marks complete
        outcome = job.finished(self.factory, {**keys, "clip_sha256": clip_sha, "clip_size": clip_size})
        if outcome == "done":  # a long take's stored windows served their resume
            self.windows.delete(job.take.id, len(result.request.windows))
        # what a losing attempt wrote is nobody's: the loser removes its own (it may resume after
        # the winner), the winner what earlier attempts left (one killed mid-upload)
        losers = [job.attempt.number] if outcome != "done" else range(1, job.attempt.number)
        for number in losers:
            for key in output_keys(job.take.id, number).values():
                self.storage.delete(key)
        return outcome
