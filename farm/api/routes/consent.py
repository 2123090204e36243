"""Consent: records (producers record, operators revoke), their evidence, the assets they
cover or that are declared synthetic, the audit trail; a clip's content credentials."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from ... import assets, consent, credentials, states
from ...errors import IllegalTransition, InvalidRequest, PayloadTooLarge, UnsupportedMedia
from ...tables import ConsentEvent, ConsentRecord
from ..auth import Operator, Producer, Viewer
from ..deps import SessionDep, SettingsDep, StorageDep
from ..schemas import AssetPublic, Text

router = APIRouter(tags=["consent"])
EVIDENCE_FIX = "send the signed release as a PDF or image, a statement as audio or video"

Term = Annotated[Text, Field(min_length=1, max_length=200)]
Terms = Annotated[list[Term], Field(max_length=consent.MAX_TERMS)]
Sha = Annotated[Text, Field(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")]


class ConsentRecordCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: Text = Field(min_length=1, max_length=200, description="the person's name or an internal id")
    covers: Literal["likeness", "voice", "both"]
    uses: Terms = Field(default_factory=list, description="allowed uses, e.g. advertising, film")
    territories: Terms = Field(default_factory=list, description="e.g. EU, US, worldwide")
    downstream: Terms = Field(default_factory=list, description="downstream applications allowed")
    valid_from: datetime
    valid_until: datetime | None = Field(None, description="None: until revoked")
    evidence_sha256: Sha = Field(description="the evidence uploaded to POST /consent/evidence")
    evidence_kind: Literal["release", "statement"] = Field(description="a signed release or a recorded statement")
    assets: Annotated[list[Sha], Field(max_length=consent.MAX_LINKS)] = Field(
        default_factory=list, description="images (likeness) and audio (voice) of the subject it covers"
    )


class ConsentRecordPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    subject: str
    covers: str
    uses: list[str]
    territories: list[str]
    downstream: list[str]
    valid_from: datetime
    valid_until: datetime | None
    evidence_sha256: str
    evidence_kind: str
    content_sha256: str
    recorded_by: str
    recorded_at: datetime
    revoked_by: str | None
    revoked_at: datetime | None
    revoke_reason: str | None
    expired_at: datetime | None
    state: str = Field("standing", description="standing, revoked or expired")
    assets: list[str] = Field(default_factory=list, description="the assets linked to it")


class ConsentEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    actor: str
    action: str
    record_id: str | None
    asset_sha256: str | None
    take_id: str | None
    detail: dict


class RevokeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(min_length=1, max_length=2000)


class LinkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    asset: Sha


class AssetConsentPublic(BaseModel):
    sha256: str
    status: str = Field(description="consented (linked to records), synthetic (no real person) or unknown")
    records: list[ConsentRecordPublic]
    synthetic_by: str | None


class CredentialsPublic(BaseModel):
    state: str = Field(description="Trusted, Valid (signer not in the trust list), Invalid, or none")
    ok: bool
    failures: list[str]
    signer: dict
    development: bool = Field(description="signed with the farm's local development chain: not for delivery")
    generator: list
    actions: list
    take: dict | None
    manifest_matches: bool | None


def _public(record: ConsentRecord, linked: list[str] | None = None) -> ConsentRecordPublic:
    state = "revoked" if record.revoked_at else "expired" if record.expired_at else "standing"
    return ConsentRecordPublic.model_validate(record).model_copy(update={"state": state, "assets": linked or []})


def _evidence_reading(path: Path) -> assets.Reading:
    """Evidence is a document, an image of one, or a recording: read by content."""
    import av

    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"%PDF-"):
        return "evidence", "pdf", None
    try:
        return "evidence", assets.sniff(path, max_audio_seconds=float("inf"))[1], None
    except (InvalidRequest, UnsupportedMedia):
        pass
    try:
        with av.open(str(path)) as c:
            if c.streams.video or c.streams.audio:
                return "evidence", c.format.name.split(",")[0], None
    except (av.FFmpegError, ValueError):
        pass
    raise UnsupportedMedia(f"not a PDF, image, audio or video file; {EVIDENCE_FIX}", field="file")


@router.post("/consent/evidence", status_code=201, response_model=AssetPublic)
def upload_evidence(
    file: UploadFile, _user: Producer, session: SessionDep, storage: StorageDep, settings: SettingsDep,
    response: Response,
) -> AssetPublic:  # fmt: skip
    """Upload a consent's evidence (a signed release: PDF or an image of it; a recorded
    statement: audio or video), stored once under its sha256."""
    asset, created = assets.store_upload(
        session, storage, file.file, file.filename, file.content_type, settings.max_upload_bytes,
        _evidence_reading, EVIDENCE_FIX,
    )  # fmt: skip
    if not created:
        response.status_code = 200
    return AssetPublic.model_validate(asset).model_copy(update={"created": created})


@router.post("/consent/records", status_code=201, response_model=ConsentRecordPublic)
def create_record(body: ConsentRecordCreate, user: Producer, session: SessionDep) -> ConsentRecordPublic:
    """Record a person's consent, with its evidence and the assets of them it covers."""
    row = consent.record(session, user.name, **body.model_dump())
    session.commit()
    return _public(row, [link.asset_sha256 for link in consent.linked_assets(session, row.id)])


