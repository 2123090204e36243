"""Batches: submit a list of takes, a sweep or a batch file; read them with their counts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Query, Response, UploadFile
from pydantic import ValidationError

from ... import assets, audio_fit, batch_actions, batches, capacity, estimates, webhooks
from ...errors import FarmError, InvalidRequest
from ...settings import Settings
from ...tables import utcnow
from ..auth import Producer, Viewer, check_manage, submitter
from ..deps import SessionDep, SettingsDep, StorageDep
from ..schemas import (
    AudioFitPublic,
    BatchActionPublic,
    BatchCreate,
    BatchEstimatePublic,
    BatchPublic,
    BatchWebhookPublic,
    CheckpointCostPublic,
    PriorityUpdate,
    SelectUpdate,
)
from ..views import batch_public

router = APIRouter(prefix="/batches", tags=["batches"])
MAX_FILE = 4 * 1024 * 1024  #: bytes of a batch file
TOO_LARGE = (
    "the batch file and the media sent with it are over their limit (4 MiB and {} MiB); split the batch, "
    "or upload large media to /assets first and name them by sha256"
)


def with_media(settings: Settings) -> int:
    """Bytes one batch-file request may carry: the file, and media up to one upload's limit."""
    return MAX_FILE + settings.max_upload_bytes


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
    storage: StorageDep,
    project: Annotated[str | None, Form(max_length=200)] = None,
    name: Annotated[str | None, Form(max_length=200)] = None,
    media: Annotated[list[UploadFile] | None, File(description="the images and audio the file names")] = None,
) -> BatchPublic:
    """Create a batch from a YAML file (the `farm submit` format) or a CSV file (a header of
    take fields, one take per row). Its image and audio are file names of `media` uploaded
    with it (stored as assets, as POST /assets does), sha256s, or unique sha256 prefixes."""
    body = _from_file(file, media or [], project, name, session, storage, settings)
    return _submit(body, user, session, settings, response, None)


@router.post("/file/estimate", response_model=BatchEstimatePublic)
def estimate_batch_file(
    file: UploadFile,
    user: Producer,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    media: Annotated[list[UploadFile] | None, File(description="the images and audio the file names")] = None,
) -> BatchEstimatePublic:
    """What POST /batches/file would make of the same upload, submitted nowhere (its media
    are stored as assets, as they would be)."""
    return estimate_batch(
        _from_file(file, media or [], None, None, session, storage, settings), user, session, settings
    )


def _from_file(file: UploadFile, media: list[UploadFile], project, name, session, storage, settings) -> BatchCreate:
    """The batch body an uploaded batch file and its media make, checked as POST /batches checks one."""
    data = file.file.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise InvalidRequest("file", f"larger than {MAX_FILE // 1024} KiB; split the batch")
    raw = batches.parse_batch_file(file.filename or "batch.yaml", data)
    raw = batches.resolve_media(session, raw, _store_media(media, session, storage, settings))
    named = name or raw.get("name") or Path(file.filename or "").stem  # the form's, else the file's `name:`
    raw.update({k: v for k, v in (("project", project), ("name", named)) if v})
    try:
        return BatchCreate.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(field or "file", first["msg"]) from None


def _store_media(media: list[UploadFile], session, storage, settings) -> dict:
    """The files uploaded with a batch file, stored as assets: base name -> asset."""
    if len(media) > batches.MAX_MEDIA:
        raise InvalidRequest("media", f"{len(media)} files; at most {batches.MAX_MEDIA} come with one batch file")
    named = {}
    for upload in media:
        where = f"media: {Path(upload.filename or 'upload').name}"
        try:
            asset, _ = assets.store_upload(
                session, storage, upload.file, upload.filename, upload.content_type, settings.max_upload_bytes,
                lambda path: assets.sniff(path, settings.max_audio_seconds),
            )  # fmt: skip
        except FarmError as exc:  # the upload's own error, naming which file it is
            exc.field = where
            raise
        named[Path(upload.filename or "upload").name] = asset
    return named


def _submit(body: BatchCreate, user, session, settings, response: Response, idempotency_key: str | None) -> BatchPublic:
    producer = submitter(user, body.producer)
    for i, hook in enumerate(body.webhooks):  # a refused destination makes no batch
        webhooks.check_destination(hook.url, settings, f"webhooks[{i}].url")
    batch, created = batches.submit(session, body.model_dump(exclude_none=True), producer, settings, idempotency_key)
    if not created:
        response.status_code = 200
    public = batch_public(batch, batches.summary(session, batch))
    public.warnings = _waiting(session, settings, batch.id)
    if created and body.webhooks:  # the batch's endpoints; their secrets are shown only here
        made = [webhooks.register(session, settings, url=w.url, events=w.events, producer=batch.producer,
                                  batch=batch, created_by=user.name) for w in body.webhooks]  # fmt: skip
        session.commit()
        public.webhooks = [BatchWebhookPublic(id=e.id, url=e.url, events=e.events, secret=s) for e, s in made]
    return public


