"""Webhooks: the farm tells a producer's pipeline when takes end and batches finish.

- Endpoints (`register`) receive the events of one producer's takes, or of one batch's:
  take.done, take.failed, take.canceled and batch.finished.
- The outbox (`collect`): the leader reads the takes that ended since its cursor (the
  record's own `updated_at`, re-read with an OVERLAP so a late commit is not missed) and
  writes one message per event and endpoint, once: an event's key is unique per endpoint.
  Messages are rows in Postgres, so a killed dispatcher loses none; its successor goes on.
- Delivery (`Outbox.deliver_once`): a due message is leased (attempt recorded, next try
  pushed past the timeout) in a committed transaction before it is sent, so a second leader
  never sends it at the same time; a 2xx marks it delivered and it is never sent again; any
  other answer, or none, schedules the next try, doubling from FARM_WEBHOOK_RETRY_BASE up to
  an hour, until FARM_WEBHOOK_RETRY_HOURS have passed (then it is given up).
- Signatures the Standard Webhooks way: headers webhook-id, webhook-timestamp and
  webhook-signature, "v1,<base64 HMAC-SHA256 of id.timestamp.body>" with every live secret
  (a rotated secret keeps signing for the hours asked, so receivers can switch over).
- Destinations must be public addresses: private, loopback, link-local and reserved ones are
  refused at registration and again before every send (DNS may change), unless they are in
  FARM_WEBHOOK_ALLOW_NETWORKS; redirects are not followed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import cast
from urllib.parse import urlsplit

import httpx
from sqlalchemy import CursorResult, and_, case, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from . import __version__, states
from .db import insert, transaction
from .errors import InvalidRequest, NotFound
from .settings import Settings
from .tables import (
    Batch,
    OutboxCursor,
    Take,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
    as_utc,
    utcnow,
)

log = logging.getLogger(__name__)

EVENTS = ("take.done", "take.failed", "take.canceled", "batch.finished")
TAKE_EVENTS = {states.S.done: "take.done", states.S.failed: "take.failed", states.S.canceled: "take.canceled"}
MESSAGE_STATES = ("pending", "delivered", "gave_up")
MAX_ENDPOINTS = 20  #: live endpoints per producer for all its takes
MAX_BATCH_ENDPOINTS = 4  #: live endpoints per batch
MAX_KEEP_HOURS = 168  #: a rotated-out secret signs at most this much longer
OVERLAP = timedelta(minutes=2)  #: the outbox re-reads this much before its cursor (late commits)
PASS_SIZE = 64  #: messages leased per delivery pass
SENDERS = 8  #: deliveries in flight at once
MAX_DELAY = 3600.0  #: seconds: the longest wait between two tries
ANSWER_BYTES = 200  #: of a failed attempt's answer, kept as its error
CURSOR = "takes"


# -- signing ------------------------------------------------------------------------------


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes them: whsec_ + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(signing: list[str], msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The request headers of one attempt, signed with every live secret."""
    return {
        "content-type": "application/json",
        "user-agent": f"humo-farm/{__version__}",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in signing),
    }


def live_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    return [
        s["secret"]
        for s in endpoint.secrets
        if s["expires_at"] is None or datetime.fromisoformat(s["expires_at"]) > now
    ]


# -- destinations -------------------------------------------------------------------------


