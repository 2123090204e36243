"""Content credentials (C2PA) with the real c2pa library on real MP4s from `tiny`: a sign and
verify round trip, a clip altered after signing failing `farm verify`, and a worker's clip
whose credentials name its stored manifest and consent records."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from farm.credentials import manifest_digest
from farm.signing_chain import DEV_ORG, SigningConfigError
from farm.storage import output_keys
from models import RenderRequest
from tests.helpers import assets, wait_done
from tests.services import ROOT, settings_env
from workers.credentials import ClipSigner

CONSENT = {"image": {"status": "consented", "records": [{"id": "r1", "sha256": "d" * 64}]}, "audio": {"records": []}}


def verify(settings, clip: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "farm.cli", "verify", str(clip), *extra],
        cwd=ROOT, env=settings_env(settings), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def altered(clip: Path, out: Path) -> Path:
    """One byte of the video's samples flipped after signing."""
    data = bytearray(clip.read_bytes())
    data[data.index(b"mdat") + 64] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


def test_sign_and_verify_round_trip_and_an_altered_clip_fails(pipelines, settings, tmp_path):
    local = settings.model_copy(update={"data_dir": tmp_path / "farm"})
    result = pipelines["tiny"].render(RenderRequest(prompt="a presenter", checkpoint="tiny", mode="T", steps=2))
    encoded, signed = tmp_path / "encoded.mp4", tmp_path / "clip.mp4"
    result.write(encoded, tmp_path / "thumb.jpg")
    signer = ClipSigner(local)  # no chain configured: the development chain, generated once
    assert signer.chain.development and (tmp_path / "farm" / "c2pa-dev" / "root.pem").is_file()
    manifest = {"take_id": "t1", "request": result.request.record(), "outputs": {"clip": "not hashed"}}
    definition = signer.definition("t1", manifest_digest(manifest), CONSENT, "tiny", "e" * 64)
    seconds = signer.sign(encoded, signed, definition)
    assert 0 < seconds < 10 and signed.stat().st_size > encoded.stat().st_size
    manifest_file = tmp_path / "manifest.json"
    manifest_file.write_text(json.dumps(manifest))
    r = verify(local, signed, "--manifest", str(manifest_file))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[0] == f"{signed}: Trusted (development chain: not for delivery)"
    assert "action: c2pa.created http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia" in r.stdout
    assert "consent: image record r1" in r.stdout and "manifest: matches" in r.stdout
    elsewhere = verify(local.model_copy(update={"data_dir": tmp_path / "elsewhere"}), signed)  # no trust anchors
    assert elsewhere.returncode == 0 and ": Valid (" in elsewhere.stdout and "not in the trust list" in elsewhere.stdout
    found = json.loads(verify(local, signed, "--json").stdout)
    assert found["development"] and found["signer"]["issuer"] == DEV_ORG
    assert found["take"]["generator"] == {"checkpoint": "tiny", "dit_sha256": "e" * 64, "farm_version": "0.1.0"}
    assert found["take"]["inputs_without_record"] == ["audio"]
    # the same clip, one byte of its video changed: refused, saying why
    r = verify(local, altered(signed, tmp_path / "altered.mp4"))
    assert r.returncode == 1 and ": Invalid" in r.stdout.splitlines()[0]
    assert "assertion.bmffHash.mismatch" in r.stderr and "Traceback" not in r.stderr
    # a manifest edited after signing no longer matches; an unsigned clip has nothing to verify
    manifest_file.write_text(json.dumps({**manifest, "take_id": "t2"}))
    r = verify(local, signed, "--manifest", str(manifest_file))
    assert r.returncode == 1 and "DOES NOT MATCH" in r.stdout
    r = verify(local, encoded)
    assert r.returncode == 1 and "no content credentials" in r.stderr


def test_a_signing_chain_that_cannot_sign_stops_the_worker_at_start(settings, tmp_path):
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    key.write_text("not a key")
    broken = settings.model_copy(update={"c2pa_cert_chain": chain, "c2pa_private_key": key})
    with pytest.raises(SigningConfigError, match="cannot sign"):
        ClipSigner(broken)
    half = settings.model_copy(update={"c2pa_cert_chain": chain, "c2pa_private_key": None})
    with pytest.raises(SigningConfigError, match="FARM_C2PA_PRIVATE_KEY"):
        ClipSigner(half)


def test_a_workers_clip_names_its_manifest_and_consent_records(
    client_as, media, storage, settings, start_worker, release_loop, tmp_path
):
    ana, olga = client_as("ana"), client_as("olga")
    image, audio = assets(ana, media)
    pdf = ana.post("/consent/evidence", files={"file": ("r.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")}).json()
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    made = ana.post(
        "/consent/records",
        json={"subject": "Ana", "covers": "both", "evidence_sha256": pdf["sha256"], "evidence_kind": "release",
              "valid_from": since, "assets": [image, audio]},
    ).json()  # fmt: skip
    start_worker()
    batch = ana.post("/batches", json={"takes": [{"prompt": "p", "mode": "TIA", "image": image, "audio": audio}]})
    take = wait_done(ana, batch.json()["take_ids"])[0]
    assert take["state"] == "done", take
    keys = output_keys(take["id"], 1)
    manifest = json.loads(storage.get_bytes(keys["manifest_key"]))
    mine = [{"id": made["id"], "sha256": made["content_sha256"]}]
    recorded = manifest["inputs"]["consent"]
    assert recorded["image"]["records"] == mine == recorded["audio"]["records"]
    assert recorded["image"]["status"] == "consented"
    assert manifest["outputs"]["credentials"]["development_chain"] is True
    credentials = ana.get(f"/takes/{take['id']}/credentials").json()
    assert credentials["ok"] and credentials["state"] == "Trusted" and credentials["manifest_matches"] is True
    assert credentials["take"]["take_id"] == take["id"]
    assert credentials["take"]["manifest_sha256"] == manifest_digest(manifest)
    assert {r["input"] for r in credentials["take"]["consent_records"]} == {"image", "audio"}
    assert credentials["take"]["generator"]["dit_sha256"] == manifest["checkpoint"]["dit_sha256"]
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(httpx.get(take["outputs"]["clip"]).content)  # what a downstream user downloads
    manifest_file = tmp_path / "manifest.json"
    manifest_file.write_text(json.dumps(manifest))
    r = verify(settings, clip, "--manifest", str(manifest_file))
    assert r.returncode == 0 and "manifest: matches" in r.stdout, r.stdout + r.stderr
    # revoked: the clip is marked and no longer handed out; its credentials can still be read
    assert olga.post(f"/consent/records/{made['id']}/revoke", json={"reason": "withdrawn"}).status_code == 200
    after = ana.get(f"/takes/{take['id']}").json()
    assert after["outputs"]["clip"] is None and "withdrawn" in after["consent_withdrawn"]
    assert ana.get(f"/takes/{take['id']}/credentials").json()["ok"]
