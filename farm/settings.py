"""One validated Settings object, read once from FARM_* environment variables.

With nothing set the farm runs on one machine with no services: SQLite, Celery's
filesystem transport and a local objects folder, all under FARM_DATA_DIR. Setting the
three URLs moves it onto Postgres, Redis and S3 without code changes.
"""

from __future__ import annotations

import os
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FARM_", extra="ignore")

    data_dir: Path = Path(".farm")  #: where the embedded defaults keep their files
    database_url: str = ""  #: default: sqlite:///{data_dir}/farm.db
    broker_url: str = ""  #: default: filesystem:// under {data_dir}/broker (no server)
    storage_url: str = ""  #: default: file://{data_dir}/objects; or s3://bucket/prefix
    s3_endpoint_url: str | None = None  #: any S3 API (MinIO, moto, ...); None: AWS
    #: the S3 endpoint as browsers reach it; presigned URLs are signed for it (default: s3_endpoint_url)
    s3_public_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    #: seconds to reach Postgres and sign in (whole seconds, at least 2); a pooled connection
    #: must also answer its check-out ping within this, or it is replaced
    db_connect_timeout: int = Field(default=5, ge=2)
    #: seconds a statement may run before Postgres cancels it (0: no limit); a connection
    #: that stays silent db_connect_timeout longer than this is closed by the client
    db_statement_timeout: float = Field(default=30.0, ge=0)
    db_pool_timeout: float = Field(default=10.0, gt=0)  #: seconds a request waits for a free pooled connection

    #: seconds a released take may wait unclaimed before the reconciler releases it again
    release_timeout: float = 120.0
    #: seconds without a heartbeat after which a worker is presumed dead and its take requeued
    worker_timeout: float = 60.0
    heartbeat_interval: float = 5.0  #: seconds
    release_interval: float = 1.0  #: seconds between release-loop passes
    #: extra takes released beyond free workers, per pool (0: exactly the free capacity)
    release_ahead: int = 0
    #: seconds: Redis redelivers an unacked task after this; above the longest render
    visibility_timeout: int = 6 * 3600
    max_attempts: int = 3  #: attempts per take before it fails
    #: a worker with this many failed attempts on a batch is kept off that batch (0: never);
    #: only failures it may have caused count (farm.states.NOT_THE_WORKERS_FAULT do not)
    blocklist_failures: int = 2
    #: seconds: only failures this recent count towards the blocklist; older ones are forgiven
    blocklist_window: float = 900.0
    progress_interval: float = 0.5  #: seconds between progress writes of a render
    #: seconds between live previews of a running take's prediction (models/preview.py; 0: none)
    preview_interval: float = Field(default=5.0, ge=0)
    #: write and upload a finished clip on a thread while the GPU starts the next take
    finish_in_background: bool = True
    render_time_limit: float = 3 * 3600.0  #: seconds a render may take before it is stopped
    #: seconds a render may go without finishing a denoising step before the worker is
    #: presumed hung: it exits, and the reconciler gives its take to another worker
    stall_timeout: float = 900.0
    presign_seconds: int = 3600  #: lifetime of presigned output URLs
    max_upload_bytes: int = 512 * 1024 * 1024  #: largest accepted image or audio upload
    max_audio_seconds: float = 600.0  #: longest accepted audio upload (a take hears at most its own span)
    #: largest accepted LoRA upload (a rank-64 LoRA of the 17B is ~1.2 GB at bf16)
    max_lora_bytes: int = 2 * 1024**3
    #: bytes of LoRA files a worker keeps on its disk (least recently used dropped first)
    lora_cache_bytes: int = 20 * 1024**3
    #: bytes: the largest request body other than an upload or a batch file (a JSON batch
    #: of takes, a form); counted as it arrives, with or without a Content-Length
    max_body_bytes: int = Field(default=2 * 1024 * 1024, gt=0)

    #: signs session cookies; set the same value on every dispatcher replica
    #: (default: a random key kept in {data_dir}/secret_key)
    secret_key: str = Field(default="", repr=False)
    session_hours: float = 12.0  #: a dashboard login lasts this long
    #: send the session cookie over HTTPS only (default: when the request came over HTTPS)
    cookie_secure: bool | None = None
    #: Flower, started by `farm up` on this loopback port and served to operators at /flower
    flower_port: int = 5555
    flower_url: str = ""  #: an external Flower instead (its --url_prefix must be "flower")

    weights_dir: Path | None = Field(default=None, description="HuMo weights folder (official layout)")
    device: str | None = None  #: worker device: cuda, cpu (default: cuda when present)
    explore_checkpoint: str = "tiny"  #: what the explore pool renders with
    hero_checkpoint: str = "humo-17b"
    #: named take settings operators define (JSON in FARM_PRESETS), e.g. {"draft-1.7b":
    #: {"checkpoint": "humo-1.7b", "steps": 6, "sampler": "unipc", "shift": 8, "guidance": "off",
    #: "loras": [{"asset": "<sha256>"}]}}; any take field but `preset`, checked at start
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict)

    #: nightly hero runs (farm.nightly): takes selected for hero re-render on the hero
    #: checkpoint inside this window, local time of nightly_timezone (end before start:
    #: the window spans midnight); hero takes of a night are released only inside it
    nightly_window_start: str = "22:00"
    nightly_window_end: str = "06:00"
    nightly_timezone: str = "UTC"  #: an IANA zone name, e.g. Europe/Paris
    nightly_budget_gpu_hours: float = 64.0  #: GPU hours a night may plan, and spend before it stops
    #: seconds of one denoising step of a hero take on its GPU group (the estimate; measured:
    #: HuMo-17B TIA at 720p, 97 frames, one H100: 51.08 s), and the group's GPUs
    hero_step_seconds: float = 51.08
    hero_gpus: int = 1  #: GPUs per hero take: the ranks of a hero worker's sequence-parallel group
    beat_interval: float = 60.0  #: seconds between `farm beat` passes (lock check, plan, budget stop)
    #: days a failed or canceled long take keeps its stored windows for a retry to resume from
    #: (farm.retention); a take whose consent was withdrawn loses them at the next pass
    window_retention_days: float = Field(default=7.0, ge=0)

    #: consent (farm.consent): off, warn, require-hero (hero takes refused without cover, others
    #: warned) or require; an input not covered for the render's span is refused naming what is missing
    consent_policy: str = "require-hero"
    #: content credentials (C2PA) on every clip: the signer's certificate chain (PEM, the signing
    #: certificate first) and its private key (PEM); unset: a local development chain under
    #: {data_dir}/c2pa-dev, which every clip's credentials name as one
    c2pa_cert_chain: Path | None = None
    c2pa_private_key: Path | None = Field(default=None, repr=False)
    c2pa_signing_alg: str = "es256"  #: es256, es384, es512, ps256, ps384, ps512 or ed25519
    c2pa_tsa_url: str | None = None  #: an RFC 3161 time-stamp authority (None: no time-stamp)
    #: root certificates (PEM) `farm verify` and the take page trust (default: the development root)
    c2pa_trust_anchors: Path | None = None

    #: webhooks (farm.webhooks): the leader's delivery pass every webhook_interval seconds; an
    #: attempt waits webhook_timeout seconds for an answer; a failed one is tried again after
    #: webhook_retry_base seconds, doubling (at most an hour), until webhook_retry_hours passed
    webhook_interval: float = Field(default=1.0, gt=0)
    webhook_timeout: float = Field(default=10.0, gt=0, le=60)
    webhook_retry_base: float = Field(default=5.0, gt=0)
    webhook_retry_hours: float = Field(default=24.0, gt=0, le=24 * 7)
    #: networks (comma-separated CIDRs) webhook destinations may be on although private,
    #: loopback or link-local, e.g. "10.20.0.0/16"; default: none (only public addresses)
    webhook_allow_networks: str = ""

    def __repr_args__(self):
        """Never show credentials: URLs lose their passwords in repr, str and logs."""
        for name, value in super().__repr_args__():
            yield name, redact(value) if isinstance(value, str) else value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("consent_policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        from .consent import POLICIES  # the modes' one owner

        if value not in POLICIES:
            raise ValueError(f"{value!r} is not a consent policy; one of {', '.join(POLICIES)}")
        return value

    @field_validator("nightly_window_start", "nightly_window_end")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        from datetime import time

        try:
            time.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a time of day like 22:00") from None
        return value

    @field_validator("webhook_allow_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        from ipaddress import ip_network

        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ip_network(part)
            except ValueError:
                raise ValueError(f"{part!r} is not a network like 10.20.0.0/16 or 127.0.0.1/32") from None
        return value

    @field_validator("nightly_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone like UTC or Europe/Paris") from None
        return value

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'farm.db'}"

    @property
    def broker(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        return self.data_dir / "broker"

    @cached_property  # read once: every signed-in request needs it
    def session_secret(self) -> str:
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if not path.exists():
            import secrets

            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}")
            tmp.write_text(secrets.token_urlsafe(48))
            tmp.chmod(0o600)
            os.replace(tmp, path)  # first writer wins whole; never a half-written key
        return path.read_text().strip()

    @property
    def flower(self) -> str:
        return (self.flower_url or f"http://127.0.0.1:{self.flower_port}").rstrip("/")

    @property
    def storage(self) -> str:
        return self.storage_url or f"file://{self.data_dir / 'objects'}"


def redact(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db"""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
