"""Failures no retry can mend fail a take once, naming the cause: an input object gone from
the store (the same bytes uploaded again repair it), the host out of memory."""

from __future__ import annotations

from sqlalchemy import select

from farm.tables import Asset, Attempt, Take
from tests.helpers import make_batch, upload
from workers.explore import ExploreRuntime


def inline(clean, storage) -> ExploreRuntime:
    """A started runtime that finishes each take before `run` returns."""
    return ExploreRuntime(clean.model_copy(update={"finish_in_background": False}), storage=storage).start()


def delete(storage, key: str) -> None:
    storage.client.delete_object(Bucket=storage.bucket, Key=storage._key(key))


def test_uploading_the_same_bytes_again_repairs_a_lost_object(client, media, storage, sessions):
    first = upload(client, media["image"]).json()
    with sessions() as session:
        key = session.get(Asset, first["sha256"]).key
    delete(storage, key)
    assert not storage.exists(key)
    again = upload(client, media["image"])
    assert again.status_code == 200 and again.json()["sha256"] == first["sha256"]
    assert storage.exists(key)


def test_a_take_whose_input_is_gone_fails_once_naming_it(client, media, storage, sessions, clean):
    sha = upload(client, media["image"]).json()["sha256"]
    (take_id,) = make_batch(sessions, clean, [{"prompt": "p", "mode": "TI", "image": sha}])
    with sessions() as session:
        delete(storage, session.get(Asset, sha).key)
    runtime = inline(clean, storage)
    try:
        assert runtime.run(take_id) == "failed (failed)"
    finally:
        runtime.stop()
    with sessions() as session:
        take = session.get(Take, take_id)
        attempts = session.execute(select(Attempt).where(Attempt.take_id == take_id)).scalars().all()
        assert (take.state.value, take.attempt_count, len(attempts)) == ("failed", 1, 1)
        assert take.error_class == "InputError"
        assert take.error_message.startswith("image: ") and "upload the same file again" in take.error_message


def test_running_out_of_host_memory_fails_the_take_once(clean, sessions, storage, monkeypatch):
    (take_id,) = make_batch(sessions, clean, [{"prompt": "too big", "mode": "T"}])
    runtime = inline(clean, storage)

    def exhausted(*_args, **_kwargs):
        raise MemoryError

    monkeypatch.setattr(runtime.pipeline, "render", exhausted)
    try:
        assert runtime.run(take_id) == "failed (failed)"
    finally:
        runtime.stop()
    with sessions() as session:
        take = session.get(Take, take_id)
        assert (take.state.value, take.attempt_count, take.error_class) == ("failed", 1, "HostOutOfMemory")
