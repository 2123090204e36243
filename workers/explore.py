"""The explore worker's runtime: one process per GPU, the model loaded once.

For each delivered take: claim it in SQL (a duplicate delivery claims nothing), render with
per-step progress and cooperative cancel, then hand the clip to a finisher thread that writes
the MP4, uploads clip, thumbnail and manifest (last) to the take's deterministic keys and
records the attempt, while the GPU takes the next take. Failures go to the state machine,
which requeues a retryable one while attempts remain.

The Celery message is acked when the GPU part ends. A worker killed while finishing leaves
its take running under a worker that stops heartbeating, which the reconciler requeues; the
keys are deterministic and the output row unique, so a second attempt never duplicates.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from farm import states
from farm.db import run_with_retry, session_factory, transaction
from farm.release import alive_workers
from farm.settings import Settings
from farm.storage import Storage, open_storage, output_keys
from farm.tables import Asset, Attempt, Take, Worker, utcnow
from models import InputError, RenderCanceled, RenderRequest, RenderResult, load_pipeline
from models.media import file_sha256

from .heartbeat import Heartbeat, gpu_name
from .manifest import build_manifest

log = logging.getLogger(__name__)


class Declined(Exception):
    """This worker is blocklisted for the take's batch: the message goes back to the queue."""


class Draining(Declined):
    """An operator drained this worker (`farm workers drain`): it claims no new take."""


class RenderTimeout(Exception):
    """The render ran past FARM_RENDER_TIME_LIMIT and was stopped between steps."""


class GPUOutOfMemory(Exception):
    """The GPU ran out of memory during the render (retried: the next attempt may fit)."""


def classify(exc: BaseException) -> tuple[BaseException, bool]:
    """(the error to record, whether a retry may help)."""
    import torch

    if isinstance(exc, InputError):
        return exc, False  # the take itself is wrong
    if isinstance(exc, torch.OutOfMemoryError):
        return GPUOutOfMemory(str(exc).splitlines()[0][:500] or "CUDA out of memory"), True
    return exc, True


