"""The blocklist keeps a worker off a batch it keeps failing, and never stalls the batch:
failures the worker did not cause (the store, the database, a lost worker, a bad input) and failures older
than FARM_BLOCKLIST_WINDOW don't count, and a worker declines only while another serving
worker of its pool is not blocked for the batch. On Postgres, with fake worker rows; and
once end to end, with two real workers through an S3 outage."""

from __future__ import annotations

import contextlib
import socket
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import InterfaceError, OperationalError

from farm import states
from farm.db import get_engine, transaction
from farm.errors import ObjectMissing, StorageError, WorkerLost
from farm.tables import Attempt, AttemptState, Take, TakeState, Worker, utcnow
from models import InputError
from workers.admission import admit
from workers.errors import Declined, RenderTimeout

from ..helpers import make_batch
from ..services import WorkerProcess, wait_for

POOL = "explore"


def add_worker(sessions, name: str, *, pool: str = POOL, age: float = 0.0, stopped: bool = False) -> str:
    """A worker row as a live worker's heartbeat keeps it (age: seconds since its last beat)."""
    worker_id = f"blocklist-host:{name}:{pool}"
    with transaction(sessions) as s:
        s.add(
            Worker(
                id=worker_id,
                pool=pool,
                host="blocklist-host",
                gpu="cpu",
                slots=1,
                heartbeat_at=utcnow() - timedelta(seconds=age),
                stopped=stopped,
            )
        )
    return worker_id


def fail_on(sessions, take_id: str, worker_id: str, error: BaseException, ago: float = 0.0) -> None:
    """One attempt of the take on this worker, failed `ago` seconds ago with `error`."""
    at = utcnow() - timedelta(seconds=ago)
    with transaction(sessions) as s:
        attempt = states.claim(s, take_id, worker_id, "blocklist-host", "cpu", now=at)
        assert attempt is not None
        assert states.fail(s, take_id, attempt, error, retryable=True, now=at) == TakeState.queued


def declines(sessions, settings, worker_id: str, take_id: str) -> bool:
    try:
        admit(sessions, settings, POOL, worker_id, take_id)
    except Declined:
        return True
    return False


def blocked(sessions, settings, take_id: str, *worker_ids: str) -> set[str]:
    since = utcnow() - timedelta(seconds=settings.blocklist_window)
    with sessions() as s:
        return states.blocked_workers(s, take_id, worker_ids, settings.blocklist_failures, since)


@pytest.fixture
def batch(sessions, clean) -> list[str]:
    """Four queued takes of one batch, with attempts to spare."""
    return make_batch(sessions, clean.model_copy(update={"max_attempts": 20}), [{"prompt": f"t{i}"} for i in range(4)])


def test_a_worker_that_keeps_failing_a_batch_declines_it_while_another_can_take_it(sessions, clean, batch):
    assert clean.blocklist_failures == 2
    bad, good = add_worker(sessions, "bad"), add_worker(sessions, "good")
    fail_on(sessions, batch[0], bad, RenderTimeout("past the limit"))
    assert not declines(sessions, clean, bad, batch[1])  # once is not a pattern
    fail_on(sessions, batch[1], bad, RuntimeError("NaN in the latents"))
    assert blocked(sessions, clean, batch[2], bad, good) == {bad}
    assert declines(sessions, clean, bad, batch[2]) and declines(sessions, clean, bad, batch[0])
    assert not declines(sessions, clean, good, batch[2])
    (other,) = make_batch(sessions, clean, [{"prompt": "another batch"}])
    assert not declines(sessions, clean, bad, other)  # blocked for that batch only


