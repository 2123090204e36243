"""The hero worker for real: `python -m workers --pool hero` supervising a 2-rank gloo group
on the tiny 17B-style model; a rank SIGKILLed mid-take respawns the group and the take
completes once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from sqlalchemy import select

from farm.tables import Attempt, Output, Take
from tests.helpers import make_batch
from tests.services import WorkerProcess, releasing, wait_for


def ranks_of(pid: int) -> list[int]:
    """The worker's spawned rank processes (multiprocessing's spawn_main children)."""
    out = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"spawn_main" in cmdline:
            out.append(int(child))
    return out


def test_a_hero_take_survives_a_killed_rank(clean, sessions, tmp_path):
    settings = clean.model_copy(update={"hero_checkpoint": "tiny-concat", "hero_gpus": 2})
    worker = WorkerProcess(settings, tmp_path / "hero.log", pool="hero")
    try:
        # the release loop with the farm's settings: after a failed render a worker's row says it
        # holds its pool's configured checkpoint, here tiny-concat
        with releasing(settings):
            worker.wait_ready(sessions)
            first = ranks_of(worker.proc.pid)
            assert len(first) == 2
            [take_id] = make_batch(
                sessions, settings, [{"prompt": "hero", "checkpoint": "tiny-concat", "mode": "T", "steps": 300}]
            )

            def progress():
                with sessions() as s:
                    take = s.get(Take, take_id)
                    return take.pool == "hero" and take.state.value == "running" and take.progress_step >= 3

            wait_for(progress, 120, "the group to render a few steps")
            os.kill(first[1], signal.SIGKILL)  # one rank dies mid-take

            def done():
                with sessions() as s:
                    return s.get(Take, take_id).state.value == "done"

            wait_for(done, 300, "the retried take to finish on the respawned group")
            second = ranks_of(worker.proc.pid)
            assert len(second) == 2 and not set(second) & set(first)  # a whole new group
            with sessions() as s:
                by_number = select(Attempt).where(Attempt.take_id == take_id).order_by(Attempt.number)
                attempts = s.execute(by_number).scalars().all()
                outputs = s.execute(select(Output).where(Output.take_id == take_id)).scalars().all()
            assert [a.state.value for a in attempts] == ["failed", "done"]
            assert attempts[0].error_class == "GroupFailed" and "rank 1 died" in attempts[0].error_message
            assert len(outputs) == 1 and outputs[0].attempt_id == attempts[1].id
            wall = (attempts[1].finished_at - attempts[1].started_at).total_seconds()
            assert 1.5 * wall < attempts[1].gpu_seconds <= 2 * wall + 0.5  # both GPUs of the group counted
            assert attempts[1].gpu.startswith("2x ")
    finally:
        worker.kill(signal.SIGTERM)
    assert ranks_of_alive(first + second) == []  # SIGTERM closed the group too


def ranks_of_alive(pids: list[int]) -> list[int]:
    return [
        p
        for p in pids
        if Path(f"/proc/{p}").exists() and b"zombie" not in Path(f"/proc/{p}/status").read_bytes().lower()
    ]
