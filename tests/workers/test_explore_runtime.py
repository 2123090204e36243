"""The worker runtime in-process: finishing on the finisher thread, drained on stop."""

from __future__ import annotations

from farm.storage import LocalStorage, output_keys
from farm.tables import Output, Take
from tests.helpers import make_batch
from workers.explore import ExploreRuntime


def test_takes_finish_on_the_thread_and_stop_drains_them(sessions, clean, tmp_path):
    settings = clean.model_copy(update={"finish_in_background": True})
    runtime = ExploreRuntime(settings, storage=LocalStorage(tmp_path / "objects")).start()
    a, b = make_batch(
        sessions, clean, [{"prompt": "a", "mode": "T", "seed": 1}, {"prompt": "b", "mode": "T", "seed": 2}]
    )
    assert runtime.run(a) == "rendered; finishing"
    assert runtime.run(b) == "rendered; finishing"  # waited for a's upload before handing b over
    with sessions() as s:
        assert s.get(Take, a).state.value == "done"
    runtime.stop()  # SIGTERM path: the in-flight take is finished, not lost
    with sessions() as s:
        assert s.get(Take, b).state.value == "done" and s.get(Output, b) is not None
    assert (tmp_path / "objects" / output_keys(b, 1)["manifest_key"]).is_file()


def test_inline_finishing_reports_the_outcome(sessions, clean, tmp_path):
    settings = clean.model_copy(update={"finish_in_background": False})
    runtime = ExploreRuntime(settings, storage=LocalStorage(tmp_path / "objects")).start()
    (a,) = make_batch(sessions, clean, [{"prompt": "a", "mode": "T"}])
    try:
        assert runtime.run(a) == "done"
        assert runtime.run(a) == "dropped"  # a second delivery of a finished take
    finally:
        runtime.stop()
