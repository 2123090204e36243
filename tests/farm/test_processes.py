"""Every process the farm starts ends with it: `farm worker` killed leaves no worker behind,
`farm up`'s children and a hero supervisor's ranks die with their parent (read from Linux's /proc,
as the farm runs on Linux)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import select

from farm.tables import Worker

from ..services import ROOT, settings_env, wait_for


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, session id) of a process; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name, in parentheses, may hold spaces
    return fields[0], int(fields[1]), int(fields[3])


def running(pid: int) -> bool:
    """Alive: a zombie (dead, not yet reaped by whoever adopted it) does not count."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def processes() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(pid: int) -> set[int]:
    """The live processes whose parent chain leads to `pid` (not `pid` itself)."""
    children: dict[int, list[int]] = {}
    for p in processes():
        stat = _stat(p)
        if stat is not None and stat[0] not in ("Z", "X"):
            children.setdefault(stat[1], []).append(p)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def in_session(sid: int) -> set[int]:
    """The live processes of a session (what a process started with start_new_session left,
    whoever adopted them after it died)."""
    return {p for p in processes() if (stat := _stat(p)) and stat[2] == sid and stat[0] not in ("Z", "X")}


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def kill_session(proc: subprocess.Popen) -> None:
    """Cleanup whatever the test found: the process and anything left in its session."""
    for pid in in_session(proc.pid) | {proc.pid}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def registered_worker(sessions, proc: subprocess.Popen, log: Path) -> str:
    """Wait until a worker that `proc` is, or started, registers; its id (host:pid:pool)."""

    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"`farm worker` exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        ours = {proc.pid} | descendants(proc.pid)
        with sessions() as s:
            ids = s.execute(select(Worker.id)).scalars().all()
        return next((i for i in ids if int(i.split(":")[1]) in ours), None)

    worker_id = wait_for(ready, 120, "the worker `farm worker` runs to load its model and register")
    wait_for(lambda: "ready." in log.read_text(), 60, "the Celery consumer to start")
    return worker_id


def farm_worker(settings, log: Path) -> subprocess.Popen:
    return start([sys.executable, "-m", "farm.cli", "worker", "--pool", "explore"], settings_env(settings), log)


def test_a_killed_farm_worker_leaves_no_worker_running(sessions, clean, tmp_path):
    log = tmp_path / "farm-worker.log"
    proc = farm_worker(clean, log)
    try:
        worker_id = registered_worker(sessions, proc, log)
        worker_pid = int(worker_id.split(":")[1])
        started = {proc.pid} | descendants(proc.pid)  # everything `farm worker` is or started
        assert worker_pid in started and "-m workers" in cmdline(worker_pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        wait_for(lambda: not running(worker_pid), 60, f"the worker (pid {worker_pid}) to end")
        wait_for(
            lambda: not [p for p in started | in_session(proc.pid) if running(p)],
            60,
            "every process `farm worker` started to end",
        )
        assert not [p for p in in_session(proc.pid) if "-m workers" in cmdline(p)]
    finally:
        kill_session(proc)


def test_sigterm_to_farm_worker_is_the_worker_s_warm_shutdown(sessions, clean, tmp_path):
    log = tmp_path / "farm-worker.log"
    proc = farm_worker(clean, log)
    try:
        worker_id = registered_worker(sessions, proc, log)
        proc.send_signal(signal.SIGTERM)  # a deploy stops `farm worker`: the worker itself hears it
        assert proc.wait(60) == 0
        wait_for(lambda: not in_session(proc.pid), 30, "every process `farm worker` started to end")
        with sessions() as s:
            assert s.get(Worker, worker_id).stopped is True  # it left the fleet as a drained worker does
    finally:
        kill_session(proc)


PARENT = textwrap.dedent(
    """
    import functools, os, subprocess, sys, threading
    from farm.cli.serve import _end_with_parent
    threading.Thread(target=threading.Event().wait, daemon=True).start()  # `farm up` runs threads
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],  # a child that would outlive its parent
        preexec_fn=functools.partial(_end_with_parent, os.getpid()),
    )
    print(child.pid, flush=True)
    child.wait()
    """
)


def test_farm_up_s_children_end_when_it_is_killed(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        assert running(child)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        wait_for(lambda: not running(child), 30, "`farm up`'s child to end with it")
    finally:
        kill_session(proc)


SUPERVISOR = textwrap.dedent(
    """
    import sys, threading
    from workers.hero_group import RankGroup
    group = RankGroup("tiny", sys.argv[1], 2, device="cpu", load_timeout=120).start()
    open(sys.argv[2], "w").write(" ".join(map(str, group.pids)))
    threading.Event().wait()
    """
)


def test_hero_ranks_end_when_their_supervisor_is_killed(weights, tmp_path):
    pids, log = tmp_path / "ranks", tmp_path / "supervisor.log"
    proc = start([sys.executable, "-c", SUPERVISOR, str(weights), str(pids)], dict(os.environ), log)
    try:

        def loaded():
            if proc.poll() is not None:
                raise AssertionError(f"the supervisor exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            return pids.exists() and pids.read_text()

        ranks = [int(p) for p in wait_for(loaded, 180, "the ranks to load").split()]
        assert len(ranks) == 2 and all(running(r) for r in ranks)
        started = descendants(proc.pid)  # the ranks, and multiprocessing's resource tracker
        assert set(ranks) <= started
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        wait_for(lambda: not [p for p in started if running(p)], 60, "the ranks to end with their supervisor")
    finally:
        kill_session(proc)