@router.get("/consent/records", response_model=list[ConsentRecordPublic])
def list_records(
    _user: Viewer,
    session: SessionDep,
    subject: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[ConsentRecordPublic]:
    """Records, newest first (`subject`: part of it)."""
    rows = consent.records(session, subject, limit)
    return [_public(r, [link.asset_sha256 for link in consent.linked_assets(session, r.id)]) for r in rows]


@router.get("/consent/records/{record_id}", response_model=ConsentRecordPublic)
def get_record(record_id: str, _user: Viewer, session: SessionDep) -> ConsentRecordPublic:
    row = consent.get(session, record_id)
    return _public(row, [link.asset_sha256 for link in consent.linked_assets(session, row.id)])


@router.post("/consent/records/{record_id}/revoke", response_model=ConsentRecordPublic)
def revoke_record(record_id: str, body: RevokeBody, user: Operator, session: SessionDep) -> ConsentRecordPublic:
    """Revoke a record (operators): the takes that use it and have not finished are canceled;
    finished clips are marked "consent withdrawn" and their downloads refused."""
    row = consent.revoke(session, user.name, record_id, body.reason)
    session.commit()
    return _public(row, [link.asset_sha256 for link in consent.linked_assets(session, row.id)])


@router.post("/consent/records/{record_id}/assets", response_model=ConsentRecordPublic)
def link_asset(record_id: str, body: LinkBody, user: Producer, session: SessionDep) -> ConsentRecordPublic:
    """Link an image (likeness) or audio (voice) asset to a standing record."""
    consent.link(session, user.name, record_id, body.asset)
    session.commit()
    row = consent.get(session, record_id)
    return _public(row, [link.asset_sha256 for link in consent.linked_assets(session, row.id)])


@router.get("/consent/assets/{sha256}", response_model=AssetConsentPublic)
def asset_consent(sha256: str, _user: Viewer, session: SessionDep) -> AssetConsentPublic:
    """An asset's consent status and its records."""
    found = consent.status(session, sha256)
    return AssetConsentPublic(
        sha256=sha256, status=found.status, records=[_public(r) for r in found.records], synthetic_by=found.synthetic_by
    )


@router.post("/consent/assets/{sha256}/synthetic", response_model=AssetConsentPublic)
def declare_synthetic(sha256: str, user: Producer, session: SessionDep) -> AssetConsentPublic:
    """Declare that the asset shows or voices no real person."""
    consent.declare_synthetic(session, user.name, sha256)
    session.commit()
    return asset_consent(sha256, user, session)


@router.get("/consent/events", response_model=list[ConsentEventPublic])
def list_events(
    _user: Viewer,
    session: SessionDep,
    record_id: Annotated[str | None, Query(max_length=32)] = None,
    asset: Annotated[str | None, Query(max_length=64)] = None,
    take_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[ConsentEvent]:
    """The audit trail, newest first: every change to consent and every decision it made."""
    return consent.events(session, record_id=record_id, asset=asset, take_id=take_id, limit=limit)


@router.get("/takes/{take_id}/credentials", response_model=CredentialsPublic)
def take_credentials(
    take_id: str, _user: Viewer, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> CredentialsPublic:
    """The clip's content credentials (C2PA), read from the stored clip and validated, and
    whether they name the stored manifest."""
    take = states.get(session, take_id)
    output = take.output
    if output is None:
        raise IllegalTransition(f"take {take_id} is {take.state.value}: it has no clip until it is done")
    if output.clip_size > credentials.MAX_CLIP_BYTES:
        raise PayloadTooLarge(f"the clip is {output.clip_size} bytes; read it with `farm verify` instead")
    manifest = json.loads(storage.get_bytes(output.manifest_key))
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        storage.get_file(output.clip_key, clip)
        found = credentials.read(clip, settings, manifest=manifest)
    return CredentialsPublic(**vars(found), ok=found.ok)