class ExploreRuntime:
    gpus_per_take = 1  #: GPU seconds = wall seconds x this (the hero group holds several)

    def __init__(self, settings: Settings, pool: str = "explore", storage: Storage | None = None):
        self.settings, self.pool = settings, pool
        self.factory = session_factory(settings.database)
        self.storage = storage or open_storage(settings)
        self.checkpoint = settings.explore_checkpoint if pool == "explore" else settings.hero_checkpoint
        self.gpu = gpu_name(settings.device)
        self.heartbeat = Heartbeat(self.factory, pool, self.gpu, settings.heartbeat_interval)
        self.pipeline = None
        #: one finisher thread, one take in flight: the next decode waits for the last upload
        self.finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finisher")
        self.pending: Future | None = None

    def start(self) -> ExploreRuntime:
        self.pipeline = load_pipeline(self.checkpoint, self.settings.weights_dir, self.settings.device)
        self.heartbeat.start()  # only once the model is loaded: capacity means ready
        log.info("worker %s ready: %s on %s", self.heartbeat.id, self.checkpoint, self.gpu)
        return self

    def stop(self) -> None:
        """Finish what was rendered (SIGTERM: the in-flight take is finished, never lost)."""
        self.drain()
        self.finisher.shutdown(wait=True)
        self.heartbeat.stop()

    def drain(self) -> str | None:
        pending, self.pending = self.pending, None
        return pending.result() if pending is not None else None

    # -- one take ---------------------------------------------------------------------------
    def run(self, take_id: str) -> str:
        """Claim and render one delivered take; its finishing continues in the background."""
        self._refuse_if_draining(take_id)
        self._refuse_if_blocked(take_id)

        def claim(session):
            attempt = states.claim(session, take_id, self.heartbeat.id, self.heartbeat.host, self.gpu)
            if attempt is None:
                state = session.execute(select(Take.state).where(Take.id == take_id)).scalar_one_or_none()
                return None, state, None, None
            take = session.get(Take, take_id)
            inputs = {
                kind: session.get(Asset, sha)
                for kind, sha in (("image", take.image_sha256), ("audio", take.audio_sha256))
                if sha
            }
            session.expunge(take)
            return attempt, None, take, inputs

        attempt, state, take, inputs = run_with_retry(self.factory, claim, what=f"claim of take {take_id}")
        if attempt is None:
            log.info("take %s is %s: duplicate or stale delivery dropped", take_id, getattr(state, "value", "unknown"))
            return "dropped"
        self.heartbeat.beat(current_take_id=take_id)
        start = time.monotonic()
        tmp = tempfile.TemporaryDirectory(prefix=f"take-{take_id}-")
        try:
            result = self._render(take, attempt, inputs, Path(tmp.name))
        except BaseException as exc:
            tmp.cleanup()
            if _is_oom(exc):
                _free_gpu_memory()
            return self._failed(take_id, attempt, exc, start)
        finally:
            self.heartbeat.watch(None)
            self.heartbeat.beat(current_take_id=None)  # the GPU is free again
        self.drain()  # the previous take's upload, if still going
        if self.settings.finish_in_background:
            self.pending = self.finisher.submit(self._finish_safely, take, attempt, result, tmp, start)
            return "rendered; finishing"
        return self._finish_safely(take, attempt, result, tmp, start)

    def _refuse_if_draining(self, take_id: str) -> None:
        """A drained worker (its row `stopped` while it lives) hands every delivered take back."""
        stopped = run_with_retry(
            self.factory,
            lambda s: s.execute(select(Worker.stopped).where(Worker.id == self.heartbeat.id)).scalar_one_or_none(),
            what="drain check",
        )
        if stopped:
            log.info("take %s: this worker is draining; handing it back to the queue", take_id)
            raise Draining(take_id)

    def _refuse_if_blocked(self, take_id: str) -> None:
        """Kept off a batch it keeps failing (raises Declined), while another live worker can take it."""
        threshold = self.settings.blocklist_failures
        if not threshold:
            return

        def check(session):
            if not states.blocked(session, take_id, self.heartbeat.id, threshold):
                return False
            return alive_workers(session, self.pool, utcnow(), self.settings.worker_timeout) > 1

        if not run_with_retry(self.factory, check, what="blocklist check"):
            return
        log.warning("take %s: this worker failed its batch %d times; handing it to another worker", take_id, threshold)
        raise Declined(take_id)

    def _failed(self, take_id: str, attempt: Attempt, exc: BaseException, start: float) -> str:
        seconds = (time.monotonic() - start) * self.gpus_per_take
        if isinstance(exc, RenderCanceled):
            run_with_retry(self.factory, lambda s: states.mark_canceled(s, take_id, attempt, seconds))
            outcome = "canceled"
        elif isinstance(exc, Exception):
            error, retryable = classify(exc)
            log.error(
                "take %s attempt %d failed: %s",
                take_id,
                attempt.number,
                type(error).__name__,
                exc_info=exc if retryable else None,
            )
            state = run_with_retry(
                self.factory,
                lambda s: states.fail(s, take_id, attempt, error, retryable=retryable, gpu_seconds=seconds),
            )
            outcome = f"failed ({state.value if state else 'no longer ours'})"
        else:  # KeyboardInterrupt, SystemExit: record and let it through
            run_with_retry(
                self.factory,
                lambda s: states.fail(
                    s, take_id, attempt, RuntimeError(f"worker stopped: {exc!r}"), retryable=True, gpu_seconds=seconds
                ),
                seconds=10,
            )
            raise exc
        log.info("take %s attempt %d: %s", take_id, attempt.number, outcome)
        return outcome

    def _render(self, take: Take, attempt: Attempt, inputs: dict, tmp: Path) -> RenderResult:
        files = {}
        for kind, asset in inputs.items():
            files[kind] = tmp / f"{kind}-{asset.sha256[:12]}"
            self.storage.get_file(asset.key, files[kind])
        request = RenderRequest(
            checkpoint=take.checkpoint,
            image=str(files["image"]) if "image" in files else None,
            audio=str(files["audio"]) if "audio" in files else None,
            **take.params,
        )
        last = [0.0]
        deadline = time.monotonic() + self.settings.render_time_limit
        self.heartbeat.watch(self.settings.stall_timeout)

        def on_step(i: int, n: int) -> None:
            now = time.monotonic()
            self.heartbeat.watch(self.settings.stall_timeout)  # a step finished: not hung
            if now > deadline:
                raise RenderTimeout(
                    f"the render passed its {self.settings.render_time_limit:g} s limit at step {i}/{n}"
                )
            if i < n and now - last[0] < self.settings.progress_interval:
                return
            last[0] = now
            try:
                with transaction(self.factory) as session:
                    stop = states.progress(session, take.id, attempt, i, n)
            except DBAPIError as exc:  # the database is away: keep rendering, report later
                log.warning("progress of take %s not recorded (%s)", take.id, type(exc.orig).__name__)
                return
            if stop:
                raise RenderCanceled(f"take {take.id} canceled at step {i}/{n}")

        return self.pipeline.render(request, on_step)

    def _finish_safely(self, take: Take, attempt: Attempt, result: RenderResult, tmp, start: float) -> str:
        try:
            outcome = self._finish(take, attempt, result, Path(tmp.name), start)
        except Exception as exc:  # an upload that failed after its retries: the take goes back
            outcome = self._failed(take.id, attempt, exc, start)
        finally:
            tmp.cleanup()
        log.info("take %s attempt %d: %s", take.id, attempt.number, outcome)
        return outcome

    def _finish(self, take: Take, attempt: Attempt, result: RenderResult, tmp: Path, start: float) -> str:
        keys = output_keys(take.id)
        clip, thumb = tmp / "clip.mp4", tmp / "thumbnail.jpg"
        result.write(clip, thumb)
        self.storage.put_file(keys["clip_key"], clip, "video/mp4")
        self.storage.put_file(keys["thumbnail_key"], thumb, "image/jpeg")
        clip_sha = file_sha256(clip)
        outputs = {
            "clip": {"key": keys["clip_key"], "sha256": clip_sha, "size": clip.stat().st_size},
            "thumbnail": {"key": keys["thumbnail_key"], "sha256": file_sha256(thumb)},
        }
        manifest = build_manifest(
            take, attempt, result, self.pipeline.checkpoint_digest, outputs, self.heartbeat.host, self.gpu
        )
        manifest_path = tmp / "manifest.json"
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        self.storage.put_file(keys["manifest_key"], manifest_path, "application/json")  # last: it marks complete
        output = {**keys, "clip_sha256": clip_sha, "clip_size": clip.stat().st_size}
        seconds = (time.monotonic() - start) * self.gpus_per_take
        done = run_with_retry(
            self.factory,
            lambda s: states.finish(s, take.id, attempt, output, gpu_seconds=seconds),
            what=f"record of take {take.id}",
        )
        return "done" if done else "finished, but another attempt holds the take"


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError)


def _free_gpu_memory() -> None:
    """After an out-of-memory error the allocator holds freed blocks: hand them back."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
