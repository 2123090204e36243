"""The hero pool's rank group: N processes that hold one HuMo model split by sequence.

The hero supervisor (one process per host) owns a RankGroup. It spawns N ranks; each joins
torch.distributed (NCCL on CUDA, gloo on the CPU), loads the pipeline once with the
sequence-parallel DiT (models/sequence_parallel.py), and then serves takes until closed:
every rank receives the same request over its pipe and denoises its slice of the sequence;
rank 0 reports each step and, at the end, decodes and sends back the RenderResult.

Failure is all-or-nothing. If any rank dies or raises, or a take passes its deadline, every
rank is SIGKILLed, a fresh group starts loading, and the caller gets GroupFailed: the take
can be retried. Cancel is cooperative: when the caller's on_step raises, rank 0 broadcasts
"stop" at the next step boundary, all ranks stop together, the group stays loaded, and the
caller's exception is raised. One caller thread at a time.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import NoReturn

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from models import InputError, OnStep, OnWindow, RenderCanceled, RenderRequest, RenderResult, get_spec
from models.request import ResolvedRequest

from .errors import GroupFailed, RankError

log = logging.getLogger(__name__)


@dataclass
class _Rank:
    process: mp.Process
    conn: Connection  #: the supervisor's end of the rank's pipe


class RankGroup:
    """N ranks of one sequence-parallel pipeline; `render` sends a take to all of them.

    device: "cuda" (rank r on cuda:r, NCCL) or "cpu" (gloo). Timeouts in seconds.
    """

    def __init__(
        self,
        checkpoint: str,
        weights: str | Path | None,
        size: int,
        *,
        device: str = "cuda",
        load_timeout: float = 1800.0,
        take_timeout: float = 4 * 3600.0,
    ):
        self.checkpoint, self.weights, self.size, self.device = checkpoint, weights, size, device
        self.load_timeout, self.take_timeout = load_timeout, take_timeout
        self._ranks: list[_Rank] = []
        self._ready = False
        self._cancel = None

    def __enter__(self) -> RankGroup:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [r.process.pid for r in self._ranks]

    def alive(self) -> bool:
        """Every rank is running (loading or loaded)."""
        return bool(self._ranks) and all(r.process.is_alive() for r in self._ranks)

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> RankGroup:
        """Spawn the ranks and wait until every one has loaded the model."""
        if not self._ranks:
            self._spawn()
        self._wait_ready()
        return self

    def close(self, grace: float = 10.0) -> None:
        """Ask every rank to leave, wait up to `grace` seconds, then SIGKILL what is left."""
        for rank in self._ranks:
            try:
                rank.conn.send(None)
            except OSError:
                pass  # already dead
        end = time.monotonic() + grace
        for rank in self._ranks:
            rank.process.join(max(0.0, end - time.monotonic()))
        self._kill()

    def _spawn(self) -> None:
        ctx = mp.get_context("spawn")
        port = _free_port()
        self._cancel = ctx.Event()
        self._ranks, self._ready = [], False
        for r in range(self.size):
            ours, theirs = ctx.Pipe()
            process = ctx.Process(
                target=_rank_main,
                name=f"hero-rank-{r}",
                args=(r, self.size, port, self.checkpoint, self.weights, self.device, theirs, self._cancel),
            )
            process.start()
            theirs.close()  # only the rank holds its end: its death reads as EOF here
            self._ranks.append(_Rank(process, ours))
        log.info("hero group: spawned %d ranks (%s) on port %d", self.size, self.pids, port)

    def _kill(self) -> None:
        """SIGKILL every rank and reap it."""
        for rank in self._ranks:
            if rank.process.is_alive():
                os.kill(rank.process.pid, signal.SIGKILL)
        for rank in self._ranks:
            rank.process.join()
            rank.conn.close()
        self._ranks, self._ready = [], False

    def _fail(self, reason: str, cause: BaseException | None = None) -> NoReturn:
        log.error("hero group failed: %s; killing all %d ranks and respawning", reason, self.size)
        self._kill()
        self._spawn()  # loads while the caller records the failure
        raise GroupFailed(reason) from cause

    def _wait_ready(self) -> None:
        if self._ready:
            return
        loaded: set[int] = set()
        for rank, message in self._messages(time.monotonic() + self.load_timeout, "loading"):
            if message[0] != "ready":
                self._fail(self._blame(rank, "loading"), RankError(message[1]))
            loaded.add(rank)
            if len(loaded) == self.size:
                self._ready = True
                log.info("hero group: %d ranks ready", self.size)
                return

    def _messages(self, deadline: float, doing: str):
        """(rank, message) as they arrive; a dead rank or the deadline fails the group."""
        by_conn = {rank.conn: r for r, rank in enumerate(self._ranks)}
        by_sentinel = {rank.process.sentinel: r for r, rank in enumerate(self._ranks)}
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"{doing} passed its deadline")
            ready = wait([*by_conn, *by_sentinel], timeout=remaining)
            for conn in (c for c in ready if c in by_conn):  # messages first: a dying rank's last words
                try:
                    yield by_conn[conn], conn.recv()
                except EOFError:
                    pass  # its sentinel says why
            for sentinel in (s for s in ready if s in by_sentinel):
                self._fail(self._died(by_sentinel[sentinel], doing))

    def _died(self, rank: int, doing: str) -> str:
        process = self._ranks[rank].process
        process.join(1.0)  # its pipes close a moment before it can be reaped
        return f"rank {rank} died while {doing} (exit code {process.exitcode})"

    def _blame(self, rank: int, doing: str) -> str:
        """Why the group failed when `rank` raised: mostly a collective that lost a peer that died."""
        others = {r.process.sentinel: i for i, r in enumerate(self._ranks) if i != rank}
        for sentinel in wait(list(others), timeout=1.0):  # a dead peer shows within a second
            return f"{self._died(others[sentinel], doing)}; rank {rank} raised"
        return f"rank {rank} raised while {doing}"

    # -- one take ---------------------------------------------------------------------------
    def render(
        self,
        request: RenderRequest | ResolvedRequest,
        on_step: OnStep | None = None,
        *,
        timeout: float | None = None,
        resume: Sequence[torch.Tensor] = (),
        on_window: OnWindow | None = None,
    ) -> RenderResult:
        """Render one take on all ranks (a long take from its `resume` windows on, each finished
        window reported by rank 0 to on_window). Raises InputError (bad request, group unharmed),
        on_step's own exception (cooperative stop, group unharmed) or GroupFailed."""
        req = request.resolved() if isinstance(request, RenderRequest) else request
        if req.spec.name != get_spec(self.checkpoint).name:
            raise InputError("checkpoint", f"this group holds {self.checkpoint}, the take asks for {req.spec.name}")
        if self._ranks and not self.alive():
            log.error("hero group: a rank died between takes; respawning")
            self._kill()
        self.start()
        deadline = time.monotonic() + (self.take_timeout if timeout is None else timeout)
        try:
            replies, stopped = self._take(req, pickle.dumps([r.cpu() for r in resume]), on_step, on_window, deadline)
        except GroupFailed:
            raise
        except BaseException:  # interrupted mid-take (e.g. a time limit): the ranks are out of step with us
            self._kill()
            raise
        if stopped is not None:
            raise stopped
        kind, *rest = replies[0]
        if kind == "input":
            raise InputError(*rest)
        return pickle.loads(rest[0])

    def _take(self, req: ResolvedRequest, resume: bytes, on_step: OnStep | None, on_window, deadline: float):
        """Send the take (and the pickled windows it resumes after) to every rank; (each rank's
        final reply, what on_step or on_window raised)."""
        for rank in self._ranks:
            rank.conn.send((req, resume))
        replies: dict[int, tuple] = {}
        stopped: BaseException | None = None
        for rank, message in self._messages(deadline, "rendering"):
            if message[0] in ("step", "window"):
                call, args = (on_step, message[1:]) if message[0] == "step" else (on_window, _window(*message[1:]))
                if call is not None and stopped is None:
                    try:
                        call(*args)
                    except BaseException as exc:  # the ranks stop together at the next step
                        stopped = exc
                        self._cancel.set()
            elif message[0] == "error":
                self._fail(self._blame(rank, "rendering"), RankError(message[1]))
            else:  # done, canceled or input
                replies[rank] = message
                if len(replies) == self.size:
                    break
        self._cancel.clear()
        return replies, stopped


