"""Audio that does not fit the clip: a take renders `frames` at the checkpoint's fps and hears
only that span of its audio (a 5.3 s line in a 17-frame take is a 0.68 s clip). Said at
submit, with the frames that would cover the audio (4k+1, within the checkpoint's limits)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.request import ResolvedRequest

from .estimates import resolve
from .tables import Asset


@dataclass(frozen=True)
class Misfit:
    """Takes whose audio runs past their clip."""

    audio: str  #: sha256
    filename: str
    audio_seconds: float
    frames: int
    clip_seconds: float
    cover_frames: int | None  #: the fewest frames that hear it all; None: more than one take renders here
    max_frames: int  #: the most this checkpoint renders at the take's size
    takes: int

    def words(self) -> str:
        takes = f"{self.takes} take{'s' if self.takes != 1 else ''}"
        head = (
            f"{takes}: the audio {self.filename} is {self.audio_seconds:.1f} s but the clip is "
            f"{self.clip_seconds:.2f} s ({self.frames} frames)"
        )
        if self.cover_frames is not None:
            return f"{head}; frames: {self.cover_frames} cover it"
        return f"{head}; at most {self.max_frames} frames fit one take here: cut the audio to its line"


def largest_frames(r: ResolvedRequest) -> int:
    """The most frames (4k+1) the checkpoint renders in one take at this size."""
    spec = r.spec
    top = spec.limits.frames - (spec.limits.frames - 1) % 4
    return next((f for f in range(top, 0, -4) if spec.tokens(f, r.height, r.width) <= spec.limits.tokens), 1)


def misfits(session: Session, rows: list[dict]) -> list[Misfit]:
    """The batch's takes (batches.plan's rows) whose audio runs past the clip, grouped by audio and frames."""
    shas = {r["audio_sha256"] for r in rows if r["audio_sha256"]}
    if not shas:
        return []
    audio = {a.sha256: a for a in session.execute(select(Asset).where(Asset.sha256.in_(shas))).scalars()}
    #: seconds of each audio, where its upload recorded them
    lengths = {sha: float(seconds) for sha, a in audio.items() if (seconds := (a.info or {}).get("seconds"))}
    found: Counter[tuple[str, int, int, int]] = Counter()
    seen: dict[tuple, ResolvedRequest | None] = {}  # a sweep's takes share a few shapes: resolved once each
    for row in rows:
        sha, p = row["audio_sha256"], row["params"]
        if sha not in lengths:
            continue
        shape = (
            row["checkpoint"],
            sha,
            row["image_sha256"],
            *(p.get(k) for k in ("mode", "frames", "width", "height")),
        )
        if shape not in seen:
            seen[shape] = resolve(row["checkpoint"], p, row["image_sha256"], sha)
        r = seen[shape]
        if r is not None and r.frames / r.spec.fps < lengths[sha]:
            found[(sha, r.frames, r.spec.fps, largest_frames(r))] += 1
    out = []
    for (sha, frames, fps, most), n in found.items():
        seconds = lengths[sha]
        need = math.ceil(seconds * fps - 1e-9)
        cover = need + (1 - need) % 4  # the next 4k+1
        out.append(
            Misfit(sha, audio[sha].filename, seconds, frames, frames / fps, cover if cover <= most else None, most, n)
        )
    return out
