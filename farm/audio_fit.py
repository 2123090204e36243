"""Audio that does not fit the clip: a take renders `frames` at the checkpoint's fps and hears
only that span of its audio (a 5.3 s line in a 17-frame take is a 0.68 s clip). Said at
submit, with the frames that cover the audio as the engine's `fit: audio` counts them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import InputError, RenderRequest
from models.request import ResolvedRequest

from .estimates import TEXT, resolve
from .tables import Asset


@dataclass(frozen=True)
class Misfit:
    """Takes whose audio runs past their clip."""

    audio: str  #: sha256
    filename: str
    audio_seconds: float
    frames: int
    clip_seconds: float
    cover_frames: int | None  #: the frames that hear all of it (None: no take is that long)
    cannot: str | None  #: why no take covers it, and the fix
    takes: int

    def words(self) -> str:
        takes = f"{self.takes} take{'s' if self.takes != 1 else ''}"
        head = (
            f"{takes}: the audio {self.filename} is {self.audio_seconds:.1f} s but the clip is "
            f"{self.clip_seconds:.2f} s ({self.frames} frames)"
        )
        return f"{head}; frames: {self.cover_frames} cover it" if self.cover_frames else f"{head}; {self.cannot}"


def covering(r: ResolvedRequest, params: dict, image: str | None, seconds: float) -> tuple[int | None, str | None]:
    """(the frames that cover `seconds` of audio at this take's checkpoint and size, None) or
    (None, why not): the engine's own `fit: audio` rule decides."""
    asked = {k: v for k, v in params.items() if k != "frames"}
    try:
        fitted = RenderRequest(
            checkpoint=r.spec.name, image=image, audio=r.audio, **{**asked, "fit": "audio"}
        ).resolved(probe_files=False, audio_seconds=seconds)
    except InputError as exc:
        return None, exc.message
    return fitted.frames, None


def misfits(session: Session, rows: list[dict]) -> list[Misfit]:
    """The batch's takes (batches.plan's rows) whose audio runs past the clip, grouped by audio and frames."""
    shas = {r["audio_sha256"] for r in rows if r["audio_sha256"]}
    if not shas:
        return []
    audio = {a.sha256: a for a in session.execute(select(Asset).where(Asset.sha256.in_(shas))).scalars()}
    #: seconds of each audio, where its upload recorded them
    lengths = {sha: float(seconds) for sha, a in audio.items() if (seconds := (a.info or {}).get("seconds"))}
    found: Counter[tuple[str, int, float, int | None, str | None]] = Counter()
    #: a sweep's takes share a few shapes (they differ in text and seed): each resolved once
    seen: dict[tuple, tuple[int, float, int | None, str | None] | None] = {}
    for row in rows:
        sha, p, image = row["audio_sha256"], row["params"], row["image_sha256"]
        if sha not in lengths:
            continue
        shape = (row["checkpoint"], sha, image, *sorted((k, v) for k, v in p.items() if k not in TEXT))
        if shape not in seen:
            seen[shape] = None
            r = resolve(row["checkpoint"], p, image, sha, lengths[sha])
            if r is not None and r.frames / r.spec.fps < lengths[sha]:
                seen[shape] = (r.frames, r.frames / r.spec.fps, *covering(r, p, image, lengths[sha]))
        short = seen[shape]
        if short is not None:
            frames, clip, cover, cannot = short
            found[(sha, frames, clip, cover, cannot)] += 1
    return [
        Misfit(sha, audio[sha].filename, lengths[sha], frames, clip, cover, cannot, n)
        for (sha, frames, clip, cover, cannot), n in found.items()
    ]
