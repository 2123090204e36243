"""The farm's record: SQLAlchemy 2 models. Alembic's migrations create exactly these."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(at: datetime) -> datetime:
    """SQLite hands back naive datetimes; the record is UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class TakeState(str, enum.Enum):
    queued = "queued"
    paused = "paused"  #: held back by its producer (a paused batch); resuming queues it again
    released = "released"
    running = "running"
    done = "done"
    failed = "failed"
    canceled = "canceled"


class AttemptState(str, enum.Enum):
    running = "running"
    done = "done"
    failed = "failed"
    canceled = "canceled"
    lost = "lost"  #: the worker died or vanished mid-attempt


class Role(str, enum.Enum):
    viewer = "viewer"  #: reads everything
    producer = "producer"  #: + submits batches and manages their own takes
    operator = "operator"  #: + everything: any take, workers, pools, Flower


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)  #: also the producer name on batches
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=16))
    password_hash: Mapped[str | None] = mapped_column(String(300))  #: None: API tokens only
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: dashboard sessions carry the epoch they began in; bumping it signs the user out everywhere
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    """A bearer token for the REST API and the CLI; only its sha256 is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class LoginFailure(Base):
    """Failed logins, counted per name and address for the rate limit (shared by every replica)."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_name_at", "name", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Batch(Base):
    __tablename__ = "batches"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    producer: Mapped[str] = mapped_column(String(100), index=True)
    #: the submitted body, as received (for idempotent replays and audits)
    request: Mapped[dict] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    takes: Mapped[list[Take]] = relationship(back_populates="batch", order_by="Take.created_at")
    __table_args__ = (UniqueConstraint("producer", "idempotency_key", name="uq_batches_idempotency"),)


class Asset(Base):
    """An uploaded input, stored once, addressed by the sha256 of its bytes."""

    __tablename__ = "assets"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  #: image, audio or lora
    size: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[str] = mapped_column(String(300))  #: storage key
    filename: Mapped[str] = mapped_column(String(300))
    media_format: Mapped[str] = mapped_column(String(32))
    #: a LoRA's reading: its format, rank, the modules it changes, the checkpoints it fits
    info: Mapped[dict | None] = mapped_column(JSON)
    #: declared "no real person" (synthetic) by this user, at this time (farm.consent)
    synthetic_by: Mapped[str | None] = mapped_column(String(100))
    synthetic_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Take(Base):
    __tablename__ = "takes"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)  #: = Celery task id
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), index=True)
    producer: Mapped[str] = mapped_column(String(100))
    checkpoint: Mapped[str] = mapped_column(String(40))
    pool: Mapped[str] = mapped_column(String(20))
    #: render parameters as the engine's RenderRequest fields (prompt, mode, seed, size, ...)
    params: Mapped[dict] = mapped_column(JSON)
    image_sha256: Mapped[str | None] = mapped_column(ForeignKey("assets.sha256"))
    audio_sha256: Mapped[str | None] = mapped_column(ForeignKey("assets.sha256"))
    #: [{"sha256", "strength"}]: the LoRA assets stacked on the DiT, in order (None: none)
    loras: Mapped[list | None] = mapped_column(JSON)
    preset: Mapped[str | None] = mapped_column(String(100))  #: the preset the take was made from, if any
    #: the consent decision when it was made (farm.consent.decide): policy, outcome, each input's records
    consent: Mapped[dict | None] = mapped_column(JSON)
    #: why its clip may no longer be delivered (a consent record revoked or expired); None: it may
    consent_withdrawn: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, default=0)  #: higher first
    state: Mapped[TakeState] = mapped_column(Enum(TakeState, native_enum=False, length=16), default=TakeState.queued)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("takes.id"))
    selected_for_hero: Mapped[bool] = mapped_column(Boolean, default=False)
    #: a nightly hero take: the night (hero_nights.night) it was planned for
    hero_night: Mapped[date | None] = mapped_column(Date)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)  #: every window's steps
    progress_windows: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  #: of a long take
    #: a long take's finished windows whose latents are stored (storage.window_key), from the
    #: first on: the next attempt resumes after them
    windows_saved: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error_class: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    batch: Mapped[Batch] = relationship(back_populates="takes")
    attempts: Mapped[list[Attempt]] = relationship(back_populates="take", order_by="Attempt.number")
    output: Mapped[Output | None] = relationship(back_populates="take", uselist=False)
    __table_args__ = (
        Index("ix_takes_release_order", "pool", "state", "priority", "created_at"),
        Index("ix_takes_state", "state"),
        Index("ix_takes_updated_at", "updated_at"),  #: the dashboard's change feed
        Index("ix_takes_created_id", "created_at", "id"),  #: the take list's order and its cursor
        #: a night's takes; and once per night per parent (NULL nights, i.e. other takes, never clash)
        Index("uq_takes_hero_night", "hero_night", "parent_id", unique=True),
    )


class Attempt(Base):
    __tablename__ = "attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    take_id: Mapped[str] = mapped_column(ForeignKey("takes.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(200))
    gpu: Mapped[str] = mapped_column(String(200))
    state: Mapped[AttemptState] = mapped_column(
        Enum(AttemptState, native_enum=False, length=16), default=AttemptState.running
    )
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    #: the window (from 0) it started at: after the windows an earlier attempt saved
    start_window: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error_class: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    take: Mapped[Take] = relationship(back_populates="attempts")
    __table_args__ = (UniqueConstraint("take_id", "number", name="uq_attempts_take_number"),)


