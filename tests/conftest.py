"""Shared fixtures: tiny weights written in the official formats, and generated media."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from models.specs import TINY, TINY_CONCAT
from models.tiny import write_weights


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """A weights folder in the official layout for both tiny specs."""
    folder = tmp_path_factory.mktemp("weights")
    write_weights(folder, TINY, seed=0)
    write_weights(folder, TINY_CONCAT, seed=0)
    return folder


@pytest.fixture(scope="session")
def pipelines(weights):
    from models.pipeline import Pipeline

    return {name: Pipeline.load(name, weights, device="cpu") for name in ("tiny", "tiny-concat")}


def write_wav(path: Path, seconds: float, rate: int = 22_050, freq: float = 220.0) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * freq * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())
    return path


def draw_portrait(path: Path, size=(120, 160)) -> Path:
    img = Image.new("RGB", size, (90, 120, 170))
    d = ImageDraw.Draw(img)
    w, h = size
    d.ellipse((w * 0.25, h * 0.15, w * 0.75, h * 0.6), fill=(230, 190, 160))
    d.rectangle((w * 0.2, h * 0.7, w * 0.8, h), fill=(50, 50, 70))
    img.save(path)
    return path


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    return {
        "image": draw_portrait(folder / "portrait.png"),
        "audio": write_wav(folder / "speech.wav", seconds=1.5),
        "short_audio": write_wav(folder / "short.wav", seconds=0.3),
        "folder": folder,
    }