# -- inside a rank ------------------------------------------------------------------------------
def _rank_main(
    rank: int, size: int, port: int, checkpoint: str, weights, device: str, conn: Connection, cancel
) -> None:
    _die_with_parent()
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank)
    )
    try:
        pipe = _load(rank, size, checkpoint, weights, device)
    except BaseException as exc:
        conn.send(("error", "".join(traceback.format_exception(exc))))
        raise
    conn.send(("ready",))
    while (take := conn.recv()) is not None:
        _serve(pipe, rank, *take, conn, cancel)
    dist.destroy_process_group()


def _load(rank: int, size: int, checkpoint: str, weights, device: str):
    from models import load_pipeline
    from models.sequence_parallel import SequenceParallelDiT

    if device == "cuda":
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // size))
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", init_method="env://")
    pipe = load_pipeline(checkpoint, weights, device)  # the weights, once
    pipe.dit = SequenceParallelDiT.adopt(pipe.dit)  # the same modules: the pipeline's Patcher still owns them
    return pipe


def _window(i: int, n: int, latents: bytes) -> tuple[int, int, torch.Tensor]:
    return i, n, pickle.loads(latents)


def _serve(pipe, rank: int, req: ResolvedRequest, resume: bytes, conn: Connection, cancel) -> None:
    def on_step(i: int, n: int) -> None:
        if rank == 0:
            conn.send(("step", i, n))
        stop = torch.tensor([int(cancel.is_set())], device=pipe.device)
        dist.broadcast(stop, src=0)  # rank 0 decides for all: they stop at the same step
        if stop.item():
            raise RenderCanceled(f"stopped after step {i}/{n}")

    def on_window(i: int, n: int, latents: torch.Tensor) -> None:
        if n > 1:  # a long take's window, for the supervisor to store (a clip's has no use)
            conn.send(("window", i, n, pickle.dumps(latents.cpu())))

    windows = pickle.loads(resume)
    try:  # tensors go through the pipe pickled, by value: no shared memory outlives a rank
        with torch.no_grad():
            if rank == 0:
                reply = ("done", pickle.dumps(pipe.render(req, on_step, resume=windows, on_window=on_window)))
            else:  # the same path as rank 0's render, without the decode
                pipe.denoise_take(req, on_step, resume=windows)
                reply = ("done", None)
    except RenderCanceled:
        reply = ("canceled",)
    except InputError as exc:  # every rank meets it while encoding, before any exchange
        reply = ("input", exc.field, exc.message)
    except BaseException as exc:  # the group is out of step: report, and let the supervisor kill it
        conn.send(("error", "".join(traceback.format_exception(exc))))
        raise
    conn.send(reply)


def _die_with_parent() -> None:
    """Linux: SIGKILL this rank when the supervisor dies, so no orphan keeps a GPU.

    The signal follows the supervisor thread that spawned the rank: spawn from a long-lived one.
    A supervisor that died while this rank was starting (before the signal was armed) leaves
    it an orphan: it exits at once instead of loading a model onto a GPU.
    """
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
