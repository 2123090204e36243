"""What the farm is doing: pools, workers, checkpoints, and the live change feed."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse

from models.request import PARAMS
from models.specs import SPECS

from ... import capacity, fleet, metrics, usage
from ...affinity import parse_stack_key
from ...batches import pool_of
from ...queue import POOLS
from ...tables import Attempt, Take, utcnow
from ..auth import Operator, Viewer
from ..deps import SessionDep, SettingsDep
from ..events import stream
from ..schemas import CheckpointPublic, PoolPublic, PresetPublic, WorkerActionPublic, WorkerPublic

router = APIRouter(tags=["ops"])
GPU_WINDOW = timedelta(hours=24)


@router.get("/pools", response_model=dict[str, PoolPublic])
def pools(_user: Viewer, session: SessionDep, settings: SettingsDep) -> dict[str, PoolPublic]:
    """Each pool's live workers, the takes waiting, released and running, and its GPU time."""
    now = utcnow()
    gpu = usage.by(session, Take.pool, since=now - GPU_WINDOW)
    return {
        p.pool: PoolPublic(
            workers=p.slots,
            queued=p.queued,
            released=p.released,
            running=p.running,
            gpu_seconds_24h=gpu[p.pool].gpu_seconds if p.pool in gpu else 0.0,
        )
        for p in metrics.pools(session, now, settings.worker_timeout)
        if p.pool in POOLS
    }


@router.get("/checkpoints", response_model=list[CheckpointPublic])
def checkpoints(_user: Viewer, session: SessionDep, settings: SettingsDep) -> list[CheckpointPublic]:
    """What takes can render with: each checkpoint's pool, default size, limits, the live
    workers holding it now, and every render parameter with its default and maximum there
    (the submit form is built from these)."""
    live = capacity.live(session, utcnow(), settings)
    return [
        CheckpointPublic(
            name=s.name,
            pool=pool_of(s.name, settings),
            width=s.width,
            height=s.height,
            frames=s.frames,
            fps=s.fps,
            steps=s.steps,
            max_tokens=s.limits.tokens,
            live_workers=sum(n for (_, held), n in live.items() if held == s.name),
            params=[p.describe(s) for p in PARAMS],
        )
        for s in SPECS.values()
    ]


@router.get("/presets", response_model=list[PresetPublic])
def presets(_user: Viewer, settings: SettingsDep) -> list[PresetPublic]:
    """The presets operators configured (FARM_PRESETS): name a take's `preset` to start from one."""
    return [PresetPublic(name=name, fields=fields) for name, fields in settings.presets.items()]


@router.get("/workers", response_model=list[WorkerPublic])
def workers(
    _user: Viewer, session: SessionDep, settings: SettingsDep, include_stopped: bool = False
) -> list[WorkerPublic]:
    """Who renders what: every worker, its heartbeat, its take and its GPU time today."""
    now = utcnow()
    used = usage.by(session, Attempt.worker_id, since=now - GPU_WINDOW)
    out = []
    for w in fleet.workers(session, now, settings.worker_timeout, seen=None):
        stopped = w.state in fleet.FLAGGED
        if stopped and not include_stopped:
            continue
        mine = used.get(w.id, usage.Usage(0.0, 0))
        out.append(
            WorkerPublic(
                id=w.id,
                pool=w.pool,
                host=w.host,
                gpu=w.gpu,
                stopped=stopped,
                alive=w.state in fleet.SERVING,
                state=w.state,
                heartbeat_age=round(w.heartbeat_age, 1),
                current_take_id=w.current_take_id,
                holding=parse_stack_key(w.holding) if w.holding else None,
                gpu_seconds_24h=mine.gpu_seconds,
                attempts_24h=mine.attempts,
            )
        )
    return out


WorkerId = Annotated[str, Path(max_length=200, description="the worker's id, or the start of it")]


def _set_draining(session, settings, worker_id: str, drain: bool) -> WorkerActionPublic:
    worker = fleet.find(session, worker_id)
    now = utcnow()
    changed = fleet.set_draining(session, worker, drain, now, settings.worker_timeout)
    session.commit()
    session.refresh(worker)
    state = fleet.row(worker, now, settings.worker_timeout).state
    return WorkerActionPublic(id=worker.id, state=state, detail=fleet.drained_words(worker, drain, changed))


@router.post("/workers/{worker_id}/drain", response_model=WorkerActionPublic)
def drain_worker(
    worker_id: WorkerId, _user: Operator, session: SessionDep, settings: SettingsDep
) -> WorkerActionPublic:
    """Drain a live worker: it finishes the take it renders and claims no new one."""
    return _set_draining(session, settings, worker_id, True)


@router.post("/workers/{worker_id}/resume", response_model=WorkerActionPublic)
def resume_worker(
    worker_id: WorkerId, _user: Operator, session: SessionDep, settings: SettingsDep
) -> WorkerActionPublic:
    """A drained worker claims takes again."""
    return _set_draining(session, settings, worker_id, False)


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
)
def events(
    request: Request,
    _user: Viewer,
    batch_id: Annotated[str | None, Query(max_length=32)] = None,
    producer: Annotated[str | None, Query(max_length=100)] = None,
) -> StreamingResponse:
    """Live changes of takes (state, step progress, selection) as server-sent events
    (`event: take`, JSON data), optionally for one batch or one producer."""
    return StreamingResponse(
        stream(request, request.app.state.feed, batch_id, producer),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