def test_storage_database_lost_worker_and_bad_input_failures_do_not_count(sessions, clean, batch):
    worker = add_worker(sessions, "w")
    add_worker(sessions, "other")  # one that is not blocked: a blocked worker may decline
    errors: list[BaseException] = [
        StorageError("S3 upload failed: Could not connect to the endpoint URL"),
        OperationalError("UPDATE takes ...", {}, Exception("server closed the connection unexpectedly")),
        InterfaceError("SELECT ...", {}, Exception("connection already closed")),
        WorkerLost("worker stopped heartbeating"),
        ObjectMissing("object assets/image/ee/gone not found"),
        InputError("image", "the input image is gone from the store; upload it again"),
    ]
    for error in errors:
        fail_on(sessions, batch[0], worker, error)
    with transaction(sessions) as s:  # and an attempt lost with its worker, as the reconciler ends it
        attempt = states.claim(s, batch[1], worker, "blocklist-host", "cpu")
        assert attempt is not None
        assert states.reclaim_from_dead_workers(s, [worker]) == [batch[1]]
    with sessions() as s:
        recorded = s.execute(
            select(Attempt.error_class, Attempt.state).where(Attempt.worker_id == worker).order_by(Attempt.id)
        ).all()
    assert [c for c, _ in recorded] == [type(e).__name__ for e in errors] + ["WorkerLost"]
    assert {c for c, _ in recorded} == set(states.NOT_THE_WORKERS_FAULT)
    assert [st for _, st in recorded] == [AttemptState.failed] * len(errors) + [AttemptState.lost]
    assert blocked(sessions, clean, batch[2], worker) == set()
    assert not declines(sessions, clean, worker, batch[2])
    fail_on(sessions, batch[2], worker, RenderTimeout("past the limit"))  # what it may have caused counts
    assert not declines(sessions, clean, worker, batch[3])  # one such failure: under the threshold
    fail_on(sessions, batch[3], worker, RenderTimeout("past the limit"))
    assert declines(sessions, clean, worker, batch[0])


def test_failures_older_than_the_window_do_not_count(sessions, clean, batch):
    assert clean.blocklist_window > 0
    worker = add_worker(sessions, "w")
    add_worker(sessions, "other")  # one that is not blocked: a blocked worker may decline
    window = clean.blocklist_window
    fail_on(sessions, batch[0], worker, RenderTimeout("long ago"), ago=window + 60)
    fail_on(sessions, batch[1], worker, RenderTimeout("long ago"), ago=window + 1)
    assert blocked(sessions, clean, batch[2], worker) == set()
    assert not declines(sessions, clean, worker, batch[2])  # forgiven
    fail_on(sessions, batch[2], worker, RenderTimeout("just now"), ago=window - 30)
    assert not declines(sessions, clean, worker, batch[3])  # one recent failure, two forgiven
    fail_on(sessions, batch[3], worker, RenderTimeout("just now"))
    assert declines(sessions, clean, worker, batch[0])
    shorter = clean.model_copy(update={"blocklist_window": 10.0})  # the setting decides
    assert not declines(sessions, shorter, worker, batch[0])


def test_when_every_serving_worker_is_blocked_none_declines(sessions, clean, batch):
    a, b = add_worker(sessions, "a"), add_worker(sessions, "b")
    for worker in (a, b):
        fail_on(sessions, batch[0], worker, RenderTimeout("past the limit"))
        fail_on(sessions, batch[1], worker, RenderTimeout("past the limit"))
    assert blocked(sessions, clean, batch[2], a, b) == {a, b}
    assert not declines(sessions, clean, a, batch[2]) and not declines(sessions, clean, b, batch[2])
    # workers that cannot take it don't count: a drained one, a dead one, one of another pool
    add_worker(sessions, "draining", stopped=True)
    add_worker(sessions, "dead", age=clean.worker_timeout + 30)
    add_worker(sessions, "hero", pool="hero")
    assert not declines(sessions, clean, a, batch[2]) and not declines(sessions, clean, b, batch[2])
    add_worker(sessions, "fresh")  # one that is not blocked: now both hand the batch to it
    assert declines(sessions, clean, a, batch[2]) and declines(sessions, clean, b, batch[2])


