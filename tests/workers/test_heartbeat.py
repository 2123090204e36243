"""A worker's row on a real database: registered at start, kept fresh by beats, marked stopped at
exit; a render that stops making steps ends the process (exit code 70) so its take is requeued."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select

from farm.db import transaction
from farm.tables import Attempt, Take, Worker, utcnow
from tests.helpers import make_batch
from tests.services import ROOT, settings_env, wait_for
from workers.heartbeat import Heartbeat


def row(sessions, worker_id: str) -> Worker | None:
    with sessions() as s:
        return s.get(Worker, worker_id)


@pytest.fixture
def heartbeat(sessions):
    hb = Heartbeat(sessions, "explore", "cpu", interval=0.05)
    yield hb
    hb.stop()


def test_start_registers_the_worker_as_serving(sessions, heartbeat):
    before = utcnow()
    heartbeat.start()
    worker = row(sessions, heartbeat.id)
    assert heartbeat.id == f"{heartbeat.host}:{os.getpid()}:explore"
    assert (worker.pool, worker.host, worker.gpu, worker.slots) == ("explore", heartbeat.host, "cpu", 1)
    assert worker.stopped is False and worker.current_take_id is None
    assert worker.started_at >= before and worker.heartbeat_at >= before


def test_a_restart_under_a_known_id_serves_again(sessions, heartbeat):
    """The id is host:pid:pool; a row left by an earlier process with that id is taken over."""
    long_ago = utcnow() - timedelta(days=1)
    with transaction(sessions) as s:
        s.add(Worker(id=heartbeat.id, pool="explore", host="old", gpu="old", heartbeat_at=long_ago, stopped=True))
    heartbeat.start()
    worker = row(sessions, heartbeat.id)
    assert worker.stopped is False and worker.gpu == "cpu" and worker.heartbeat_at > long_ago


def test_beats_keep_the_heartbeat_fresh_and_carry_the_current_take(sessions, heartbeat):
    heartbeat.start()
    first = row(sessions, heartbeat.id).heartbeat_at
    wait_for(lambda: row(sessions, heartbeat.id).heartbeat_at > first, 10, "the thread's next beat")
    heartbeat.beat(current_take_id="take-1")
    assert row(sessions, heartbeat.id).current_take_id == "take-1"
    heartbeat.beat(current_take_id=None)
    assert row(sessions, heartbeat.id).current_take_id is None


def test_stop_marks_the_worker_stopped_and_idle(sessions, heartbeat):
    heartbeat.start()
    heartbeat.beat(current_take_id="take-1")
    heartbeat.stop()
    worker = row(sessions, heartbeat.id)
    assert worker.stopped is True and worker.current_take_id is None


HUNG = """
import threading, time
from farm.db import session_factory
from farm.settings import get_settings
from workers.heartbeat import Heartbeat
hb = Heartbeat(session_factory(get_settings().database), "explore", "cpu", 0.05).start()
print(hb.id, flush=True)
for _ in range(20):  # a second of 50 ms steps against a 0.5 s deadline: each step feeds the watchdog
    hb.watch(0.5)
    time.sleep(0.05)
print("fed", flush=True)
threading.Event().wait()  # a GPU call that never returns: only the watchdog ends this process
"""


def test_a_missed_deadline_exits_the_process_and_leaves_its_row_to_the_reconciler(clean, sessions):
    proc = subprocess.run(
        [sys.executable, "-c", HUNG], cwd=ROOT, env=settings_env(clean), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 70, proc.stderr
    worker_id, fed = proc.stdout.split()
    assert fed == "fed"  # alive while steps came, past two deadlines' worth of time
    assert "the worker is hung" in proc.stderr
    worker = row(sessions, worker_id)
    assert worker.stopped is False  # no clean exit: the reconciler finds it by its silence


STALLED = """
import threading, sys
from farm import states
from farm.db import session_factory, transaction
from farm.settings import get_settings
from farm.tables import Take
from workers.heartbeat import Heartbeat
from workers.job import Job
from workers.progress import Progress

settings = get_settings().model_copy(update={"stall_timeout": 0.5})
factory = session_factory(settings.database)
hb = Heartbeat(factory, "explore", "cpu", 0.05).start()
with transaction(factory) as session:
    attempt = states.claim(session, sys.argv[1], hb.id, hb.host, hb.gpu)
    take = session.get(Take, sys.argv[1])
    session.expunge(take)
with Progress(factory, settings, hb, Job(take, attempt, {}, [], 1)) as on_step:
    on_step(1, 10)  # one step, then a GPU call that never returns
    threading.Event().wait()
"""


def test_a_hung_render_records_its_cause_before_the_worker_exits(clean, sessions):
    (take_id,) = make_batch(sessions, clean, [{"prompt": "hangs", "mode": "T"}])
    proc = subprocess.run(
        [sys.executable, "-c", STALLED, take_id],
        cwd=ROOT,
        env=settings_env(clean),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 70, proc.stderr
    with sessions() as session:
        take = session.get(Take, take_id)
        attempt = session.execute(select(Attempt).where(Attempt.take_id == take_id)).scalar_one()
        # failed naming its cause (and queued again while attempts remain), not lost for no reason
        assert (attempt.state.value, attempt.error_class) == ("failed", "Stalled")
        assert "after step 1" in attempt.error_message
        assert (take.state.value, take.error_class) == ("queued", "Stalled")