def _waiting(session, settings, batch_id: str) -> list[str]:
    """What to tell the producer of the batch's queued takes: checkpoints no live worker
    holds, audio longer than the clip."""
    return _warnings(session, settings, batches.queued_rows(session, batch_id))


def _warnings(session, settings, rows: list[dict]) -> list[str]:
    if not rows:
        return []
    waiting = capacity.warnings(rows, capacity.live(session, utcnow(), settings))
    return waiting + [m.words() for m in audio_fit.misfits(session, rows)]


@router.post("/estimate", response_model=BatchEstimatePublic)
def estimate_batch(
    body: BatchCreate, user: Producer, session: SessionDep, settings: SettingsDep
) -> BatchEstimatePublic:
    """What a batch would be, without submitting it: its takes (every one validated as a
    submit would), their GPU time as measured on this farm, and whether to confirm it first."""
    submitter(user, body.producer)
    rows = batches.plan(session, body.model_dump(exclude_none=True), settings)
    cost = estimates.estimate(session, rows)
    return BatchEstimatePublic(
        takes=cost.takes,
        gpu_seconds=cost.gpu_seconds,
        checkpoints=[CheckpointCostPublic(**vars(c)) for c in cost.checkpoints],
        confirm=cost.confirm,
        warnings=_warnings(session, settings, rows),
        audio=[AudioFitPublic(**vars(m)) for m in audio_fit.misfits(session, rows)],
    )


@router.get("", response_model=list[BatchPublic])
def list_batches(
    _user: Viewer,
    session: SessionDep,
    producer: str | None = None,
    project: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    with_take_ids: bool = True,
) -> list[BatchPublic]:
    """Batches, newest first, with their counts (of one producer or project); with_take_ids=false
    leaves out the id lists (a 20,000-take sweep's ids are most of the answer)."""
    found = batches.recent(session, producer, limit, project)
    summaries = batches.summaries(session, found, with_take_ids)
    return [batch_public(b, summaries[b.id]) for b in found]


@router.get("/{batch_id}", response_model=BatchPublic)
def get_batch(batch_id: str, _user: Viewer, session: SessionDep, with_take_ids: bool = True) -> BatchPublic:
    batch = batches.get(session, batch_id)
    return batch_public(batch, batches.summary(session, batch, with_take_ids))


def _act(batch_id: str, user, session, action: str, **kwargs) -> BatchActionPublic:
    batch = batches.get(session, batch_id)
    check_manage(user, batch.producer, f"batch {batch.name!r}")
    done = batch_actions.apply(session, batch, action, **kwargs)
    session.commit()
    return BatchActionPublic(
        batch=batch_public(batch, batches.summary(session, batch, with_take_ids=False)),
        changed=done.changed,
        stopping=done.stopping,
        message=done.message,
    )


@router.post("/{batch_id}/cancel", response_model=BatchActionPublic)
def cancel_batch(batch_id: str, user: Producer, session: SessionDep) -> BatchActionPublic:
    """Cancel every take not yet finished: waiting ones at once, rendering ones after their step."""
    return _act(batch_id, user, session, "cancel")


@router.post("/{batch_id}/retry", response_model=BatchActionPublic)
def retry_batch(batch_id: str, user: Producer, session: SessionDep, settings: SettingsDep) -> BatchActionPublic:
    """Queue the batch's failed takes again (canceled ones stay canceled)."""
    return _act(batch_id, user, session, "retry", max_attempts=settings.max_attempts)


@router.post("/{batch_id}/priority", response_model=BatchActionPublic)
def reprioritise_batch(batch_id: str, body: PriorityUpdate, user: Producer, session: SessionDep) -> BatchActionPublic:
    """A new priority for every take of the batch not yet rendering."""
    return _act(batch_id, user, session, "priority", priority=body.priority)


@router.post("/{batch_id}/pause", response_model=BatchActionPublic)
def pause_batch(batch_id: str, user: Producer, session: SessionDep) -> BatchActionPublic:
    """Hold the batch's waiting takes back (rendering ones finish) until it is resumed."""
    return _act(batch_id, user, session, "pause")


@router.post("/{batch_id}/resume", response_model=BatchActionPublic)
def resume_batch(batch_id: str, user: Producer, session: SessionDep) -> BatchActionPublic:
    """Queue the batch's paused takes again, in their old order."""
    return _act(batch_id, user, session, "resume")


@router.post("/{batch_id}/select", response_model=BatchActionPublic)
def select_batch(batch_id: str, body: SelectUpdate, user: Producer, session: SessionDep) -> BatchActionPublic:
    """Select (or unselect) every finished take of the batch for the nightly hero run."""
    return _act(batch_id, user, session, "select", selected=body.selected)
