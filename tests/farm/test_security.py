"""Security: upload limits and sniffing, no path traversal, expiring URLs, no secrets in logs."""

from __future__ import annotations

import httpx

from farm.api.app import create_app
from farm.settings import Settings, redact
from farm.storage import LocalStorage

from ..services import wait_for


def test_uploads_over_the_limit_are_refused_before_they_are_read(clean, storage, tokens, tmp_path):
    from fastapi.testclient import TestClient

    app = create_app(clean.model_copy(update={"max_upload_bytes": 1000}), storage)
    with TestClient(app, headers={"Authorization": f"Bearer {tokens['ana']}"}) as client:
        big = client.post("/assets", files={"file": ("big.wav", b"\0" * 5_000_000)})
        assert big.status_code == 413 and "1000 byte limit" in big.json()["detail"]
        near = client.post(
            "/assets", files={"file": ("near.wav", b"\0" * 2000)}
        )  # within the envelope: read, then refused
        assert near.status_code == 413 and near.json()["field"] == "file"


def test_names_cannot_reach_outside_the_store(clean, media, tokens, tmp_path):
    from fastapi.testclient import TestClient

    objects = LocalStorage(tmp_path / "objects")
    (tmp_path / "secret.txt").write_text("do not serve")
    app = create_app(clean.model_copy(update={"storage_url": f"file://{tmp_path / 'objects'}"}), objects)
    with TestClient(app, headers={"Authorization": f"Bearer {tokens['ana']}"}) as client:
        with open(media["image"], "rb") as f:
            asset = client.post("/assets", files={"file": ("../../../etc/passwd", f)}).json()
        assert asset["filename"] == "passwd" and asset["kind"] == "image"
        assert (tmp_path / "objects" / "assets" / "image" / asset["sha256"][:2] / asset["sha256"]).is_file()
        for path in (
            "/objects/../secret.txt",
            "/objects/%2e%2e/secret.txt",
            "/objects/..%2fsecret.txt",
            "/objects//etc/passwd",
            "/objects/assets/../../secret.txt",
        ):
            r = client.get(path)
            assert r.status_code == 404 and "do not serve" not in r.text, path


def test_presigned_urls_carry_the_configured_expiry(storage, clean):
    """S3 enforces the expiry it signs (moto's server checks neither expiry nor signature, so
    we check what we sign)."""
    from urllib.parse import parse_qs, urlsplit

    storage.put_stream("takes/expiry/clip.mp4", __import__("io").BytesIO(b"clip"), "video/mp4")
    url = storage.url("takes/expiry/clip.mp4", clean.presign_seconds)
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == [str(clean.presign_seconds)] and "X-Amz-Signature" in query
    assert query["X-Amz-SignedHeaders"] == ["host"]  # the expiry is inside what is signed
    assert httpx.get(url).status_code == 200


def test_settings_and_logs_never_show_credentials(clean):
    settings = Settings(database_url="postgresql+psycopg://farm:hunter2@db/farm", broker_url="redis://:s3cret@r:6379/0")
    shown = repr(settings) + str(settings)
    assert "hunter2" not in shown and "s3cret" not in shown and "farm:***@db" in shown
    assert redact("s3://bucket/prefix") == "s3://bucket/prefix"


def test_worker_logs_hold_no_secret(client, start_worker, release_loop):
    import os

    worker = start_worker()
    take_id = client.post("/batches", json={"takes": [{"prompt": "p", "mode": "T"}]}).json()["take_ids"][0]
    wait_for(lambda: client.get(f"/takes/{take_id}").json()["state"] == "done", 120, "the take")
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in worker.log.read_text()
