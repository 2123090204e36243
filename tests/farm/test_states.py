"""Every take transition, and every illegal one, on Postgres."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from farm import states
from farm.db import transaction
from farm.errors import IllegalTransition, NotFound
from farm.tables import Attempt, AttemptState, Output, Take, TakeState

from ..helpers import make_batch, state

S = TakeState


@pytest.fixture
def take(sessions, clean):
    return make_batch(sessions, clean, [{"prompt": "p", "mode": "T", "seed": 1}])[0]


def claim(sessions, take_id, worker="w1"):
    with transaction(sessions) as s:
        return states.claim(s, take_id, worker, "host", "cpu")


def test_the_happy_path_records_one_attempt_and_one_output(sessions, take):
    with transaction(sessions) as s:
        assert states.release(s, [take]) == [take]
    attempt = claim(sessions, take)
    assert attempt.number == 1 and state(sessions, take) == "running"
    with transaction(sessions) as s:
        assert states.progress(s, take, attempt, 2, 4) is False
    with transaction(sessions) as s:
        assert states.finish(
            s,
            take,
            attempt,
            {"clip_key": "c", "thumbnail_key": "t", "manifest_key": "m", "clip_sha256": "0" * 64, "clip_size": 1},
            gpu_seconds=2.5,
        )
    with sessions() as s:
        t = s.get(Take, take)
        assert t.state == S.done and t.finished_at is not None and t.progress_step == 2
        a = s.execute(select(Attempt).where(Attempt.take_id == take)).scalar_one()
        assert a.state == AttemptState.done and a.gpu_seconds == 2.5
        assert s.get(Output, take).clip_key == "c"


def test_a_second_claim_of_a_running_or_done_take_gets_nothing(sessions, take):
    attempt = claim(sessions, take)
    assert claim(sessions, take, "w2") is None  # duplicate delivery while running
    with transaction(sessions) as s:
        states.finish(
            s,
            take,
            attempt,
            {"clip_key": "c", "thumbnail_key": "t", "manifest_key": "m", "clip_sha256": "0" * 64, "clip_size": 1},
            1.0,
        )
    assert claim(sessions, take, "w3") is None  # duplicate delivery after done
    with sessions() as s:
        assert s.execute(select(Attempt).where(Attempt.take_id == take)).scalars().all()[0].worker_id == "w1"
        assert len(s.execute(select(Attempt).where(Attempt.take_id == take)).scalars().all()) == 1


def test_retryable_failure_requeues_until_attempts_run_out(sessions, take):
    for number in (1, 2, 3):
        attempt = claim(sessions, take)
        assert attempt.number == number
        with transaction(sessions) as s:
            target = states.fail(s, take, attempt, RuntimeError("CUDA error"), retryable=True)
        assert target == (S.queued if number < 3 else S.failed)
    with sessions() as s:
        t = s.get(Take, take)
        assert t.state == S.failed and t.error_class == "RuntimeError" and t.attempt_count == 3
        assert [a.state for a in t.attempts] == [AttemptState.failed] * 3


def test_non_retryable_failure_fails_at_once(sessions, take):
    attempt = claim(sessions, take)
    with transaction(sessions) as s:
        assert states.fail(s, take, attempt, ValueError("bad image"), retryable=False) == S.failed


def test_cancel_before_release_and_while_running(sessions, clean):
    a, b = make_batch(sessions, clean, [{"prompt": "p", "mode": "T"}, {"prompt": "q", "mode": "T"}])
    with transaction(sessions) as s:
        assert states.cancel(s, a) == S.canceled
    attempt = claim(sessions, b)
    with transaction(sessions) as s:
        assert states.cancel(s, b) == S.running  # requested; the worker stops at its next step
    with transaction(sessions) as s:
        assert states.progress(s, b, attempt, 1, 4) is True
    with transaction(sessions) as s:
        assert states.mark_canceled(s, b, attempt)
    assert state(sessions, b) == "canceled"
    assert claim(sessions, a) is None  # a canceled take never starts


def test_retry_reprioritise_and_select(sessions, take):
    with transaction(sessions) as s:
        states.cancel(s, take)
        states.retry(s, take, extra_attempts=3)
        states.reprioritise(s, take, 7)
    with sessions() as s:
        t = s.get(Take, take)
        assert t.state == S.queued and t.priority == 7 and t.max_attempts == 3
    with pytest.raises(IllegalTransition, match="only finished takes can be selected"):
        with transaction(sessions) as s:
            states.select_for_hero(s, take, True)


@pytest.mark.parametrize("action", ["cancel", "retry", "reprioritise", "select_for_hero"])
def test_illegal_actions_on_a_done_take(sessions, take, action):
    attempt = claim(sessions, take)
    with transaction(sessions) as s:
        states.finish(
            s,
            take,
            attempt,
            {"clip_key": "c", "thumbnail_key": "t", "manifest_key": "m", "clip_sha256": "0" * 64, "clip_size": 1},
            1.0,
        )
    call = {
        "cancel": lambda s: states.cancel(s, take),
        "retry": lambda s: states.retry(s, take, 1),
        "reprioritise": lambda s: states.reprioritise(s, take, 1),
        "select_for_hero": lambda s: states.select_for_hero(s, take, True),
    }[action]
    if action == "select_for_hero":
        with transaction(sessions) as s:
            call(s)  # legal on a done take
        return
    with pytest.raises(IllegalTransition, match="is done"):
        with transaction(sessions) as s:
            call(s)


def test_retry_of_a_queued_or_running_take_is_illegal(sessions, take):
    with pytest.raises(IllegalTransition, match="only failed or canceled"):
        with transaction(sessions) as s:
            states.retry(s, take, 1)
    claim(sessions, take)
    with pytest.raises(IllegalTransition):
        with transaction(sessions) as s:
            states.retry(s, take, 1)


def test_the_transition_table_is_enforced_in_code():
    illegal = [(a, b) for a in S for b in S if b not in states.TRANSITIONS[a]]
    assert (S.done, S.queued) in illegal and (S.queued, S.done) in illegal and (S.failed, S.running) in illegal
    with pytest.raises(AssertionError, match="done -> queued is not a transition"):
        states._move(None, "x", [S.done], S.queued, None)


def test_unknown_take(sessions, clean):
    with pytest.raises(NotFound):
        with transaction(sessions) as s:
            states.cancel(s, "nope")


def test_a_dead_workers_take_is_requeued_with_its_attempt_lost(sessions, take):
    attempt = claim(sessions, take, "dead-worker")
    with transaction(sessions) as s:
        assert states.reclaim_from_dead_workers(s, ["dead-worker"]) == [take]
    with sessions() as s:
        t = s.get(Take, take)
        assert t.state == S.queued and t.error_class == "WorkerLost"
        assert s.get(Attempt, attempt.id).state == AttemptState.lost
    # the dead attempt cannot finish any more
    with transaction(sessions) as s:
        assert not states.finish(
            s,
            take,
            attempt,
            {"clip_key": "c", "thumbnail_key": "t", "manifest_key": "m", "clip_sha256": "0" * 64, "clip_size": 1},
            1.0,
        )


def test_a_take_canceled_while_its_worker_died_stays_canceled(sessions, take):
    claim(sessions, take, "dying")
    with transaction(sessions) as s:
        assert states.cancel(s, take) == S.running
    with transaction(sessions) as s:
        states.reclaim_from_dead_workers(s, ["dying"])
    assert state(sessions, take) == "canceled"  # found by the property test: it used to requeue unclaimable


def test_a_failure_after_a_cancel_request_cancels(sessions, take):
    attempt = claim(sessions, take)
    with transaction(sessions) as s:
        states.cancel(s, take)
    with transaction(sessions) as s:
        assert states.fail(s, take, attempt, RuntimeError("x"), retryable=True) == S.canceled
