"""Audio longer than its clip is said at submit, with the frames that cover it (the audio's
length is read at upload). Over HTTP on Postgres and S3."""

from __future__ import annotations

from datetime import timedelta

import pytest

from farm.db import transaction
from farm.tables import Worker, utcnow

from ..conftest import write_wav
from ..helpers import upload


@pytest.fixture(autouse=True)
def tiny_worker(sessions):
    """A live worker holding tiny: the only warnings left are the audio's."""
    with transaction(sessions) as s:
        alive = utcnow() + timedelta(hours=1)  # heartbeating all test long
        s.add(Worker(id="w1", pool="explore", host="h", gpu="cpu", holding="tiny", heartbeat_at=alive))


def body(audio: str, frames: int | None = 17, n: int = 1) -> dict:
    take = {"checkpoint": "tiny", "mode": "TA", "audio": audio, **({"frames": frames} if frames else {})}
    return {"producer": "ana", "defaults": take, "takes": [{"prompt": f"line {i}", "seed": i} for i in range(n)]}


def test_audio_past_the_clip_is_said_with_the_frames_that_cover_it(client, tmp_path):
    line = upload(client, write_wav(tmp_path / "line.wav", 5.3)).json()
    assert line["info"] == {"seconds": 5.3}
    cost = client.post("/batches/estimate", json=body(line["sha256"], n=3)).json()
    assert cost["audio"] == [
        {"audio": line["sha256"], "filename": "line.wav", "audio_seconds": 5.3, "frames": 17, "clip_seconds": 0.68,
         "cover_frames": 133, "cannot": None, "takes": 3}
    ]  # fmt: skip
    expected = "3 takes: the audio line.wav is 5.3 s but the clip is 0.68 s (17 frames); frames: 133 cover it"
    assert cost["warnings"] == [expected]
    submitted = client.post("/batches", json=body(line["sha256"], n=3)).json()
    assert expected in submitted["warnings"]  # said at submit too
    covered = client.post("/batches/estimate", json=body(line["sha256"], frames=133)).json()
    assert covered["audio"] == [] and covered["warnings"] == []  # 133 frames hear it all


def test_audio_longer_than_any_take_says_to_cut_it(client, tmp_path):
    speech = upload(client, write_wav(tmp_path / "speech.wav", 61.0)).json()  # a take is at most 60 s
    cost = client.post("/batches/estimate", json=body(speech["sha256"], frames=None)).json()
    [fit] = cost["audio"]
    assert (fit["cover_frames"], fit["frames"]) == (None, 17)  # tiny's default frames
    assert fit["cannot"].startswith("the audio is 61.0 s, 1525 frames; a take is at most 1501 frames")
    assert cost["warnings"] == [
        f"1 take: the audio speech.wav is 61.0 s but the clip is 0.68 s (17 frames); {fit['cannot']}"
    ]
    text_only = client.post("/batches/estimate", json={**body(speech["sha256"]), "defaults": {"mode": "T"}}).json()
    assert text_only["audio"] == []  # a take that hears no audio has nothing to fit
    fitted = {**body(speech["sha256"], frames=None)}
    short = upload(client, write_wav(tmp_path / "short.wav", 5.3)).json()
    fitted["defaults"] = {"checkpoint": "tiny", "mode": "TA", "audio": short["sha256"], "fit": "audio"}
    assert client.post("/batches/estimate", json=fitted).json()["audio"] == []  # fit: audio covers it already