class Output(Base):
    """A finished take's objects; one row per take (the unique key forbids a second set)."""

    __tablename__ = "outputs"
    take_id: Mapped[str] = mapped_column(ForeignKey("takes.id"), primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id"))
    clip_key: Mapped[str] = mapped_column(String(300))
    thumbnail_key: Mapped[str] = mapped_column(String(300))
    manifest_key: Mapped[str] = mapped_column(String(300))
    clip_sha256: Mapped[str] = mapped_column(String(64))
    clip_size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    take: Mapped[Take] = relationship(back_populates="output")


class Worker(Base):
    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)  #: host:pid:gpu
    pool: Mapped[str] = mapped_column(String(20), index=True)
    host: Mapped[str] = mapped_column(String(200))
    gpu: Mapped[str] = mapped_column(String(200))
    slots: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    current_take_id: Mapped[str | None] = mapped_column(String(32))
    #: what its DiT holds: farm.affinity.stack_key of the checkpoint and LoRA stack (None: unknown)
    holding: Mapped[str | None] = mapped_column(String(1000))
    stopped: Mapped[bool] = mapped_column(Boolean, default=False)


class HeroNight(Base):
    """One night of hero re-renders: what the nightly job planned, in which window and budget."""

    __tablename__ = "hero_nights"
    night: Mapped[date] = mapped_column(Date, primary_key=True)  #: the local date the window opens on
    state: Mapped[str] = mapped_column(String(16), default="planned")  #: planned | stopped (over budget)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    budget_gpu_hours: Mapped[float] = mapped_column(Float)
    estimated_gpu_hours: Mapped[float] = mapped_column(Float, default=0.0)  #: of the takes planned
    planned: Mapped[int] = mapped_column(Integer, default=0)  #: hero takes created
    skipped_over_budget: Mapped[int] = mapped_column(Integer, default=0)  #: selected takes left out (last pass)
    skipped_consent: Mapped[int] = mapped_column(Integer, default=0)  #: selected takes consent left out (last pass)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)  #: first pass
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)  #: last pass


class ConsentRecord(Base):
    """A real person's written consent to the use of their likeness, voice or both
    (farm.consent). Its terms never change; it ends by revocation or expiry."""

    __tablename__ = "consent_records"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    subject: Mapped[str] = mapped_column(String(200), index=True)  #: a name or an internal id
    covers: Mapped[str] = mapped_column(String(16))  #: likeness, voice or both
    uses: Mapped[list] = mapped_column(JSON)  #: allowed uses, e.g. ["advertising"]
    territories: Mapped[list] = mapped_column(JSON)  #: e.g. ["EU", "US"], or ["worldwide"]
    downstream: Mapped[list] = mapped_column(JSON)  #: downstream applications allowed
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  #: None: open-ended
    evidence_sha256: Mapped[str] = mapped_column(ForeignKey("assets.sha256"))  #: the stored evidence
    evidence_kind: Mapped[str] = mapped_column(String(16))  #: release (a signed document) or statement (recorded)
    content_sha256: Mapped[str] = mapped_column(String(64))  #: of its terms (farm.consent.content_digest)
    recorded_by: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_by: Mapped[str | None] = mapped_column(String(100))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoke_reason: Mapped[str | None] = mapped_column(Text)
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  #: when its expiry was acted on


class ConsentLink(Base):
    """An asset (image: likeness; audio: voice) linked to a consent record; never deleted."""

    __tablename__ = "consent_links"
    asset_sha256: Mapped[str] = mapped_column(ForeignKey("assets.sha256"), primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("consent_records.id"), primary_key=True, index=True)
    linked_by: Mapped[str] = mapped_column(String(100))
    linked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ConsentEvent(Base):
    """The audit trail: one row for every change to consent and every decision it made."""

    __tablename__ = "consent_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))  #: a user, or "farm" for the farm's own acts (expiry)
    action: Mapped[str] = mapped_column(String(32))  #: farm.consent.ACTIONS
    record_id: Mapped[str | None] = mapped_column(ForeignKey("consent_records.id"), index=True)
    asset_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    take_id: Mapped[str | None] = mapped_column(String(32), index=True)
    detail: Mapped[dict] = mapped_column(JSON)


class WebhookEndpoint(Base):
    """Where the farm tells a producer's pipeline that takes and batches finished (farm.webhooks):
    the takes of one producer, or of one batch."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(String(2000))
    producer: Mapped[str] = mapped_column(String(100), index=True)  #: whose takes
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"), index=True)  #: only this batch's
    events: Mapped[list] = mapped_column(JSON)  #: farm.webhooks.EVENTS it is sent
    #: signing secrets, newest first: [{"secret": "whsec_...", "expires_at": ISO time or None}]
    secrets: Mapped[list] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class WebhookMessage(Base):
    """The outbox: one event for one endpoint, kept until delivered (a 2xx) or given up."""

    __tablename__ = "webhook_messages"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  #: webhook-id: "msg_<hex>"
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    #: what happened, once: "take.done:<take id>:<finished at>"; unique per endpoint
    event_key: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)  #: the JSON body, byte for byte as signed and sent
    state: Mapped[str] = mapped_column(String(16), default="pending")  #: pending | delivered | gave_up
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_key", name="uq_webhook_messages_event"),
        Index("ix_webhook_messages_due", "state", "next_attempt_at"),
        Index("ix_webhook_messages_endpoint", "endpoint_id", "created_at"),
    )


class WebhookAttempt(Base):
    """One try at delivering a message: the answer's status, or the error in words."""

    __tablename__ = "webhook_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("webhook_messages.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    seconds: Mapped[float | None] = mapped_column(Float)  #: None: still waiting for the answer
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (UniqueConstraint("message_id", "number", name="uq_webhook_attempts_number"),)


class OutboxCursor(Base):
    """How far the webhook outbox has read the takes' changes (farm.webhooks.collect)."""

    __tablename__ = "outbox_cursors"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
