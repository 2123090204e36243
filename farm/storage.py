"""Objects: inputs by content hash, outputs at deterministic keys, on a folder or any S3 API.

FARM_STORAGE_URL picks the backend: file:///path (embedded default) or s3://bucket/prefix
(with FARM_S3_ENDPOINT_URL for MinIO, moto, ...). Presigned URLs go to browsers, so they are
signed for FARM_S3_PUBLIC_ENDPOINT_URL when the farm reaches S3 at an address browsers do not
(http://s3:9000 inside compose, a cluster Service). Keys are validated: no absolute paths,
no '..', no odd characters, so no name can escape the store.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlparse

from .errors import ObjectMissing, StorageError
from .settings import Settings

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key.split("/"):
        raise StorageError(f"invalid object key {key!r}")
    return key


def asset_key(sha256: str, kind: str) -> str:
    return f"assets/{kind}/{sha256[:2]}/{sha256}"


def output_keys(take_id: str, attempt: int) -> dict[str, str]:
    """The keys one attempt writes its outputs to. Each attempt has its own: an attempt that
    lost the take (paused, declared lost, resumed) never overwrites the winner's objects, and
    the take's outputs are the keys its Output row names, set in the transaction that makes
    it done."""
    base = f"takes/{take_id}/{attempt}"
    return {
        "clip_key": f"{base}/clip.mp4",
        "thumbnail_key": f"{base}/thumbnail.jpg",
        "manifest_key": f"{base}/manifest.json",
    }


def preview_key(take_id: str, attempt: int) -> str:
    """The live preview of a running attempt (overwritten every few seconds; not an output)."""
    return f"takes/{take_id}/{attempt}/preview.jpg"


def window_key(take_id: str, index: int) -> str:
    """A long take's finished window `index` (from 0): its latents, kept for the take, not the
    attempt, so whichever attempt comes next resumes after it (workers/windows.py)."""
    return f"takes/{take_id}/windows/{index:04d}.safetensors"


def log_key(take_id: str, attempt: int) -> str:
    """The worker's log lines of one attempt, stored when the attempt ends (not an output: kept
    for every attempt, done or not)."""
    return f"takes/{take_id}/{attempt}/log.txt"


class Storage(Protocol):
    def put_file(self, key: str, path: Path, content_type: str) -> None: ...
    def put_stream(self, key: str, stream: BinaryIO, content_type: str) -> None: ...
    def get_file(self, key: str, path: Path) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def url(self, key: str, seconds: int) -> str: ...


class LocalStorage:
    """A folder; URLs point at the dispatcher's /objects route."""

    def __init__(self, root: Path, public_base: str = "/objects"):
        self.root, self.public_base = root, public_base
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        with open(path, "rb") as f:
            self.put_stream(key, f, content_type)

    def put_stream(self, key: str, stream: BinaryIO, content_type: str) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{time.monotonic_ns()}.tmp")
        with open(tmp, "wb") as f:
            shutil.copyfileobj(stream, f)
        tmp.replace(target)  # atomic: readers see the old object or the whole new one

    def get_file(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self.path(key), path)
        except FileNotFoundError:
            raise ObjectMissing(f"object {key} not found") from None

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(f"object {key} not found") from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def url(self, key: str, seconds: int) -> str:
        return f"{self.public_base}/{check_key(key)}"


class S3Storage:
    """Any S3 API through boto3, with its standard retries and backoff.

    Objects move through `endpoint_url`; URLs are presigned for `public_endpoint_url` (the
    same S3 as browsers reach it; default: endpoint_url). A SigV4 signature covers the Host
    header, so a URL cannot be rewritten to another host after signing: it is signed by a
    second client, made on the first presign, that names the public endpoint. Signing is
    local, so that client never needs to reach it."""

    def __init__(
        self, bucket: str, prefix: str, endpoint_url: str | None, region: str, public_endpoint_url: str | None = None
    ):
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.region, self.public_endpoint_url = region, public_endpoint_url
        self.client = self._make_client(endpoint_url)
        self._presigner = None
        self._lock = threading.Lock()  # API threads presign at once; boto3 client creation is not thread-safe

    def _make_client(self, endpoint_url: str | None):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=self.region,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, signature_version="s3v4"),
        )

    @property
    def presigner(self):
        """The client presigned URLs are made with: the public endpoint's, or the one client."""
        if not self.public_endpoint_url:
            return self.client
        with self._lock:
            if self._presigner is None:
                self._presigner = self._make_client(self.public_endpoint_url)
            return self._presigner

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn, *args, key: str | None = None, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            if key and exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise ObjectMissing(f"object {key} not found in s3://{self.bucket}") from exc
            raise StorageError(f"S3 {what} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {what} failed: {exc}") from exc

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._call("create bucket", self.client.create_bucket, Bucket=self.bucket)

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        self._call(
            "upload",
            self.client.upload_file,
            str(path),
            self.bucket,
            self._key(key),
            ExtraArgs={"ContentType": content_type},
        )

    def put_stream(self, key: str, stream: BinaryIO, content_type: str) -> None:
        self._call(
            "upload",
            self.client.upload_fileobj,
            stream,
            self.bucket,
            self._key(key),
            ExtraArgs={"ContentType": content_type},
        )

    def get_file(self, key: str, path: Path) -> None:
        self._call("download", self.client.download_file, self.bucket, self._key(key), str(path), key=key)

    def get_bytes(self, key: str) -> bytes:
        return self._call("get", self.client.get_object, Bucket=self.bucket, Key=self._key(key), key=key)["Body"].read()

    def delete(self, key: str) -> None:
        self._call("delete", self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(f"S3 head failed: {exc}") from exc

    def url(self, key: str, seconds: int) -> str:
        return self._call(
            "presign",
            self.presigner.generate_presigned_url,
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=seconds,
        )


def open_storage(settings: Settings) -> Storage:
    url = urlparse(settings.storage)
    if url.scheme == "file":
        return LocalStorage(Path(url.path))
    if url.scheme == "s3":
        store = S3Storage(
            url.netloc,
            url.path,
            settings.s3_endpoint_url,
            settings.s3_region,
            public_endpoint_url=settings.s3_public_endpoint_url,
        )
        store.ensure_bucket()
        return store
    raise StorageError(f"FARM_STORAGE_URL {settings.storage!r}: use file:///path or s3://bucket/prefix")
