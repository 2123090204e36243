"""Batches: submit a list of takes, a sweep or a batch file; read them with their counts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Header, Query, Response, UploadFile
from pydantic import ValidationError

from ... import batches
from ...errors import InvalidRequest
from ..auth import Producer, Viewer, submitter
from ..deps import SessionDep, SettingsDep
from ..schemas import BatchCreate, BatchPublic
from ..views import batch_public

router = APIRouter(prefix="/batches", tags=["batches"])
MAX_FILE = 4 * 1024 * 1024


@router.post("", status_code=201, response_model=BatchPublic)
def create_batch(
    body: BatchCreate,
    user: Producer,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> BatchPublic:
    """Create a batch from a list of takes or a sweep. Replaying the same Idempotency-Key
    with the same body returns the first batch (200) instead of creating another."""
    return _submit(body, user, session, settings, response, idempotency_key)


@router.post("/file", status_code=201, response_model=BatchPublic)
def create_batch_from_file(
    file: UploadFile,
    user: Producer,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    project: Annotated[str | None, Form(max_length=200)] = None,
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> BatchPublic:
    """Create a batch from a YAML file (the `farm submit` format, with asset sha256s for
    image and audio) or a CSV file (a header of take fields, one take per row)."""
    data = file.file.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise InvalidRequest("file", f"larger than {MAX_FILE // 1024} KiB; split the batch")
    raw = batches.parse_batch_file(file.filename or "batch.yaml", data)
    raw.update({k: v for k, v in (("project", project), ("name", name or Path(file.filename or "").stem)) if v})
    try:
        body = BatchCreate.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(field or "file", first["msg"]) from None
    return _submit(body, user, session, settings, response, None)


def _submit(body: BatchCreate, user, session, settings, response: Response, idempotency_key: str | None) -> BatchPublic:
    producer = submitter(user, body.producer)
    batch, created = batches.submit(session, body.model_dump(exclude_none=True), producer, settings, idempotency_key)
    if not created:
        response.status_code = 200
    return batch_public(batch, batches.summary(session, batch))


@router.get("", response_model=list[BatchPublic])
def list_batches(
    _user: Viewer,
    session: SessionDep,
    producer: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    with_take_ids: bool = True,
) -> list[BatchPublic]:
    """Batches, newest first, with their counts; with_take_ids=false leaves out the id lists
    (a 20,000-take sweep's ids are most of the answer)."""
    found = batches.recent(session, producer, limit)
    summaries = batches.summaries(session, found, with_take_ids)
    return [batch_public(b, summaries[b.id]) for b in found]


@router.get("/{batch_id}", response_model=BatchPublic)
def get_batch(batch_id: str, _user: Viewer, session: SessionDep) -> BatchPublic:
    batch = batches.get(session, batch_id)
    return batch_public(batch, batches.summary(session, batch))