def check_destination(url: str, settings: Settings, field: str = "url") -> None:
    """An http(s) URL whose host resolves only to public addresses, or to networks the
    operator allowed (FARM_WEBHOOK_ALLOW_NETWORKS); InvalidRequest(field) naming why not."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidRequest(field, f"not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(
            "url", "must be an http:// or https:// URL with a host, e.g. https://hooks.example.com/farm"
        )
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError) as exc:  # socket.gaierror among them
        raise InvalidRequest(field, f"{parts.hostname} does not resolve ({exc}); check the host name") from None
    allowed = [ipaddress.ip_network(n.strip()) for n in settings.webhook_allow_networks.split(",") if n.strip()]
    for text in sorted(found):
        address = ipaddress.ip_address(text.split("%")[0])
        if not address.is_global and not any(address in net for net in allowed):
            kind = "loopback" if address.is_loopback else "private" if address.is_private else "non-public"
            raise InvalidRequest(
                field,
                f"{parts.hostname} is {address}, a {kind} address; webhooks go to public addresses "
                "unless an operator allows the network with FARM_WEBHOOK_ALLOW_NETWORKS",
            )


# -- endpoints ----------------------------------------------------------------------------


def register(
    session: Session,
    settings: Settings,
    *,
    url: str,
    events: list[str],
    producer: str,
    batch: Batch | None,
    created_by: str,
    now: datetime | None = None,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (shown once)."""
    check_destination(url, settings)
    if batch is None:  # a batch's endpoints are bounded by the batch (MAX_BATCH_ENDPOINTS)
        live = session.execute(
            select(func.count()).where(
                WebhookEndpoint.producer == producer,
                WebhookEndpoint.batch_id.is_(None),
                WebhookEndpoint.disabled.is_(False),
            )
        ).scalar_one()
        if live >= MAX_ENDPOINTS:
            raise InvalidRequest("url", f"{producer} has {live} webhook endpoints, the most allowed; delete one first")
    else:
        live = session.execute(
            select(func.count()).where(WebhookEndpoint.batch_id == batch.id, WebhookEndpoint.disabled.is_(False))
        ).scalar_one()
        if live >= MAX_BATCH_ENDPOINTS:
            raise InvalidRequest("url", f"batch {batch.id} has {live} webhook endpoints, the most allowed")
    secret = new_secret()
    endpoint = WebhookEndpoint(
        url=url,
        producer=producer,
        batch_id=batch.id if batch else None,
        events=sorted(set(events), key=EVENTS.index),
        secrets=[{"secret": secret, "expires_at": None}],
        created_by=created_by,
        # a batch's endpoint hears everything of the batch, even what ended as it was registered
        created_at=batch.created_at if batch else now or utcnow(),
    )
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def get(session: Session, endpoint_id: str) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found", field="endpoint")
    return endpoint


def rotate(session: Session, endpoint: WebhookEndpoint, keep_hours: float, now: datetime | None = None) -> str:
    """A new secret signs from now on; the old ones go on signing for `keep_hours` (at most
    their own expiry), so a receiver can switch without missing a message."""
    now = now or utcnow()
    until = now + timedelta(hours=keep_hours)
    kept = []
    for s in endpoint.secrets:
        expires = None if s["expires_at"] is None else datetime.fromisoformat(s["expires_at"])
        expires = until if expires is None else min(expires, until)
        if expires > now:
            kept.append({"secret": s["secret"], "expires_at": expires.isoformat()})
    secret = new_secret()
    endpoint.secrets = [{"secret": secret, "expires_at": None}, *kept]
    return secret


def endpoints(session: Session, producer: str | None = None, limit: int = 200) -> list[WebhookEndpoint]:
    """Live endpoints, newest first (of one producer, or everyone's)."""
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.disabled.is_(False))
    if producer is not None:
        stmt = stmt.where(WebhookEndpoint.producer == producer)
    return list(session.execute(stmt.order_by(WebhookEndpoint.created_at.desc()).limit(limit)).scalars())


