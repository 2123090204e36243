"""Inputs: uploads content-addressed by sha256, stored once, checked to be an image or audio."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import InputError
from models.probe import looks_like_image, probe_audio, probe_image

from .errors import InvalidRequest, NotFound, PayloadTooLarge, UnsupportedMedia
from .storage import Storage, asset_key
from .tables import Asset

CHUNK = 1 << 20  #: bytes read at a time: an upload is never held whole in memory


def sniff(path: Path, max_audio_seconds: float) -> tuple[str, str]:
    """(kind, format) by content, never by the file name; an image decoded whole, audio no
    longer than `max_audio_seconds`."""
    try:
        fmt, _, _ = probe_image(path)
        return "image", fmt.lower()
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
    with av.open(str(path)) as c:
        return "audio", c.format.name.split(",")[0]


def store_upload(
    session: Session,
    storage: Storage,
    stream: BinaryIO,
    filename: str | None,
    content_type: str | None,
    limit: int,
    max_audio_seconds: float,
) -> tuple[Asset, bool]:
    """Hash, check and store an upload once; (its asset, whether this call created it).
    The caller's transaction is committed here: the object is stored before its row."""
    digest, size = hashlib.sha256(), 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"
        with open(path, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > limit:  # counted as read: a body without a length is bounded too
                    raise PayloadTooLarge(
                        f"larger than the {limit} byte limit; send a shorter clip or a smaller image", field="file"
                    )
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
        kind, fmt = sniff(path, max_audio_seconds)
        key = asset_key(sha, kind)
        if not storage.exists(key):
            storage.put_file(key, path, content_type or "application/octet-stream")
    name = Path(filename or "upload").name[:300]
    asset = Asset(sha256=sha, kind=kind, size=size, key=key, filename=name, media_format=fmt)
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
