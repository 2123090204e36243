"""A worker's runtime: the model loaded once, delivered takes rendered one at a time.

For each delivered take: hand it back if this worker is drained or blocklisted for its batch
(workers/admission.py), claim it in SQL (workers/job.py; a duplicate delivery claims nothing),
render with per-step progress and cooperative cancel (workers/progress.py), then hand the
clip to the finisher thread (workers/finisher.py) while the GPU takes the next take. Failures
go to the state machine, which requeues a retryable one while attempts remain. The worker's
row says what its DiT holds after each render (`holding`), which the release loop's affinity
reads (farm/affinity.py).

The Celery message is acked when the GPU part ends. A worker killed while finishing leaves
its take running under a worker that stops heartbeating, which the reconciler requeues; the
keys are deterministic and the output row unique, so a second attempt never duplicates.

Subclasses say how the model is held: ExploreRuntime in this process, HeroRuntime as a group
of ranks.
"""

from __future__ import annotations

import logging
import time

from farm import queue
from farm.affinity import stack_key
from farm.db import session_factory
from farm.errors import ObjectMissing
from farm.settings import Settings
from farm.storage import Storage, open_storage
from models import InputError, RenderRequest, RenderResult
from models.request import LoraUse

from .admission import admit
from .attempt_logs import AttemptLogs
from .credentials import ClipSigner
from .errors import is_oom
from .finisher import Finisher
from .heartbeat import Heartbeat
from .job import Job, claim
from .lora_cache import LoraCache
from .previews import Previews
from .progress import Progress
from .windows import WindowStore

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, pool: str, storage: Storage | None, *, gpu: str, gpus: int = 1):
        """gpu: the hardware as recorded on attempts; gpus: how many the take holds (GPU seconds)."""
        self.settings, self.pool, self.gpu, self.gpus_per_take = settings, pool, gpu, gpus
        self.factory = session_factory(settings.database)
        self.storage = storage or open_storage(settings)
        self.checkpoint = settings.explore_checkpoint if pool == "explore" else settings.hero_checkpoint
        self.heartbeat = Heartbeat(
            self.factory, pool, gpu, settings.heartbeat_interval, holding=stack_key(self.checkpoint, None)
        )
        self.loras = LoraCache(self.storage, settings.data_dir / "loras", settings.lora_cache_bytes)
        self.pipeline = None  #: what renders: render(request, on_step, on_preview) and checkpoint_digest
        self.previews = Previews(self.storage, settings.preview_interval)
        self.logs = AttemptLogs(self.storage)  #: each attempt's log lines, stored when it ends
        #: a long take's finished windows, stored for the next attempt
        self.windows = WindowStore(self.factory, self.storage, gpu, lambda: self.pipeline.checkpoint_digest)
        # the digest is asked on the finisher thread: hashing the weights never holds up the GPU
        self.finisher = Finisher(
            self.factory,
            self.storage,
            lambda: self.pipeline.checkpoint_digest,
            ClipSigner(settings),
            self.logs,
            self.windows,
        )

    @property
    def direct_queue(self) -> str:
        """The queue the release loop sends takes for this worker alone to (farm/affinity.py)."""
        return queue.direct_queue(self.pool, self.heartbeat.id)

    def load(self):
        """Load the model; the pipeline that renders with it."""
        raise NotImplementedError

    def start(self) -> Runtime:
        self.pipeline = self.load()
        if self.settings.preview_interval:  # fit the preview map now (~1 s on a GPU), not in a take's steps
            getattr(self.pipeline, "preview_map", None)  # a rank group has none: its ranks hold the DiT
        self.heartbeat.start()  # only once the model is loaded: capacity means ready
        log.info("%s worker %s ready: %s on %s", self.pool, self.heartbeat.id, self.checkpoint, self.gpu)
        return self

    def stop(self) -> None:
        """Finish what was rendered (SIGTERM: the in-flight take is finished, never lost)."""
        self.finisher.close()
        self.previews.close()
        self.heartbeat.stop()
        self.logs.close()

    def drain(self) -> str | None:
        """Wait for the take the finisher holds; its outcome."""
        return self.finisher.drain()

    def run(self, take_id: str) -> str:
        """Claim and render one delivered take; its finishing continues in the background.
        Raises Declined (or Draining) when the take must go back to the queue."""
        admit(self.factory, self.settings, self.pool, self.heartbeat.id, take_id)
        job = claim(self.factory, take_id, self.heartbeat, self.gpus_per_take)
        if job is None:
            return "dropped"
        with self.logs.capturing(job.log):
            return self._run(job)

    def _run(self, job: Job) -> str:
        take, number = job.take, job.attempt.number
        log.info("take %s attempt %d: rendering %s on %s", take.id, number, take.checkpoint, self.heartbeat.id)
        self.heartbeat.beat(current_take_id=take.id)
        holding = None  # a failed render may have left its stack, or none, on the DiT: unknown
        try:
            result = self._render(job)
            holding = stack_key(take.checkpoint, take.loras)  # the DiT keeps the take's stack
            log.info("take %s attempt %d: rendered in %.1f s", take.id, number, time.monotonic() - job.started)
        except BaseException as exc:
            job.scratch.cleanup()
            if is_oom(exc):
                _free_gpu_memory()
            try:
                return job.failed(self.factory, exc)
            finally:
                self.logs.store(job.log)  # the attempt ended here: its lines are complete
        finally:
            self.heartbeat.beat(current_take_id=None, holding=holding)  # the GPU is free again
        return self.finisher.hand_over(job, result, background=self.settings.finish_in_background)

    def _render(self, job: Job) -> RenderResult:
        files = {}
        for kind, asset in job.inputs.items():
            files[kind] = job.folder / f"{kind}-{asset.sha256[:12]}"
            try:
                self.storage.get_file(asset.key, files[kind])
            except ObjectMissing:  # no retry brings it back: the take fails once, saying how to mend it
                raise InputError(
                    kind,
                    f"the uploaded {kind} {asset.sha256[:12]} is missing from the store; upload the same "
                    "file again (it is repaired in place), then retry the take",
                ) from None
        req = RenderRequest(
            checkpoint=job.take.checkpoint,
            image=str(files["image"]) if "image" in files else None,
            audio=str(files["audio"]) if "audio" in files else None,
            loras=tuple(LoraUse(str(self.loras.path(asset)), strength) for asset, strength in job.loras),
            **job.take.params,
        ).resolved()
        resume, origins = self.windows.resume(job, req)  # a long take an earlier attempt began
        progress = Progress(self.factory, self.settings, self.heartbeat, job, self.previews, len(req.windows))
        with progress as on_step:
            result = self.pipeline.render(
                req, on_step, on_step.preview, resume=resume, on_window=self.windows.on_window(job, req, resume)
            )
        if "windows" in result.engine:  # which attempt, on which GPU, rendered the windows it resumed after
            result.engine["windows"]["resumed_from"] = origins
        return result


def _free_gpu_memory() -> None:
    """After an out-of-memory error the allocator holds freed blocks: hand them back."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
