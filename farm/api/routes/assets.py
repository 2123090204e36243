"""Uploads: content-addressed by sha256, stored once, checked to be an image or audio."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, UploadFile

from ... import assets
from ..auth import Producer, Viewer
from ..deps import SessionDep, SettingsDep, StorageDep
from ..schemas import AssetPublic

router = APIRouter(prefix="/assets", tags=["assets"])


@router.post("", status_code=201, response_model=AssetPublic)
def upload_asset(
    file: UploadFile,
    _user: Producer,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    response: Response,
) -> AssetPublic:
    """Upload an image or audio file. Its kind is read from its bytes, never its name; it is
    stored once under its sha256, whatever it is called."""
    asset, created = assets.store_upload(
        session, storage, file.file, file.filename, file.content_type, settings.max_upload_bytes,
        settings.max_audio_seconds,
    )  # fmt: skip
    if not created:
        response.status_code = 200
    return AssetPublic.model_validate(asset).model_copy(update={"created": created})


@router.get("/{sha256}", response_model=AssetPublic)
def get_asset(sha256: str, _user: Viewer, session: SessionDep) -> AssetPublic:
    return AssetPublic.model_validate(assets.get(session, sha256))


@router.get("", response_model=list[AssetPublic])
def list_assets(
    _user: Viewer,
    session: SessionDep,
    kind: Literal["image", "audio"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AssetPublic]:
    return [AssetPublic.model_validate(a) for a in assets.recent(session, kind, limit)]