def message_counts(session: Session, endpoint_ids: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {e: {} for e in endpoint_ids}
    rows = session.execute(
        select(WebhookMessage.endpoint_id, WebhookMessage.state, func.count())
        .where(WebhookMessage.endpoint_id.in_(endpoint_ids))
        .group_by(WebhookMessage.endpoint_id, WebhookMessage.state)
    )
    for endpoint_id, state, n in rows:
        out[endpoint_id][state] = n
    return out


def messages(session: Session, endpoint_id: str, limit: int) -> list[tuple[WebhookMessage, list[WebhookAttempt]]]:
    """An endpoint's newest messages, each with its attempts in order."""
    found = list(
        session.execute(
            select(WebhookMessage)
            .where(WebhookMessage.endpoint_id == endpoint_id)
            .order_by(WebhookMessage.created_at.desc(), WebhookMessage.id)
            .limit(limit)
        ).scalars()
    )
    tries: dict[str, list[WebhookAttempt]] = {m.id: [] for m in found}
    for attempt in session.execute(
        select(WebhookAttempt).where(WebhookAttempt.message_id.in_(tries)).order_by(WebhookAttempt.number)
    ).scalars():
        tries[attempt.message_id].append(attempt)
    return [(m, tries[m.id]) for m in found]


# -- the outbox ---------------------------------------------------------------------------


def _body(kind: str, at: datetime, data: dict) -> str:
    return json.dumps({"type": kind, "timestamp": as_utc(at).isoformat(), "data": data}, separators=(",", ":"))


def collect(session: Session, now: datetime | None = None) -> int:
    """Write the messages of the takes that ended (and the batches that finished) since the
    cursor, once per event and endpoint; returns how many are new."""
    now = now or utcnow()
    cursor = session.get(OutboxCursor, CURSOR, with_for_update=True)
    live = _listening(session, None if cursor is None else as_utc(cursor.at) - OVERLAP)
    if not live:
        return 0
    start = as_utc(cursor.at) if cursor else min(as_utc(e.created_at) for e in live)
    producers = {e.producer for e in live if e.batch_id is None}
    batch_ids = {e.batch_id for e in live if e.batch_id is not None}
    rows = session.execute(
        select(
            Take.id,
            Take.batch_id,
            Take.producer,
            Take.state,
            Take.finished_at,
            Take.updated_at,
            Take.attempt_count,
            Take.error_class,
            Take.error_message,
        ).where(
            Take.updated_at > start - OVERLAP,
            Take.state.in_(states.FINISHED),
            or_(Take.producer.in_(producers), Take.batch_id.in_(batch_ids)),
        )
    ).all()
    wanted: list[dict] = []

    def subscribers(producer: str, batch_id: str, kind: str, at: datetime):
        for e in live:
            scoped = e.batch_id == batch_id if e.batch_id else e.producer == producer
            if scoped and kind in e.events and at >= as_utc(e.created_at):
                yield e

    for r in rows:
        at = as_utc(r.finished_at or r.updated_at)
        kind = TAKE_EVENTS[r.state]
        data = {
            "take_id": r.id,
            "batch_id": r.batch_id,
            "producer": r.producer,
            "state": r.state.value,
            "attempts": r.attempt_count,
            "error_class": r.error_class,
            "error_message": r.error_message,
        }
        for e in subscribers(r.producer, r.batch_id, kind, at):
            wanted.append(_message(e, f"{kind}:{r.id}:{at.isoformat()}", kind, _body(kind, at, data), now))
    wanted += _finished_batches(session, {(r.batch_id, r.producer) for r in rows}, subscribers, now)
    new = 0
    if wanted:
        result = session.execute(insert(session, WebhookMessage).values(wanted).on_conflict_do_nothing())
        new = max(0, cast(CursorResult, result).rowcount)
    latest = max((as_utc(r.updated_at) for r in rows), default=start)
    if cursor is None:
        session.add(OutboxCursor(name=CURSOR, at=latest))
    elif latest > start:
        cursor.at = latest
    return new


def _listening(session: Session, since: datetime | None) -> list[WebhookEndpoint]:
    """The live endpoints that may have events since `since`: every producer's, and those of
    the batches whose takes changed since then (None: all), so old batches' cost nothing."""
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.disabled.is_(False))
    if since is not None:
        changed = select(Take.batch_id).where(Take.updated_at > since)
        stmt = stmt.where(or_(WebhookEndpoint.batch_id.is_(None), WebhookEndpoint.batch_id.in_(changed)))
    return list(session.execute(stmt).scalars())


def _finished_batches(session: Session, batches: set[tuple[str, str]], subscribers, now: datetime) -> list[dict]:
    """batch.finished messages of the batches whose every take has ended."""
    if not batches:
        return []
    ended = states.FINISHED
    rows = session.execute(
        select(
            Take.batch_id,
            func.count(),
            func.sum(case((Take.state == states.S.done, 1), else_=0)),
            func.sum(case((Take.state == states.S.failed, 1), else_=0)),
            func.sum(case((Take.state == states.S.canceled, 1), else_=0)),
            func.sum(case((Take.state.in_(ended), 0), else_=1)),
            func.max(Take.finished_at),
        )
        .where(Take.batch_id.in_({b for b, _ in batches}))
        .group_by(Take.batch_id)
    ).all()
    producer_of = dict(batches)
    out = []
    for batch_id, n, done, failed, canceled, unfinished, last in rows:
        if unfinished or last is None:
            continue
        at = as_utc(last)
        data = {"batch_id": batch_id, "producer": producer_of[batch_id], "takes": n,
                "done": done, "failed": failed, "canceled": canceled}  # fmt: skip
        for e in subscribers(producer_of[batch_id], batch_id, "batch.finished", at):
            body = _body("batch.finished", at, data)
            out.append(_message(e, f"batch.finished:{batch_id}:{at.isoformat()}", "batch.finished", body, now))
    return out


