"""No attempt but the winner writes a take's outputs: an attempt that was declared lost while
it uploaded, and resumes after another attempt finished the take, changes nothing a reader
sees (its objects are its own, and removed)."""

from __future__ import annotations

import json
import threading

from farm import states
from farm.db import transaction
from farm.storage import output_keys
from farm.tables import Output, Take
from models.probe import file_sha256
from tests.helpers import make_batch
from workers.explore import ExploreRuntime


class HeldStorage:
    """The real store, with the first upload held until the test lets it go (an attempt paused
    between its last step and its upload, e.g. by SIGSTOP)."""

    def __init__(self, storage):
        self.storage, self.reached, self.go = storage, threading.Event(), threading.Event()

    def put_file(self, key, path, content_type):
        self.reached.set()
        assert self.go.wait(120), "the held upload was never released"
        return self.storage.put_file(key, path, content_type)

    def __getattr__(self, name):
        return getattr(self.storage, name)


def test_a_resumed_lost_attempt_never_overwrites_the_winners_outputs(clean, sessions, storage, tmp_path):
    (take_id,) = make_batch(sessions, clean, [{"prompt": "one clip", "mode": "T", "seed": 5}])
    held = HeldStorage(storage)
    first = ExploreRuntime(clean, storage=held)  # finishes in the background, like a worker
    first.heartbeat.id = "paused-host:1:explore"
    first.start()
    second = ExploreRuntime(clean.model_copy(update={"finish_in_background": False}), storage=storage).start()
    try:
        assert first.run(take_id) == "rendered; finishing"
        assert held.reached.wait(120)  # its finisher is at its first upload, and stays there
        with transaction(sessions) as session:  # the reconciler: the paused worker stopped heartbeating
            assert states.reclaim_from_dead_workers(session, [first.heartbeat.id]) == [take_id]
        assert second.run(take_id) == "done"
        held.go.set()  # the paused attempt resumes: it uploads, then learns it lost
        assert first.drain() == "finished, but another attempt holds the take"
    finally:
        held.go.set()
        first.stop()
        second.stop()
    with sessions() as session:
        take, output = session.get(Take, take_id), session.get(Output, take_id)
        assert take.state.value == "done" and take.attempt_count == 2
        clip = tmp_path / "clip.mp4"
        storage.get_file(output.clip_key, clip)
        assert file_sha256(clip) == output.clip_sha256  # the record's clip is the one stored
        manifest = json.loads(storage.get_bytes(output.manifest_key))
        assert manifest["attempt"] == 2 and manifest["outputs"]["clip"]["sha256"] == output.clip_sha256
    assert not any(storage.exists(key) for key in output_keys(take_id, 1).values())  # the loser's are gone
