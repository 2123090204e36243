"""Property test of the take state machine on Postgres: any sequence of actions, from the API,
workers and the reconciler, keeps the record consistent."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlalchemy import select, text

from farm import states
from farm.db import get_engine, transaction
from farm.errors import IllegalTransition
from farm.tables import Attempt, AttemptState, Output, Take, TakeState

from ..helpers import make_batch

S = TakeState
OUTPUT = {"clip_key": "c", "thumbnail_key": "t", "manifest_key": "m", "clip_sha256": "0" * 64, "clip_size": 1}


@pytest.fixture
def machine(sessions, clean):
    class TakeLifecycle(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            with get_engine(clean.database).begin() as conn:
                conn.execute(text("TRUNCATE outputs, attempts, takes, batches, projects CASCADE"))
            (self.take,) = make_batch(sessions, clean, [{"prompt": "p", "mode": "T"}])
            self.attempts: list[Attempt] = []  # every attempt a worker ever got

        def state(self) -> TakeState:
            with sessions() as s:
                return s.get(Take, self.take).state

        @rule()
        def release(self):
            before = self.state()
            with transaction(sessions) as s:
                released = states.release(s, [self.take])
            assert (released == [self.take]) == (before == S.queued)

        @rule(worker=st.sampled_from(["w1", "w2"]))
        def claim(self, worker):
            before = self.state()
            with transaction(sessions) as s:
                attempt = states.claim(s, self.take, worker, "h", "cpu")
            assert (attempt is not None) == (before in (S.queued, S.released))
            if attempt is not None:
                self.attempts.append(attempt)

        @rule(which=st.integers(0, 5), step=st.integers(1, 10))
        def progress(self, which, step):
            if self.attempts:
                with transaction(sessions) as s:
                    states.progress(s, self.take, self.attempts[which % len(self.attempts)], step, 10)

        @rule(which=st.integers(0, 5))
        def finish(self, which):
            if not self.attempts:
                return
            attempt = self.attempts[which % len(self.attempts)]
            with transaction(sessions) as s:
                holds = (
                    s.get(Take, self.take).state == S.running and s.get(Take, self.take).attempt_count == attempt.number
                )
            with transaction(sessions) as s:
                assert states.finish(s, self.take, attempt, OUTPUT, 1.0) == holds

        @rule(which=st.integers(0, 5), retryable=st.booleans())
        def fail(self, which, retryable):
            if self.attempts:
                with transaction(sessions) as s:
                    states.fail(s, self.take, self.attempts[which % len(self.attempts)], RuntimeError("x"), retryable)

        @rule()
        def cancel(self):
            before = self.state()
            try:
                with transaction(sessions) as s:
                    after = states.cancel(s, self.take)
            except IllegalTransition:
                assert before in (S.done, S.failed, S.canceled)
                return
            assert after == (S.running if before == S.running else S.canceled)

        @rule(which=st.integers(0, 5))
        def worker_sees_cancel(self, which):
            if self.attempts:
                with transaction(sessions) as s:
                    states.mark_canceled(s, self.take, self.attempts[which % len(self.attempts)])

        @rule()
        def retry(self):
            before = self.state()
            try:
                with transaction(sessions) as s:
                    states.retry(s, self.take, 3)
            except IllegalTransition:
                assert before not in (S.failed, S.canceled)

        @rule(worker=st.sampled_from(["w1", "w2"]))
        def worker_dies(self, worker):
            with transaction(sessions) as s:
                states.reclaim_from_dead_workers(s, [worker])

        @invariant()
        def record_is_consistent(self):
            with sessions() as s:
                take = s.get(Take, self.take)
                attempts = s.execute(select(Attempt).where(Attempt.take_id == self.take)).scalars().all()
                outputs = s.execute(select(Output).where(Output.take_id == self.take)).scalars().all()
            running = [a for a in attempts if a.state == AttemptState.running]
            done = [a for a in attempts if a.state == AttemptState.done]
            assert len(outputs) <= 1 and len(done) <= 1  # a take renders to completion once
            assert (take.state == S.done) == (len(outputs) == 1) == (len(done) == 1)
            assert take.attempt_count == len(attempts)
            if take.state == S.running:  # the current attempt is the last one and it runs
                assert attempts and attempts[-1].number == take.attempt_count
            if take.state == S.done:
                assert outputs[0].attempt_id == done[0].id
            assert len(running) <= 1

    return TakeLifecycle


def test_any_sequence_of_actions_keeps_the_take_consistent(machine):
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25, stateful_step_count=20, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )
