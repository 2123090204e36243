"""FARM_S3_PUBLIC_ENDPOINT_URL: presigned URLs are signed for the S3 endpoint as browsers reach
it, while the farm's own uploads and downloads keep FARM_S3_ENDPOINT_URL. One moto server,
reached by two host names: the farm's (localhost) and the browser's (127.0.0.1)."""

from __future__ import annotations

import io
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from farm.settings import Settings
from farm.storage import S3Storage, open_storage

from ..services import free_port


@pytest.fixture
def endpoints(s3_endpoint) -> tuple[str, str]:
    """(the farm's endpoint, the public one): the same server under two host names."""
    port = urlsplit(s3_endpoint).port
    return f"http://localhost:{port}", f"http://127.0.0.1:{port}"


def store(tmp_path, internal: str, public: str | None) -> S3Storage:
    settings = Settings(
        data_dir=tmp_path,
        storage_url=f"s3://farm-public-{uuid.uuid4().hex[:6]}/renders",
        s3_endpoint_url=internal,
        s3_public_endpoint_url=public,
    )
    return open_storage(settings)


def test_urls_are_signed_for_the_public_endpoint_and_download(tmp_path, endpoints):
    internal, public = endpoints
    s3 = store(tmp_path, internal, public)
    body = b"a clip, as a browser would fetch it " + uuid.uuid4().bytes
    (tmp_path / "clip.mp4").write_bytes(body)
    s3.put_file("takes/t1/clip.mp4", tmp_path / "clip.mp4", "video/mp4")

    url = s3.url("takes/t1/clip.mp4", 300)
    assert url.startswith(f"{public}/") and "X-Amz-Signature=" in url
    r = httpx.get(url)  # the browser: only the public endpoint, no credentials
    assert r.status_code == 200 and r.content == body and r.headers["content-type"] == "video/mp4"
    assert s3.get_bytes("takes/t1/clip.mp4") == body  # the farm itself still goes through its own endpoint
    assert s3.client.meta.endpoint_url == internal and s3.presigner.meta.endpoint_url == public


def test_without_a_public_endpoint_urls_name_the_farms_own(tmp_path, endpoints):
    internal, _ = endpoints
    s3 = store(tmp_path, internal, None)
    s3.put_stream("takes/t2/clip.mp4", io.BytesIO(b"clip"), "video/mp4")
    url = s3.url("takes/t2/clip.mp4", 300)
    assert url.startswith(f"{internal}/") and s3.presigner is s3.client
    assert httpx.get(url).content == b"clip"


def test_objects_never_move_through_the_public_endpoint(tmp_path, endpoints):
    """The public endpoint is only signed for, never connected to: here nothing listens there."""
    internal, _ = endpoints
    nowhere = f"http://127.0.0.1:{free_port()}"
    s3 = store(tmp_path, internal, nowhere)
    (tmp_path / "in.png").write_bytes(b"png")
    s3.put_file("assets/image/ab/abc", tmp_path / "in.png", "image/png")
    assert s3.exists("assets/image/ab/abc") and s3.get_bytes("assets/image/ab/abc") == b"png"
    s3.get_file("assets/image/ab/abc", tmp_path / "out.png")
    assert (tmp_path / "out.png").read_bytes() == b"png"
    assert s3.url("assets/image/ab/abc", 60).startswith(f"{nowhere}/")
