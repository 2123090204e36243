"""Checking the reference image and audio at the edge, without torch: PIL and PyAV only.

An unreadable or unsupported file is an InputError naming the field and the format found.
The farm's API and request validation import this module; decoding lives in models.media.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
from PIL import Image, UnidentifiedImageError

from .errors import InputError

MAX_IMAGE_PIXELS = 40_000_000  #: a reference image over this is refused before it is decoded
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def open_image(path: str | Path) -> Iterator[Image.Image]:
    """Open a supported image, turning every failure into an InputError on `image`."""
    name = Path(path).name
    try:
        with warnings.catch_warnings():  # Pillow's own bomb guard: an error here, not a warning
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            if img.format not in IMAGE_FORMATS:
                raise InputError(
                    "image", f"unsupported image format {img.format}; use one of {', '.join(IMAGE_FORMATS)}"
                )
            yield img
    except FileNotFoundError:
        raise InputError("image", f"file not found: {path}") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InputError("image", f"{name} is too many pixels to decode safely; scale it down") from None
    except UnidentifiedImageError:
        raise InputError("image", f"{name} is not a readable image; use PNG, JPEG or WEBP") from None
    except OSError as exc:
        raise InputError("image", f"{name} could not be decoded ({exc}); re-export it as PNG or JPEG") from None


@contextmanager
def open_audio(path: str | Path) -> Iterator[tuple[av.container.InputContainer, av.AudioStream]]:
    """Open a file's first audio stream, turning every failure into an InputError on `audio`."""
    name = Path(path).name
    if not Path(path).is_file():
        raise InputError("audio", f"file not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise InputError(
                    "audio", f"{name} ({container.format.name}) has no audio stream; give a WAV, MP3, FLAC or M4A file"
                )
            yield container, container.streams.audio[0]
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(
            "audio", f"{name} is not a readable audio file ({exc}); give a WAV, MP3, FLAC or M4A file"
        ) from None


def looks_like_lora(path: str | Path) -> bool:
    """The file starts like safetensors: an 8-byte little-endian header length, then JSON."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and 2 <= int.from_bytes(head[:8], "little") <= 100 << 20 and head[8:] == b"{"


def looks_like_image(path: str | Path) -> bool:
    """Pillow recognises the file as an image (of any format, supported or not)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.open(path).close()
    except Image.DecompressionBombError:
        return True  # an image, and far too large
    except (UnidentifiedImageError, OSError):
        return False
    return True


def probe_image(path: str | Path) -> tuple[str, int, int]:
    """Check the image is supported, not over MAX_IMAGE_PIXELS, and decodes to its last row
    (a truncated file fails here, not on a worker): (format, width, height)."""
    with open_image(path) as img:
        assert img.format is not None  # open_image admits only IMAGE_FORMATS
        if img.width * img.height > MAX_IMAGE_PIXELS:  # checked before decoding: a bomb costs nothing
            raise InputError(
                "image", f"{img.width}x{img.height} is {img.width * img.height / 1e6:.0f} megapixels; at most "
                f"{MAX_IMAGE_PIXELS / 1e6:.0f}: scale it down (a take renders at most 2048 pixels a side)"
            )  # fmt: skip
        img.load()  # the whole image: open_image turns a truncated or corrupt file into an InputError
        return img.format, img.width, img.height


def probe_audio(path: str | Path) -> float:
    """Check the file holds a decodable audio stream without decoding it all: its seconds."""
    with open_audio(path) as (container, stream):
        if next(container.decode(stream), None) is None:  # the codec really decodes
            raise InputError("audio", f"{Path(path).name} holds no audio samples")
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration or 0) / 1e6
