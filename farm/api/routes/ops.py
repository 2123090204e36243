"""What the farm is doing: pools, workers, and the live change feed."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import func, select

from ... import metrics
from ...queue import POOLS
from ...tables import Attempt, Take, utcnow
from ..auth import Viewer
from ..deps import SessionDep, SettingsDep
from ..events import stream

router = APIRouter(tags=["ops"])
GPU_WINDOW = timedelta(hours=24)


class PoolPublic(BaseModel):
    workers: int  #: live render slots
    queued: int
    released: int
    running: int
    gpu_seconds_24h: float


class WorkerPublic(BaseModel):
    id: str
    pool: str
    host: str
    gpu: str
    alive: bool
    stopped: bool
    heartbeat_age: float  #: seconds since its last heartbeat
    current_take_id: str | None
    gpu_seconds_24h: float
    attempts_24h: int


@router.get("/pools", response_model=dict[str, PoolPublic])
def pools(_user: Viewer, session: SessionDep, settings: SettingsDep) -> dict[str, PoolPublic]:
    """Each pool's live workers, the takes waiting, released and running, and its GPU time."""
    now = utcnow()
    gpu = dict(
        session.execute(
            select(Take.pool, func.coalesce(func.sum(Attempt.gpu_seconds), 0.0))
            .join(Take, Take.id == Attempt.take_id)
            .where(Attempt.started_at >= now - GPU_WINDOW)
            .group_by(Take.pool)
        ).all()
    )
    return {
        p.pool: PoolPublic(
            workers=p.slots,
            queued=p.queued,
            released=p.released,
            running=p.running,
            gpu_seconds_24h=float(gpu.get(p.pool, 0.0)),
        )
        for p in metrics.pools(session, now, settings.worker_timeout)
        if p.pool in POOLS
    }


class CheckpointPublic(BaseModel):
    name: str
    pool: str
    width: int
    height: int
    frames: int
    steps: int


@router.get("/checkpoints", response_model=list[CheckpointPublic])
def checkpoints(_user: Viewer, settings: SettingsDep) -> list[CheckpointPublic]:
    """What takes can render with, each with its pool and default size."""
    from models.specs import SPECS

    from ...batches import pool_of

    return [
        CheckpointPublic(
            name=s.name, pool=pool_of(s.name, settings), width=s.width, height=s.height, frames=s.frames, steps=s.steps
        )
        for s in SPECS.values()
    ]


@router.get("/workers", response_model=list[WorkerPublic])
def workers(
    _user: Viewer, session: SessionDep, settings: SettingsDep, include_stopped: bool = False
) -> list[WorkerPublic]:
    """Who renders what: every worker, its heartbeat, its take and its GPU time today."""
    now = utcnow()
    usage = {
        row.worker_id: row
        for row in session.execute(
            select(
                Attempt.worker_id,
                func.coalesce(func.sum(Attempt.gpu_seconds), 0.0).label("seconds"),
                func.count().label("n"),
            )
            .where(Attempt.started_at >= now - GPU_WINDOW)
            .group_by(Attempt.worker_id)
        )
    }
    out = []
    for w in metrics.workers(session, now, settings.worker_timeout, seen=None):
        stopped = w.state in ("draining", "stopped")
        if stopped and not include_stopped:
            continue
        used = usage.get(w.id)
        out.append(
            WorkerPublic(
                id=w.id,
                pool=w.pool,
                host=w.host,
                gpu=w.gpu,
                stopped=stopped,
                alive=w.state in ("idle", "busy"),
                heartbeat_age=round(w.heartbeat_age, 1),
                current_take_id=w.current_take_id,
                gpu_seconds_24h=float(used.seconds) if used else 0.0,
                attempts_24h=used.n if used else 0,
            )
        )
    return out


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
