"""Uploads: content-addressed by sha256, stored once, checked to be an image or audio."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response, UploadFile
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from models import InputError
from models.media import probe_audio, probe_image

from ...errors import NotFound
from ...storage import asset_key
from ...tables import Asset
from ..auth import Producer, Viewer
from ..deps import SessionDep, SettingsDep, StorageDep
from ..schemas import AssetPublic

router = APIRouter(prefix="/assets", tags=["assets"])


def sniff(path: Path) -> tuple[str, str]:
    """(kind, format) by content, never by the file name."""
    try:
        fmt, _, _ = probe_image(path)
        return "image", fmt.lower()
    except InputError:
        pass
    try:
        probe_audio(path)
    except InputError:
        raise HTTPException(
            415, "file: neither a supported image (PNG, JPEG, WEBP, BMP, TIFF) nor a readable audio file"
        ) from None
    import av

    with av.open(str(path)) as c:
        return "audio", c.format.name.split(",")[0]


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
    limit = settings.max_upload_bytes
    digest, size = hashlib.sha256(), 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"
        with open(path, "wb") as out:
            while chunk := file.file.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise HTTPException(
                        413, f"file: larger than the {limit} byte limit; send a shorter clip or a smaller image"
                    )
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise HTTPException(422, "file: the upload is empty")
        sha = digest.hexdigest()
        existing = session.get(Asset, sha)
        if existing is not None:
            response.status_code = 200
            return AssetPublic.model_validate(existing)
        kind, fmt = sniff(path)
        key = asset_key(sha, kind)
        if not storage.exists(key):
            storage.put_file(key, path, file.content_type or "application/octet-stream")
    name = Path(file.filename or "upload").name[:300]
    asset = Asset(sha256=sha, kind=kind, size=size, key=key, filename=name, media_format=fmt)
    session.add(asset)
    try:
        session.commit()
    except IntegrityError:  # the same bytes uploaded concurrently: one row wins, both see it
        session.rollback()
        response.status_code = 200
        return AssetPublic.model_validate(session.get(Asset, sha))
    return AssetPublic.model_validate(asset).model_copy(update={"created": True})


@router.get("/{sha256}", response_model=AssetPublic)
def get_asset(sha256: str, _user: Viewer, session: SessionDep) -> AssetPublic:
    asset = session.get(Asset, sha256)
    if asset is None:
        raise NotFound(f"asset {sha256} not found")
    return AssetPublic.model_validate(asset)


@router.get("", response_model=list[AssetPublic])
def list_assets(
    _user: Viewer,
    session: SessionDep,
    kind: Literal["image", "audio"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AssetPublic]:
    stmt = select(Asset).order_by(Asset.created_at.desc()).limit(limit)
    if kind:
        stmt = stmt.where(Asset.kind == kind)
    return [AssetPublic.model_validate(a) for a in session.execute(stmt).scalars()]
