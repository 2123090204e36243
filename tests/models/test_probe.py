"""Probing the inputs without decoding them (and without torch): what the farm's API checks on upload."""

import hashlib

import pytest
from PIL import Image

from models.errors import InputError
from models.probe import IMAGE_FORMATS, file_sha256, probe_audio, probe_image


def test_probe_image_reads_format_and_size(media, tmp_path):
    assert probe_image(media["image"]) == ("PNG", 120, 160)
    Image.new("RGB", (33, 17)).save(tmp_path / "face.jpg")
    assert probe_image(tmp_path / "face.jpg") == ("JPEG", 33, 17)
    Image.new("RGB", (8, 8)).save(tmp_path / "anim.gif")
    with pytest.raises(InputError, match=f"unsupported image format GIF; use one of {', '.join(IMAGE_FORMATS)}"):
        probe_image(tmp_path / "anim.gif")
    with pytest.raises(InputError, match="image: file not found"):
        probe_image(tmp_path / "nope.png")


def test_probe_audio_reads_the_duration(media, tmp_path):
    assert probe_audio(media["audio"]) == pytest.approx(1.5, abs=0.01)
    assert probe_audio(media["short_audio"]) == pytest.approx(0.3, abs=0.01)
    with pytest.raises(InputError, match=r"audio: portrait.png \(png_pipe\) has no audio stream"):
        probe_audio(media["image"])
    with pytest.raises(InputError, match="audio: file not found"):
        probe_audio(tmp_path / "nope.wav")


def test_file_sha256_is_the_digest_of_the_bytes(tmp_path):
    data = bytes(range(256)) * 5000  # more than one 1 MiB chunk
    (tmp_path / "blob").write_bytes(data)
    assert file_sha256(tmp_path / "blob") == hashlib.sha256(data).hexdigest()
