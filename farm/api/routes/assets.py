"""Uploads: content-addressed by sha256, stored once, checked to be an image or audio
(`/assets`) or a LoRA that fits a checkpoint (`/loras`, with its own size limit)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, UploadFile

from ... import assets
from ..auth import Producer, Viewer
from ..deps import SessionDep, SettingsDep, StorageDep
from ..schemas import AssetPublic

router = APIRouter(prefix="/assets", tags=["assets"])
lora_router = APIRouter(prefix="/loras", tags=["assets"])


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
        lambda path: assets.sniff(path, settings.max_audio_seconds),
    )  # fmt: skip
    return _answer(asset, created, response)


def _answer(asset, created: bool, response: Response) -> AssetPublic:
    if not created:
        response.status_code = 200
    return AssetPublic.model_validate(asset).model_copy(update={"created": created})


@lora_router.post("", status_code=201, response_model=AssetPublic)
def upload_lora(
    file: UploadFile,
    _user: Producer,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    response: Response,
) -> AssetPublic:
    """Upload a LoRA (`.safetensors`: ComfyUI/lightx2v, kohya or diffusers/PEFT keys). Its
    header is read without loading tensors and checked against every checkpoint: `info` says
    which it fits (`bases`), its format, rank and the modules it changes; keys for modules
    HuMo lacks (Wan I2V's image branch) are skipped and named. Stored once under its sha256."""
    asset, created = assets.store_upload(
        session, storage, file.file, file.filename, file.content_type, settings.max_lora_bytes,
        assets.read_lora, assets.LORA_FIX,
    )  # fmt: skip
    return _answer(asset, created, response)


@lora_router.get("", response_model=list[AssetPublic])
def list_loras(
    _user: Viewer, session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[AssetPublic]:
    """The LoRAs uploaded, newest first, each with its reading."""
    return [AssetPublic.model_validate(a) for a in assets.recent(session, "lora", limit)]


@router.get("/{sha256}", response_model=AssetPublic)
def get_asset(sha256: str, _user: Viewer, session: SessionDep) -> AssetPublic:
    return AssetPublic.model_validate(assets.get(session, sha256))


@router.get("", response_model=list[AssetPublic])
def list_assets(
    _user: Viewer,
    session: SessionDep,
    kind: Literal["image", "audio", "lora"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AssetPublic]:
    return [AssetPublic.model_validate(a) for a in assets.recent(session, kind, limit)]
