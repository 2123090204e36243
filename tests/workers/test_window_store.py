"""A long take's stored windows (workers/windows.py) on the real database and a local store:
saved in order and counted on the take, read back by the next attempt up to the first that is
missing or of other inputs, and a store that fails stops the saving without stopping the render."""

from __future__ import annotations

import pytest
import torch

from farm import states
from farm.db import transaction
from farm.errors import StorageError
from farm.storage import LocalStorage, window_key
from farm.tables import Attempt, Take
from models import RenderRequest
from workers.job import Job
from workers.windows import WindowStore, fingerprint

from ..helpers import make_batch

LONG = {"prompt": "long", "mode": "T", "seed": 3, "steps": 2, "width": 64, "height": 48, "frames": 417}


@pytest.fixture
def claim(sessions):
    """claim(take_id): a new attempt at the take, as a worker claims it after the last one failed."""
    jobs: list[Job] = []

    def make(take_id: str) -> Job:
        jobs.append(_claim(sessions, take_id))
        return jobs[-1]

    yield make
    for job in jobs:
        job.scratch.cleanup()


def _claim(sessions, take_id: str) -> Job:
    with transaction(sessions) as s:
        running = s.query(Attempt).filter_by(take_id=take_id, state="running").one_or_none()
        if running is not None:
            states.fail(s, take_id, running, RuntimeError("worker lost"), retryable=True, gpu_seconds=0)
        if s.get_one(Take, take_id).state.value == "failed":  # its attempts used up: retried
            states.retry(s, take_id, extra_attempts=1)
        attempt = states.claim(s, take_id, "host:1:explore", "host", "cpu")
        assert attempt is not None
        take = s.get_one(Take, take_id)
        s.expunge_all()
    return Job(take, attempt, {}, [], 1)


def latents(index: int) -> torch.Tensor:
    return torch.full((16, 25, 6, 8), float(index)) + torch.randn(16, 25, 6, 8)


def read(sessions, take_id: str, number: int) -> tuple[Take, Attempt]:
    with sessions() as s:
        return s.get_one(Take, take_id), s.query(Attempt).filter_by(take_id=take_id, number=number).one()


def resolved(job: Job):
    return RenderRequest(checkpoint=job.take.checkpoint, **job.take.params).resolved(probe_files=False)


def test_windows_are_saved_counted_and_resumed_after(sessions, clean, claim, tmp_path):
    (take_id,) = make_batch(sessions, clean, [LONG])
    storage = LocalStorage(tmp_path)
    store = WindowStore(sessions, storage, "cpu", lambda: "weights-1")
    first = claim(take_id)
    req = resolved(first)
    assert len(req.windows) == 5
    save, made = store.on_window(first, req, []), [latents(i) for i in range(3)]
    for i, lat in enumerate(made):
        save(i, 5, lat)
    assert read(sessions, take_id, 1)[0].windows_saved == 3

    second = claim(take_id)
    resume, origins = store.resume(second, req)
    assert [torch.equal(a, b) for a, b in zip(resume, made, strict=True)] == [True] * 3  # bit for bit
    assert origins == [{"window": i, "attempt": 1, "gpu": "cpu"} for i in range(3)]
    take, attempt = read(sessions, take_id, 2)
    assert attempt.start_window == 3 and second.attempt.start_window == 3
    assert (take.progress_step, take.progress_total, take.progress_windows) == (6, 10, 5)  # window 4, step 0

    # a window stored from other inputs (here another take's) ends what is used there
    (other_id,) = make_batch(sessions, clean, [{**LONG, "seed": 4}])
    other = claim(other_id)
    assert fingerprint(other.take, resolved(other), "weights-1") != fingerprint(second.take, req, "weights-1")
    store.on_window(other, resolved(other), [])(0, 5, latents(9))
    with storage.path(window_key(other_id, 0)).open("rb") as theirs:
        storage.put_stream(window_key(take_id, 1), theirs, "application/octet-stream")
    third = claim(take_id)
    resume, _ = store.resume(third, req)
    assert len(resume) == 1 and torch.equal(resume[0], made[0])
    take, attempt = read(sessions, take_id, 3)
    assert attempt.start_window == 1 and take.windows_saved == 1  # the rest is rendered and stored again

    # one of another shape (the take planned otherwise since) is not used either
    store.on_window(third, req, resume)(1, 5, torch.zeros(16, 24, 6, 8))
    assert len(store.resume(claim(take_id), req)[0]) == 1

    # an attempt declared lost that comes back writes over window 2 after the current one
    # stored windows 2 and 3: window 3 was held to another window 2, so the chain ends there
    current = claim(take_id)
    resume, _ = store.resume(current, req)
    save = store.on_window(current, req, resume)
    save(1, 5, latents(1))
    save(2, 5, latents(2))
    lost = latents(7)
    store.on_window(third, req, resume)(1, 5, lost)  # held to window 1, as the lost one saw it
    resume, _ = store.resume(claim(take_id), req)
    assert len(resume) == 2 and resume[0].equal(made[0]) and resume[1].equal(lost)

    # one missing: nothing before it is lost, nothing after it used
    storage.delete(window_key(take_id, 0))
    last = claim(take_id)
    assert store.resume(last, req) == ([], [])
    assert read(sessions, take_id, last.attempt.number)[1].start_window == 0

    store.delete(take_id, 5)
    assert not any(storage.exists(window_key(take_id, i)) for i in range(5))


def test_new_weights_under_the_same_name_resume_nothing(sessions, clean, claim, tmp_path):
    (take_id,) = make_batch(sessions, clean, [LONG])
    storage = LocalStorage(tmp_path)
    first = claim(take_id)
    save = WindowStore(sessions, storage, "cpu", lambda: "weights-1").on_window(first, resolved(first), [])
    save(0, 5, latents(0))
    save(1, 5, latents(1))
    again = claim(take_id)
    assert WindowStore(sessions, storage, "cpu", lambda: "weights-2").resume(again, resolved(again)) == ([], [])
    take, attempt = read(sessions, take_id, 2)
    assert attempt.start_window == 0 and take.windows_saved == 0  # rendered and stored again, from window 1


class FailingStore(LocalStorage):
    def put_stream(self, key, stream, content_type):
        if key.endswith("0001.safetensors"):
            raise StorageError("S3 upload failed: the store is away")
        super().put_stream(key, stream, content_type)


def test_a_window_the_store_refuses_ends_the_saving_not_the_render(sessions, clean, claim, tmp_path):
    (take_id,) = make_batch(sessions, clean, [LONG])
    storage = FailingStore(tmp_path)
    job = claim(take_id)
    save = WindowStore(sessions, storage, "cpu", lambda: "weights").on_window(job, resolved(job), [])
    for i in range(4):
        save(i, 5, latents(i))  # no exception: the render goes on
    assert read(sessions, take_id, 1)[0].windows_saved == 1  # the count stays a prefix
    assert storage.exists(window_key(take_id, 0))
    assert not any(storage.exists(window_key(take_id, i)) for i in (1, 2, 3))  # none after the gap


def test_a_single_clip_stores_no_window(sessions, clean, claim, tmp_path):
    (take_id,) = make_batch(sessions, clean, [{**LONG, "frames": 97}])
    storage = LocalStorage(tmp_path)
    job = claim(take_id)
    assert WindowStore(sessions, storage, "cpu", lambda: "weights").on_window(job, resolved(job), []) is None
    assert not storage.exists(window_key(take_id, 0))
    assert read(sessions, take_id, 1)[0].windows_saved == 0
