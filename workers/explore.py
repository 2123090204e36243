"""The explore worker's runtime: one process per GPU, the model loaded once.

For each delivered take: claim it in SQL (a duplicate delivery claims nothing), render with
per-step progress and cooperative cancel, upload clip, thumbnail and manifest (last) to the
take's deterministic keys, and record the attempt. Failures go to the state machine, which
requeues a retryable one while attempts remain.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from farm import states
from farm.db import session_factory, transaction
from farm.settings import Settings
from farm.storage import Storage, open_storage, output_keys, sha256_file
from farm.tables import Asset, Take
from models import InputError, RenderCanceled, RenderRequest, load_pipeline

from .heartbeat import Heartbeat, gpu_name
from .manifest import build_manifest

log = logging.getLogger(__name__)


class ExploreRuntime:
    def __init__(self, settings: Settings, pool: str = "explore", storage: Storage | None = None):
        self.settings, self.pool = settings, pool
        self.factory = session_factory(settings.database)
        self.storage = storage or open_storage(settings)
        self.checkpoint = settings.explore_checkpoint if pool == "explore" else settings.hero_checkpoint
        self.gpu = gpu_name(settings.device)
        self.heartbeat = Heartbeat(self.factory, pool, self.gpu, settings.heartbeat_interval)
        self.pipeline = None

    def start(self) -> "ExploreRuntime":
        self.pipeline = load_pipeline(self.checkpoint, self.settings.weights_dir, self.settings.device)
        self.heartbeat.start()  # only once the model is loaded: capacity means ready
        log.info("worker %s ready: %s on %s", self.heartbeat.id, self.checkpoint, self.gpu)
        return self

    def stop(self) -> None:
        self.heartbeat.stop()

    def run(self, take_id: str) -> str:
        """Render one delivered take; returns what happened (for logs and tests)."""
        with transaction(self.factory) as session:
            attempt = states.claim(session, take_id, self.heartbeat.id, self.heartbeat.host, self.gpu)
            if attempt is None:
                state = session.execute(select(Take.state).where(Take.id == take_id)).scalar_one_or_none()
                log.info("take %s is %s: duplicate or stale delivery dropped", take_id, getattr(state, "value", "unknown"))
                return "dropped"
            take = session.get(Take, take_id)
            inputs = {kind: session.get(Asset, sha) for kind, sha in (("image", take.image_sha256),
                                                                       ("audio", take.audio_sha256)) if sha}
            session.expunge(take)
        self.heartbeat.beat(current_take_id=take_id)
        start = time.monotonic()
        try:
            with tempfile.TemporaryDirectory(prefix=f"take-{take_id}-") as tmp:
                outcome = self._render(take, attempt, inputs, Path(tmp), start)
        except RenderCanceled:
            with transaction(self.factory) as session:
                states.mark_canceled(session, take_id, attempt, time.monotonic() - start)
            outcome = "canceled"
        except InputError as exc:  # the take itself is wrong: retrying cannot help
            with transaction(self.factory) as session:
                states.fail(session, take_id, attempt, exc, retryable=False, gpu_seconds=time.monotonic() - start)
            outcome = "failed"
        except Exception as exc:
            log.exception("take %s attempt %d failed", take_id, attempt.number)
            with transaction(self.factory) as session:
                state = states.fail(session, take_id, attempt, exc, retryable=True, gpu_seconds=time.monotonic() - start)
            outcome = f"failed ({state.value if state else 'no longer ours'})"
        finally:
            self.heartbeat.beat(current_take_id=None)
        log.info("take %s attempt %d: %s", take_id, attempt.number, outcome)
        return outcome

    def _render(self, take: Take, attempt, inputs: dict, tmp: Path, start: float) -> str:
        files = {}
        for kind, asset in inputs.items():
            files[kind] = tmp / f"{kind}-{asset.sha256[:12]}"
            self.storage.get_file(asset.key, files[kind])
        request = RenderRequest(checkpoint=take.checkpoint, image=str(files["image"]) if "image" in files else None,
                                audio=str(files["audio"]) if "audio" in files else None, **take.params)
        last = [0.0]

        def on_step(i: int, n: int) -> None:
            now = time.monotonic()
            if i < n and now - last[0] < self.settings.progress_interval:
                return
            last[0] = now
            with transaction(self.factory) as session:
                stop = states.progress(session, take.id, attempt, i, n)
            if stop:
                raise RenderCanceled(f"take {take.id} canceled at step {i}/{n}")

        result = self.pipeline.render(request, on_step)
        keys = output_keys(take.id)
        clip, thumb = tmp / "clip.mp4", tmp / "thumbnail.jpg"
        result.write(clip, thumb)
        self.storage.put_file(keys["clip_key"], clip, "video/mp4")
        self.storage.put_file(keys["thumbnail_key"], thumb, "image/jpeg")
        clip_sha = sha256_file(clip)
        outputs = {"clip": {"key": keys["clip_key"], "sha256": clip_sha, "size": clip.stat().st_size},
                   "thumbnail": {"key": keys["thumbnail_key"], "sha256": sha256_file(thumb)}}
        manifest = build_manifest(take, attempt, result, self.pipeline.checkpoint_digest, outputs,
                                  self.heartbeat.host, self.gpu)
        manifest_path = tmp / "manifest.json"
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        self.storage.put_file(keys["manifest_key"], manifest_path, "application/json")  # last: it marks complete
        with transaction(self.factory) as session:
            done = states.finish(session, take.id, attempt, {**keys, "clip_sha256": clip_sha,
                                                            "clip_size": clip.stat().st_size},
                                 gpu_seconds=time.monotonic() - start)
        return "done" if done else "finished, but another attempt holds the take"
