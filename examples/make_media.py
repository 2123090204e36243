"""Demo media made here: a drawn (non-human-likeness) portrait and synthetic speech.

Speech comes from espeak-ng when installed, else a voiced, syllable-shaped tone.
Usage: python examples/make_media.py OUTDIR
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LINE = "Hello producers. This take was rendered on the farm, one step at a time."


def portrait(path: Path, width: int = 384, height: int = 512) -> None:
    img = Image.new("RGB", (width, height), (92, 128, 170))
    d = ImageDraw.Draw(img)
    cx = width // 2
    d.rectangle((cx - 150, int(height * 0.72), cx + 150, height), fill=(60, 60, 80))  # shoulders
    d.rectangle((cx - 35, int(height * 0.55), cx + 35, int(height * 0.75)), fill=(222, 184, 150))  # neck
    d.ellipse((cx - 95, int(height * 0.18), cx + 95, int(height * 0.62)), fill=(230, 192, 160))  # face
    d.chord((cx - 100, int(height * 0.12), cx + 100, int(height * 0.42)), 180, 360, fill=(70, 45, 30))  # hair
    for dx in (-40, 40):
        d.ellipse((cx + dx - 12, int(height * 0.36), cx + dx + 12, int(height * 0.40)), fill=(40, 40, 50))
    d.arc((cx - 35, int(height * 0.46), cx + 35, int(height * 0.54)), 20, 160, fill=(150, 60, 60), width=5)
    img.save(path)


def speech(path: Path, seconds: float = 4.0, rate: int = 16_000) -> None:
    if shutil.which("espeak-ng"):
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), LINE], check=True)
        return
    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / rate) / k for k in range(1, 6))
    syllables = np.clip(np.sin(2 * np.pi * 3.2 * t), 0, None) ** 2
    x = (0.25 * voice * syllables / np.abs(voice).max() * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/demo")
    out.mkdir(parents=True, exist_ok=True)
    portrait(out / "portrait.png")
    speech(out / "speech.wav")
    print(out / "portrait.png", out / "speech.wav")
