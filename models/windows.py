"""Long takes as windows over one latent sequence: which latent frames each window renders.

A take longer than its checkpoint's native clip (`ModelSpec.window_frames`: 97 frames, 25
latent frames) renders as windows of that length over one global latent sequence. Each window
after the first starts `overlap` latent frames before the previous one ends and holds those
frames to the previous window's latents (models/long_take.py), so every latent frame is
decoded once, from the one sequence. The last window may be shorter; it always adds a frame.

Torch-free: the request's checks and the farm's estimates plan with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: latent frames each window after the first shares with the one before it (4 video frames each)
DEFAULT_OVERLAP = 5
#: at most half a native window: each window adds more new frames than it repeats
MAX_OVERLAP = 12
#: the largest seed (seeds are int64 on every device)
SEED_LIMIT = 2**63


@dataclass(frozen=True)
class Window:
    index: int
    start: int  #: its first latent frame in the take's global sequence
    length: int  #: latent frames it renders, its overlap included
    overlap: int  #: its first latent frames, held to the previous window's (0 for the first)

    @property
    def stop(self) -> int:
        return self.start + self.length

    @property
    def new(self) -> slice:
        """The global latent frames this window adds to the sequence."""
        return slice(self.start + self.overlap, self.stop)

    def video_frames(self, stride: int = 4) -> range:
        """The global video frames its latents decode to: latent 0 is frame 0, latent j >= 1 is
        frames stride*j - stride+1 .. stride*j (the causal VAE's layout)."""
        first = 0 if self.start == 0 else stride * self.start - stride + 1
        return range(first, stride * (self.stop - 1) + 1)


def plan(latent_frames: int, window: int, overlap: int) -> tuple[Window, ...]:
    """The windows of a take of `latent_frames` latent frames: one when it fits a window."""
    if latent_frames <= window:
        return (Window(0, 0, latent_frames, 0),)
    if not 0 < overlap < window:
        raise ValueError(f"overlap {overlap} must be from 1 to {window - 1} latent frames")
    windows = [Window(0, 0, window, 0)]
    while windows[-1].stop < latent_frames:
        start = windows[-1].stop - overlap
        windows.append(Window(len(windows), start, min(window, latent_frames - start), overlap))
    return tuple(windows)


def seed(take_seed: int, index: int) -> int:
    """Window `index`'s noise seed, derived from the take's: the first window's is the take's
    own, the others a hash of both, so a resumed take draws the same noise on the same device."""
    if index == 0:
        return take_seed
    digest = hashlib.sha256(f"humo-window:{take_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_LIMIT


def describe(windows: tuple[Window, ...], stride: int = 4) -> dict:
    """The windowing as the manifest records it (JSON types)."""
    return {
        "count": len(windows),
        "overlap": windows[-1].overlap,
        "windows": [
            {
                "start": w.start,
                "length": w.length,
                "video_frames": [w.video_frames(stride).start, w.video_frames(stride).stop],
            }
            for w in windows
        ],
    }