def test_a_lone_blocked_worker_keeps_trying(sessions, clean, batch):
    worker = add_worker(sessions, "alone")
    fail_on(sessions, batch[0], worker, RenderTimeout("past the limit"))
    fail_on(sessions, batch[1], worker, RenderTimeout("past the limit"))
    assert blocked(sessions, clean, batch[2], worker) == {worker}
    assert not declines(sessions, clean, worker, batch[2])


def test_blockedness_of_many_workers_is_one_query(sessions, clean, batch):
    workers = [add_worker(sessions, f"w{i}") for i in range(6)]
    for worker in workers[:3]:
        fail_on(sessions, batch[0], worker, RenderTimeout("past the limit"))
        fail_on(sessions, batch[1], worker, RenderTimeout("past the limit"))
    fail_on(sessions, batch[0], workers[3], RenderTimeout("past the limit"))
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    engine = get_engine(clean.database)
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert blocked(sessions, clean, batch[2], *workers) == set(workers[:3])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1


# -- end to end: two real workers through an S3 outage ----------------------------------------------
class S3Outage:
    """A TCP proxy in front of the S3 API that the test cuts (open connections drop, new ones
    are closed at once) and restores."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.target = (parts.hostname, parts.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.down = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, name="s3-proxy", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.down.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src, dst)

    def _drop(self, *conns: socket.socket) -> None:
        with self._lock:
            self._open -= set(conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def cut(self) -> None:
        self.down.set()
        with self._lock:
            conns = list(self._open)
        self._drop(*conns)

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.listener.close()
        self.cut()


def storage_failures(sessions, take_ids: list[str]) -> dict[str, int]:
    """Failed attempts with StorageError on these takes, per worker."""
    with sessions() as s:
        rows = s.execute(
            select(Attempt.worker_id).where(
                Attempt.take_id.in_(take_ids),
                Attempt.state == AttemptState.failed,
                Attempt.error_class == "StorageError",
            )
        ).scalars()
        out: dict[str, int] = {}
        for worker_id in rows:
            out[worker_id] = out.get(worker_id, 0) + 1
        return out


def test_an_s3_outage_that_fails_both_workers_does_not_stall_the_batch(
    sessions, clean, s3_endpoint, release_loop, tmp_path
):
    outage = S3Outage(s3_endpoint)
    proxied = clean.model_copy(update={"s3_endpoint_url": outage.url})
    workers = [WorkerProcess(proxied, tmp_path / f"worker-{i}.log") for i in range(2)]
    try:
        ids = {w.wait_ready(sessions) for w in workers}
        outage.cut()  # every upload now fails, after boto's retries
        take_ids = make_batch(
            sessions, clean.model_copy(update={"max_attempts": 20}), [{"prompt": f"t{i}", "steps": 2} for i in range(6)]
        )
        threshold = clean.blocklist_failures
        wait_for(
            lambda: (n := storage_failures(sessions, take_ids)).keys() == ids and min(n.values()) >= threshold,
            180,
            f"both workers to fail {threshold} attempts of the batch on the outage",
        )
        outage.restore()

        def finished():
            with sessions() as s:
                got = s.execute(select(Take.state).where(Take.id.in_(take_ids))).scalars().all()
            return all(st in states.FINISHED for st in got)

        wait_for(finished, 180, "the batch to finish after the outage")
        with sessions() as s:
            assert set(s.execute(select(Take.state).where(Take.id.in_(take_ids))).scalars()) == {TakeState.done}
            failed = s.execute(
                select(Attempt.error_class).where(Attempt.take_id.in_(take_ids), Attempt.state != AttemptState.done)
            ).scalars()
            assert set(failed) == {"StorageError"}  # the outage was all that failed them
        assert min(storage_failures(sessions, take_ids).values()) >= threshold  # the old rule: both blocked
        for w in workers:
            assert "handing it to another worker" not in w.log.read_text()  # nobody declined the batch
    finally:
        for w in workers:
            w.kill()
        outage.close()
