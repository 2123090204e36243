"""Decoding the reference image and audio, writing the clip (PyAV) and its thumbnail.

The files are opened through models.probe, so a bad one fails with the same InputError
naming the field and the format found.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import InputError
from .probe import open_audio, open_image

AUDIO_RATE = 16_000  #: Hz, what Whisper hears
MUX_RATE = 48_000  #: Hz, the clip's AAC track


def load_image(path: str | Path, width: int, height: int) -> torch.Tensor:
    """Letterbox the image into width x height on white, as the reference does.

    Returns [3, height, width] float32 in [-1, 1].
    """
    with open_image(path) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
    scale = min(width / img.width, height / img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    img = img.resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    canvas.paste(img, ((width - size[0]) // 2, (height - size[1]) // 2))
    pixels = torch.from_numpy(np.asarray(canvas, dtype=np.float32)).permute(2, 0, 1)
    return pixels / 127.5 - 1.0


def load_audio(path: str | Path, rate: int = AUDIO_RATE, seconds: float | None = None) -> torch.Tensor:
    """Decode any audio FFmpeg reads to mono float32 samples at `rate`: [N].

    seconds: decode only that much from the start (the clip's span), so a take's memory and
    time follow its length, not the file's.
    """
    want = None if seconds is None else max(1, round(seconds * rate))
    chunks, have = [], 0
    with open_audio(path) as (container, stream):
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
                have += chunks[-1].size
            if want is not None and have >= want:
                break
        else:
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    samples = np.concatenate(chunks)[:want] if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise InputError("audio", f"{Path(path).name} holds no audio samples")
    return torch.from_numpy(samples.astype(np.float32))


@dataclass(frozen=True)
class AudioFit:
    """How the audio track was fitted to the clip."""

    action: str  #: "trimmed", "padded", "exact" or "none"
    audio_seconds: float
    clip_seconds: float


def fit_audio(
    samples: torch.Tensor | None, rate: int, frames: int, fps: int, source_seconds: float | None = None
) -> tuple[torch.Tensor | None, AudioFit]:
    """The track cut or padded to the clip's length. source_seconds: the file's length, when
    only its start was decoded (default: the samples' length)."""
    clip_seconds = frames / fps
    if samples is None:
        return None, AudioFit("none", 0.0, clip_seconds)
    want = round(clip_seconds * rate)
    have = samples.numel()
    seconds = max(have / rate, source_seconds or 0.0)
    if have > want or seconds > clip_seconds:
        return samples[:want], AudioFit("trimmed", seconds, clip_seconds)
    if have < want:
        return torch.cat([samples, samples.new_zeros(want - have)]), AudioFit("padded", seconds, clip_seconds)
    return samples, AudioFit("exact", seconds, clip_seconds)


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """[3, T, H, W] in [-1, 1] -> [T, H, W, 3] uint8."""
    v = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return v.permute(1, 2, 3, 0).cpu().numpy()


def write_mp4(path: str | Path, frames: np.ndarray, fps: int, audio: torch.Tensor | None, audio_rate: int) -> None:
    """H.264 yuv420p video at `fps`, with the audio as AAC when given."""
    with av.open(str(path), mode="w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "18", "preset": "medium"}
        astream = None if audio is None else out.add_stream("aac", rate=MUX_RATE, layout="mono")
        for image in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if audio is not None:
            _mux_audio(out, astream, audio, audio_rate)


def _mux_audio(out, stream, samples: torch.Tensor, rate: int) -> None:
    frame = av.AudioFrame.from_ndarray(samples.numpy().astype(np.float32)[None], format="flt", layout="mono")
    frame.sample_rate = rate
    frame.time_base = Fraction(1, rate)
    frame.pts = 0
    resampler = av.AudioResampler(
        format="fltp", layout="mono", rate=MUX_RATE, frame_size=stream.codec_context.frame_size or 1024
    )
    for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
        for packet in stream.encode(chunk):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def write_thumbnail(path: str | Path, frames: np.ndarray, max_side: int = 512) -> None:
    """The middle frame as a JPEG, at most max_side pixels on its long side."""
    img = Image.fromarray(frames[len(frames) // 2])
    img.thumbnail((max_side, max_side))
    img.save(path, format="JPEG", quality=90)