def _message(endpoint: WebhookEndpoint, key: str, kind: str, body: str, now: datetime) -> dict:
    return {
        "id": f"msg_{uuid.uuid4().hex}",
        "endpoint_id": endpoint.id,
        "event_key": key,
        "type": kind,
        "payload": body,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def delay(attempts: int, settings: Settings) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling, at most MAX_DELAY."""
    return min(settings.webhook_retry_base * 2 ** max(0, attempts - 1), MAX_DELAY)


class Outbox:
    """The leader's delivery pass (farm.leader runs `deliver_once` every FARM_WEBHOOK_INTERVAL)."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings, clock: Callable[[], datetime] = utcnow):
        self.factory, self.settings, self.clock = factory, settings, clock
        self.pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="webhook")

    def deliver_once(self) -> int:
        """Collect new events, then try every due message once; returns how many were tried."""
        with transaction(self.factory) as session:
            collect(session, self.clock())
        leased = self._lease()
        list(self.pool.map(lambda job: self._send(*job), leased))
        return len(leased)

    def _lease(self) -> list[tuple[str, int, str, list[str], str]]:
        """Due messages, each with its attempt recorded and its next try pushed past the
        timeout, committed before anything is sent: (id, attempt, url, secrets, body)."""
        now = self.clock()
        # an attempt unanswered for twice its timeout (its sender died) is tried again
        lease = now + timedelta(seconds=2 * self.settings.webhook_timeout)
        with transaction(self.factory) as session:
            due = (
                select(WebhookMessage.id)
                .where(
                    WebhookMessage.state == "pending",
                    WebhookMessage.next_attempt_at <= now,
                    WebhookMessage.endpoint_id.in_(
                        select(WebhookEndpoint.id).where(WebhookEndpoint.disabled.is_(False))
                    ),
                )
                .order_by(WebhookMessage.next_attempt_at)
                .limit(PASS_SIZE)
            )
            taken = session.execute(
                update(WebhookMessage)
                .where(
                    WebhookMessage.id.in_(due.scalar_subquery()),
                    WebhookMessage.state == "pending",
                    WebhookMessage.next_attempt_at <= now,
                )
                .values(attempts=WebhookMessage.attempts + 1, next_attempt_at=lease)
                .returning(
                    WebhookMessage.id, WebhookMessage.attempts, WebhookMessage.endpoint_id, WebhookMessage.payload
                )
                .execution_options(synchronize_session=False)
            ).all()
            if not taken:
                return []
            by_id = {
                e.id: e
                for e in session.execute(
                    select(WebhookEndpoint).where(WebhookEndpoint.id.in_({t.endpoint_id for t in taken}))
                ).scalars()
            }
            jobs = []
            for t in taken:
                endpoint = by_id[t.endpoint_id]
                session.add(WebhookAttempt(message_id=t.id, number=t.attempts, started_at=now))
                jobs.append((t.id, t.attempts, endpoint.url, live_secrets(endpoint, now), t.payload))
        return jobs

    def _send(self, msg_id: str, number: int, url: str, signing: list[str], body: str) -> None:
        started = time.monotonic()
        status, error = None, None
        try:
            check_destination(url, self.settings)
            with httpx.stream(
                "POST",
                url,
                content=body.encode(),
                headers=headers(signing, msg_id, int(time.time()), body),
                timeout=self.settings.webhook_timeout,
                follow_redirects=False,  # a redirect could point anywhere, private networks too
            ) as response:
                status = response.status_code
                if not 200 <= status < 300:  # the start of its answer, never more (any size may come)
                    start = next(response.iter_bytes(ANSWER_BYTES), b"")[:ANSWER_BYTES]
                    text = start.decode(errors="replace").strip()
                    error = f"answered {status}: {text}" if text else f"answered {status}"
        except InvalidRequest as exc:
            error = f"refused: {exc.message}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        self._record(msg_id, number, status, error, time.monotonic() - started)

    def _record(self, msg_id: str, number: int, status: int | None, error: str | None, seconds: float) -> None:
        now = self.clock()
        with transaction(self.factory) as session:
            session.execute(
                update(WebhookAttempt)
                .where(and_(WebhookAttempt.message_id == msg_id, WebhookAttempt.number == number))
                .values(status_code=status, error=error, seconds=round(seconds, 3))
            )
            message = session.get(WebhookMessage, msg_id)
            if message is None or message.state != "pending":
                return
            if error is None:  # a 2xx, even after a later lease: it is never sent again
                message.state, message.delivered_at = "delivered", now
                return
            if message.attempts != number:
                return  # a later lease (this one ran past its timeout) decides what comes next
            after = now + timedelta(seconds=delay(number, self.settings))
            if after > as_utc(message.created_at) + timedelta(hours=self.settings.webhook_retry_hours):
                message.state = "gave_up"
                log.warning(
                    "webhook %s to %s: giving up after %d attempts (%s)", msg_id, message.endpoint_id, number, error
                )
            else:
                message.next_attempt_at = after
