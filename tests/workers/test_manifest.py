"""The manifest of a real tiny render: every resolved render parameter, the inputs and weights by
hash, the engine as it reported itself, and the software down to the lock file's hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from farm.tables import Attempt, Take
from models import RenderRequest, get_spec
from models.probe import file_sha256
from models.request import PARAMS
from workers import manifest as manifest_module
from workers.manifest import build_manifest, software

ROOT = Path(__file__).resolve().parents[2]
GIVEN = {"prompt": "a presenter talks to camera", "seed": 3, "steps": 2}  #: mode left unset: resolved from the inputs


@pytest.fixture(scope="module")
def rendered(pipelines, media):
    request = RenderRequest(checkpoint="tiny", image=str(media["image"]), audio=str(media["audio"]), **GIVEN)
    return pipelines["tiny"].render(request)


@pytest.fixture
def fresh_software():
    """`software()` is read once per process: clear it around a test that changes the lock."""
    software.cache_clear()
    yield
    software.cache_clear()


def manifest_of(result, media, digest: str | None = "d" * 64) -> dict:
    take = Take(
        id="take-1",
        batch_id="batch-1",
        producer="ana",
        image_sha256=file_sha256(media["image"]),
        audio_sha256=file_sha256(media["audio"]),
    )
    outputs = {"clip": {"key": "takes/take-1/clip.mp4", "sha256": "c" * 64, "size": 10}}
    return build_manifest(take, Attempt(number=2), result, digest, outputs, "host-1", "cpu")


def test_it_records_every_render_parameter_resolved(rendered, media):
    recorded = manifest_of(rendered, media)["request"]
    spec = get_spec("tiny")
    assert list(recorded) == [p.name for p in PARAMS]
    for p in PARAMS:  # what was given, else the checkpoint's default
        expected = GIVEN[p.name] if p.name in GIVEN else p.default(spec) if p.default else None
        if p.name == "mode":
            expected = "TIA"  # from the image and audio given
        assert recorded[p.name] == expected, p.name
    # every parameter with a default resolves to a value; `timesteps` alone has none (unset: the
    # schedule from steps and shift, whose integer timesteps the engine record lists)
    assert [p.name for p in PARAMS if recorded[p.name] is None] == ["timesteps"]
    assert manifest_of(rendered, media)["engine"]["sampler"]["timesteps"] == rendered.engine["sampler"]["timesteps"]


def test_it_names_the_take_its_inputs_and_its_weights(rendered, media, pipelines):
    digest = pipelines["tiny"].checkpoint_digest
    m = manifest_of(rendered, media, digest)
    assert (m["take_id"], m["batch_id"], m["producer"], m["attempt"]) == ("take-1", "batch-1", "ana", 2)
    assert m["inputs"] == {
        "image": file_sha256(media["image"]),
        "audio": file_sha256(media["audio"]),
        "loras": [],
        "consent": {},  # none given: the finisher passes farm.consent.snapshot (tests/workers/test_credentials.py)
    }
    assert m["checkpoint"] == {"name": "tiny", "dit_sha256": digest} and len(digest) == 64
    assert m["outputs"]["clip"]["sha256"] == "c" * 64 and m["hardware"] == {"host": "host-1", "gpu": "cpu"}
    assert m["frames_sha256"] == rendered.frames_sha256


def test_the_engine_is_recorded_as_the_engine_reported_it(rendered, media):
    engine = manifest_of(rendered, media)["engine"]
    assert engine == rendered.engine
    assert engine["sampler"]["steps"] == GIVEN["steps"] and len(engine["passes"]["per_step"]) == GIVEN["steps"]


def test_the_lock_file_is_the_repositorys(fresh_software):
    lock = ROOT / "requirements.lock"
    assert lock == manifest_module.LOCK
    expected = hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else None
    assert software()["lock_sha256"] == expected


def test_the_software_records_the_lock_files_hash(rendered, media, tmp_path, monkeypatch, fresh_software):
    lock = tmp_path / "requirements.lock"
    lock.write_text("torch==2.5.1\n")
    monkeypatch.setattr(manifest_module, "LOCK", lock)
    recorded = manifest_of(rendered, media)["software"]
    assert recorded["lock_sha256"] == hashlib.sha256(b"torch==2.5.1\n").hexdigest()
    assert recorded["torch"] and recorded["python"]
    for kernel_package in ("flash-attn-4", "flashinfer-python"):  # extras, outside the lock
        assert recorded[kernel_package] == manifest_module._version(kernel_package)


def test_without_a_lock_file_its_hash_is_none(rendered, media, tmp_path, monkeypatch, fresh_software):
    monkeypatch.setattr(manifest_module, "LOCK", tmp_path / "absent.lock")
    assert manifest_of(rendered, media)["software"]["lock_sha256"] is None


def test_the_manifest_is_json(rendered, media, pipelines):
    m = manifest_of(rendered, media, pipelines["tiny"].checkpoint_digest)
    assert json.loads(json.dumps(m)) == m  # nothing lost or changed on the way through JSON
