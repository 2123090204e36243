"""S3 failing during upload: boto's retries with backoff, then a failed attempt with a reason."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from farm.errors import StorageError
from farm.storage import S3Storage, check_key
from farm.tables import Attempt, Take
from workers.explore import ExploreRuntime

from ..helpers import make_batch
from ..services import free_port


def dead_s3() -> S3Storage:
    return S3Storage("clips", "farm", f"http://127.0.0.1:{free_port()}", "us-east-1")  # nothing listens there


def test_upload_errors_are_retried_with_backoff_then_fail_with_a_reason(sessions, clean, tmp_path):
    storage = dead_s3()
    sends = []
    storage.client.meta.events.register("before-send.s3.PutObject", lambda **kw: sends.append(kw["request"].url))
    runtime = ExploreRuntime(clean.model_copy(update={"finish_in_background": False}), storage=storage).start()
    try:
        (take_id,) = make_batch(sessions, clean, [{"prompt": "p", "mode": "T"}])
        assert runtime.run(take_id) == "failed (queued)"
    finally:
        runtime.stop()
    clips = [url for url in sends if url.endswith("/clip.mp4")]  # besides: the preview and the attempt's log
    assert len(clips) >= 5 and len(set(clips)) == 1  # one clip, retried with backoff (5 attempts), then given up
    with sessions() as s:
        attempt = s.execute(select(Attempt).where(Attempt.take_id == take_id)).scalar_one()
        assert attempt.error_class == "StorageError"
        assert "S3 upload failed" in attempt.error_message and "Could not connect" in attempt.error_message
        assert s.get(Take, take_id).state.value == "queued"  # another attempt will come


def test_keys_cannot_escape_the_store():
    for bad in ("../etc/passwd", "/abs/key", "takes/../../x", "a//b", "takes/x y", "", "takes/.hidden/..", "~/x"):
        with pytest.raises(StorageError):
            check_key(bad)
    assert check_key("takes/abc/clip.mp4") == "takes/abc/clip.mp4"
