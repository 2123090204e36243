"""Uploads are checked whole where they enter: an image decodes to its last row and is not a
decompression bomb; audio is no longer than the farm accepts."""

from __future__ import annotations

import io
import wave

from PIL import Image

from ..helpers import upload


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def test_a_decompression_bomb_is_refused_before_it_is_decoded(client, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png(12_000, 12_000))  # 144 megapixels in a few hundred KB
    r = upload(client, bomb)
    assert r.status_code == 422 and r.json()["field"] == "file", r.text
    assert "pixels" in r.json()["detail"]


def test_a_truncated_image_is_refused_at_upload(client, media, tmp_path):
    cut = tmp_path / "cut.png"
    data = media["image"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    r = upload(client, cut)
    assert r.status_code == 422 and r.json()["field"] == "file", r.text
    assert "could not be decoded" in r.json()["detail"]


def test_audio_longer_than_the_limit_is_refused(client, settings, tmp_path):
    long = tmp_path / "long.wav"
    rate = 8000
    with wave.open(str(long), "wb") as w:  # silence, cheap to write, longer than the limit
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(rate)
        w.writeframes(b"\x80" * int(rate * (settings.max_audio_seconds + 5)))
    r = upload(client, long)
    assert r.status_code == 422 and r.json()["field"] == "file", r.text
    assert f"at most {settings.max_audio_seconds:.0f} s" in r.json()["detail"]
