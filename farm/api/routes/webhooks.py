"""Webhook endpoints: register one (its secret is shown once), rotate its secret, delete it,
and read every message sent to it with each delivery attempt (farm.webhooks)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from ... import webhooks
from ...errors import NotFound
from ...tables import Batch, WebhookEndpoint, utcnow
from ..auth import Producer, Viewer, check_manage, submitter
from ..deps import SessionDep, SettingsDep
from ..schemas import Text, WebhookEvents

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class WebhookCreate(BaseModel):
    """An endpoint for one producer's takes, or (with `batch_id`) one batch's."""

    model_config = ConfigDict(extra="forbid")
    url: Text = Field(max_length=2000, description="https://... ; private and loopback hosts are refused")
    events: WebhookEvents = Field(default_factory=lambda: list(webhooks.EVENTS))
    producer: Text | None = Field(None, max_length=100, description="operators: whose takes (default: yours)")
    batch_id: Text | None = Field(None, max_length=32, description="only this batch's takes")


class WebhookRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep_old_hours: float = Field(
        24.0, ge=0, le=webhooks.MAX_KEEP_HOURS, allow_inf_nan=False, description="the old secret signs this long too"
    )


class WebhookPublic(BaseModel):
    id: str
    url: str
    producer: str
    batch_id: str | None
    events: list[str]
    created_by: str
    created_at: datetime
    secrets: int = Field(description="live signing secrets (2 while a rotated-out one still signs)")
    messages: dict[str, int] = Field(description="messages by state: pending, delivered, gave_up")


class WebhookSecret(WebhookPublic):
    secret: str = Field(description="the signing secret (whsec_...): shown only now")


class AttemptPublic(BaseModel):
    number: int
    started_at: datetime
    seconds: float | None = Field(description="None: no answer recorded (the attempt is in flight, or was cut off)")
    status_code: int | None
    error: str | None


class MessagePublic(BaseModel):
    id: str = Field(description="the webhook-id header")
    type: str
    state: str
    payload: str
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    attempts: list[AttemptPublic]


def _public(endpoint: WebhookEndpoint, counts: dict[str, int]) -> dict:
    return dict(
        id=endpoint.id,
        url=endpoint.url,
        producer=endpoint.producer,
        batch_id=endpoint.batch_id,
        events=endpoint.events,
        created_by=endpoint.created_by,
        created_at=endpoint.created_at,
        secrets=len(webhooks.live_secrets(endpoint, utcnow())),
        messages=counts,
    )


def _live(session, endpoint_id: str) -> WebhookEndpoint:
    endpoint = webhooks.get(session, endpoint_id)
    if endpoint.disabled:
        raise NotFound(f"webhook endpoint {endpoint_id} was deleted", field="endpoint")
    return endpoint


@router.post("", status_code=201, response_model=WebhookSecret)
def create(body: WebhookCreate, user: Producer, session: SessionDep, settings: SettingsDep) -> WebhookSecret:
    """Register an endpoint for your takes (operators: anyone's), or one batch's. The answer
    holds its signing secret, shown only here; verify deliveries with any Standard Webhooks library."""
    batch = None
    if body.batch_id is not None:
        batch = session.get(Batch, body.batch_id)
        if batch is None:
            raise NotFound(f"batch {body.batch_id} not found", field="batch_id")
        check_manage(user, batch.producer, f"batch {batch.id}")
    producer = batch.producer if batch else submitter(user, body.producer)
    endpoint, secret = webhooks.register(
        session, settings, url=body.url, events=list(body.events), producer=producer, batch=batch, created_by=user.name
    )
    session.commit()
    return WebhookSecret(**_public(endpoint, {}), secret=secret)


@router.get("", response_model=list[WebhookPublic])
def list_endpoints(
    _user: Viewer, session: SessionDep, producer: Annotated[str | None, Query(max_length=100)] = None
) -> list[WebhookPublic]:
    """Live endpoints, newest first, with their messages counted by state."""
    found = webhooks.endpoints(session, producer)
    counts = webhooks.message_counts(session, [e.id for e in found])
    return [WebhookPublic(**_public(e, counts[e.id])) for e in found]


@router.get("/{endpoint_id}/messages", response_model=list[MessagePublic])
def list_messages(
    endpoint_id: str, _user: Viewer, session: SessionDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[MessagePublic]:
    """The endpoint's newest messages, each with every delivery attempt."""
    webhooks.get(session, endpoint_id)
    return [
        MessagePublic(
            id=m.id,
            type=m.type,
            state=m.state,
            payload=m.payload,
            created_at=m.created_at,
            next_attempt_at=m.next_attempt_at,
            delivered_at=m.delivered_at,
            attempts=[
                AttemptPublic(
                    number=a.number,
                    started_at=a.started_at,
                    seconds=a.seconds,
                    status_code=a.status_code,
                    error=a.error,
                )
                for a in tries
            ],
        )
        for m, tries in webhooks.messages(session, endpoint_id, limit)
    ]


@router.post("/{endpoint_id}/rotate", response_model=WebhookSecret)
def rotate(endpoint_id: str, body: WebhookRotate, user: Producer, session: SessionDep) -> WebhookSecret:
    """A new signing secret (shown only here); the old one signs too for `keep_old_hours`."""
    endpoint = _live(session, endpoint_id)
    check_manage(user, endpoint.producer, f"webhook endpoint {endpoint.id}")
    secret = webhooks.rotate(session, endpoint, body.keep_old_hours)
    session.commit()
    counts = webhooks.message_counts(session, [endpoint.id])
    return WebhookSecret(**_public(endpoint, counts[endpoint.id]), secret=secret)


@router.delete("/{endpoint_id}", status_code=204)
def delete(endpoint_id: str, user: Producer, session: SessionDep) -> Response:
    """Stop sending to the endpoint (its messages stay readable)."""
    endpoint = _live(session, endpoint_id)
    check_manage(user, endpoint.producer, f"webhook endpoint {endpoint.id}")
    endpoint.disabled = True
    session.commit()
    return Response(status_code=204)
