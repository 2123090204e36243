"""Inputs: uploads content-addressed by sha256, stored once, checked to be what they claim:
an image or audio (`sniff`), or a LoRA that fits at least one checkpoint (`read_lora`)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import InputError
from models.probe import looks_like_image, looks_like_lora, probe_audio, probe_image
from models.specs import SPECS

from .errors import InvalidRequest, NotFound, PayloadTooLarge, UnsupportedMedia
from .storage import Storage, asset_key
from .tables import Asset

CHUNK = 1 << 20  #: bytes read at a time: an upload is never held whole in memory
MEDIA_FIX = "send a shorter clip or a smaller image"
LORA_FIX = "a LoRA that large is not one for these checkpoints (a rank-64 LoRA of the 17B is ~1.2 GB)"


def too_large(limit: int, fix: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"larger than the {limit} byte limit; {fix}", field="file")


Reading = tuple[str, str, dict | None]  #: (kind, format, info) of an upload, by its content


def sniff(path: Path, max_audio_seconds: float) -> Reading:
    """(kind, format, info) by content, never by the file name; an image decoded whole,
    audio no longer than `max_audio_seconds` (its info: its seconds)."""
    if looks_like_lora(path):
        raise InvalidRequest("file", "this is a LoRA (safetensors); upload LoRAs to /loras")
    try:
        fmt, _, _ = probe_image(path)
        return "image", fmt.lower(), None
    except InputError as exc:
        if looks_like_image(path):  # an image, but one we refuse (format, size, truncated): say why
            raise InvalidRequest("file", exc.message) from None
    try:
        seconds = probe_audio(path)
    except InputError:
        raise UnsupportedMedia(
            "neither a supported image (PNG, JPEG, WEBP, BMP, TIFF) nor a readable audio file", field="file"
        ) from None
    import av

    if seconds > max_audio_seconds:
        raise InvalidRequest(
            "file", f"the audio is {seconds:.0f} s long; at most {max_audio_seconds:.0f} s: cut it to the takes' span"
        )
    with av.open(str(path)) as c:  # its length: the submit says when a clip is shorter (farm.audio_fit)
        return "audio", c.format.name.split(",")[0], {"seconds": round(seconds, 3)}


def read_lora(path: Path) -> Reading:
    """("lora", "safetensors", its reading): the checkpoints it fits, its format, rank and the
    modules it changes; refused, saying why for each checkpoint, when it fits none."""
    from models import lora  # torch: loaded by the first LoRA upload, not by every dispatcher

    readings, reasons = {}, []
    for spec in SPECS.values():
        try:
            readings[spec.name] = lora.inspect(path, spec)
        except InputError as exc:
            reasons.append(f"{spec.name}: {exc.message}")
    if not readings:
        raise InvalidRequest("file", "this LoRA fits none of the checkpoints. " + " ".join(reasons))
    first = next(iter(readings.values()))
    return "lora", "safetensors", {**first.describe(), "bases": list(readings)}


def store_upload(
    session: Session,
    storage: Storage,
    stream: BinaryIO,
    filename: str | None,
    content_type: str | None,
    limit: int,
    read: Callable[[Path], Reading],
    fix: str = MEDIA_FIX,
) -> tuple[Asset, bool]:
    """Hash, check (`read`: sniff or read_lora) and store an upload once; (its asset, whether
    this call created it). The caller's transaction is committed here: the object is stored
    before its row. `fix` says what to do when it is over `limit`."""
    digest, size = hashlib.sha256(), 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"
        with open(path, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > limit:  # counted as read: a body without a length is bounded too
                    raise too_large(limit, fix)
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise InvalidRequest("file", "the upload is empty")
        sha = digest.hexdigest()
        existing = session.get(Asset, sha)
        if existing is not None:
            if not storage.exists(existing.key):  # the same bytes again repair a lost object
                storage.put_file(existing.key, path, content_type or "application/octet-stream")
            return existing, False
        kind, fmt, info = read(path)
        key = asset_key(sha, kind)
        if not storage.exists(key):
            storage.put_file(key, path, content_type or "application/octet-stream")
    name = Path(filename or "upload").name[:300]
    asset = Asset(sha256=sha, kind=kind, size=size, key=key, filename=name, media_format=fmt, info=info)
    session.add(asset)
    try:
        session.commit()
    except IntegrityError:  # the same bytes uploaded concurrently: one row wins, both see it
        session.rollback()
        return get(session, sha), False
    return asset, True


def get(session: Session, sha256: str) -> Asset:
    asset = session.get(Asset, sha256)
    if asset is None:
        raise NotFound(f"asset {sha256} not found")
    return asset


def recent(session: Session, kind: str | None, limit: int) -> list[Asset]:
    stmt = select(Asset).order_by(Asset.created_at.desc()).limit(limit)
    if kind:
        stmt = stmt.where(Asset.kind == kind)
    return list(session.execute(stmt).scalars())
