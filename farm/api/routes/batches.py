from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy import select

from ... import batches
from ...errors import NotFound
from ...tables import Batch
from ..deps import SessionDep, SettingsDep
from ..schemas import BatchCreate, BatchPublic
from ..views import batch_public

router = APIRouter(prefix="/batches", tags=["batches"])


def producer_of(body_producer: str | None, header: str | None) -> str:
    return (header or body_producer or "anonymous").strip()[:100] or "anonymous"


@router.post("", status_code=201, response_model=BatchPublic)
def create_batch(body: BatchCreate, session: SessionDep, settings: SettingsDep, response: Response,
                 idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
                 x_producer: Annotated[str | None, Header(max_length=100)] = None) -> BatchPublic:
    """Create a batch from a list of takes or a sweep. Replaying the same Idempotency-Key
    with the same body returns the first batch (200) instead of creating another."""
    producer = producer_of(body.producer, x_producer)
    data = body.model_dump(exclude_none=True)
    replay = batches.find_replay(session, producer, idempotency_key, data)
    if replay is not None:
        response.status_code = 200
        return batch_public(session, replay)
    batch = batches.create_batch(session, data, producer, settings, idempotency_key)
    session.commit()
    return batch_public(session, batch)


@router.get("", response_model=list[BatchPublic])
def list_batches(session: SessionDep, producer: str | None = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[BatchPublic]:
    stmt = select(Batch).order_by(Batch.created_at.desc()).limit(limit)
    if producer:
        stmt = stmt.where(Batch.producer == producer)
    return [batch_public(session, b) for b in session.execute(stmt).scalars()]


@router.get("/{batch_id}", response_model=BatchPublic)
def get_batch(batch_id: str, session: SessionDep) -> BatchPublic:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise NotFound(f"batch {batch_id} not found")
    return batch_public(session, batch)
