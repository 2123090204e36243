"""Live progress for the dashboard: one change feed per dispatcher process, pushed to
browsers as server-sent events.

Workers write progress to the takes table. Rather than every open dashboard polling the
API, one poller per process reads the takes changed since its last look (an index on
updated_at keeps that cheap with any number of takes) and hands each subscriber the
changes it asked for. Clocks of workers and dispatcher may differ slightly, so the poller
looks back a few seconds and drops what it already sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Row, func, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from ..live import progress
from ..tables import Take, as_utc, utcnow

log = logging.getLogger(__name__)
LOOKBACK = timedelta(seconds=5)  #: writers' clocks (NTP-synced) may differ by less than this
PAGE = 5000
KEEPALIVE = 15.0  #: seconds between comments that keep proxies from closing an idle stream


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue
    batch_id: str | None = None
    producer: str | None = None

    def wants(self, change: dict) -> bool:
        return (self.batch_id is None or change["batch_id"] == self.batch_id) and (
            self.producer is None or change["producer"] == self.producer
        )


@dataclass
class ChangeFeed:
    sessions: sessionmaker[Session]
    interval: float = 0.5
    subscribers: set[Subscriber] = field(default_factory=set)
    _seen: dict[str, tuple] = field(default_factory=dict)
    _mark: datetime | None = None
    _task: asyncio.Task | None = None

    def subscribe(self, batch_id: str | None = None, producer: str | None = None) -> Subscriber:
        sub = Subscriber(asyncio.Queue(maxsize=10_000), batch_id, producer)
        self.subscribers.add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while self.subscribers:  # nobody listening: no queries
            try:
                changes = await asyncio.to_thread(self.poll)
            except Exception:  # a database restart: keep the streams open, try again
                log.warning("change feed: poll failed", exc_info=True)
                changes = []
            for change in changes:
                for sub in list(self.subscribers):
                    if sub.wants(change) and not sub.queue.full():
                        sub.queue.put_nowait(change)
            await asyncio.sleep(self.interval)
        self._task = None

    def poll(self) -> list[dict]:
        """The takes whose visible state changed since the last poll."""
        stmt = select(
            Take.id,
            Take.batch_id,
            Take.producer,
            Take.state,
            Take.progress_step,
            Take.progress_total,
            Take.progress_windows,
            Take.windows_saved,
            Take.selected_for_hero,
            Take.priority,
            Take.cancel_requested,
            Take.attempt_count,
            Take.error_class,
            Take.created_at,
            Take.updated_at,
        )
        with self.sessions() as session:
            if self._mark is None:  # first look: from the newest change (re-sending a few is harmless)
                latest = session.execute(select(func.max(Take.updated_at))).scalar()
                self._mark = min(as_utc(latest), utcnow()) if latest is not None else utcnow()
            rows: list[Row] = []
            after: tuple[datetime, str] | None = None
            while True:  # page by (updated_at, id): a 20,000-take batch shares one updated_at
                stmt_page = stmt.where(Take.updated_at >= self._mark - LOOKBACK)
                if after is not None:
                    stmt_page = stmt_page.where(tuple_(Take.updated_at, Take.id) > after)
                page = session.execute(stmt_page.order_by(Take.updated_at, Take.id).limit(PAGE)).all()
                rows.extend(page)
                if len(page) < PAGE:
                    break
                after = (page[-1].updated_at, page[-1].id)
        changes = []
        for row in rows:
            sig = _signature(row)
            if self._seen.get(row.id) != sig:
                self._seen[row.id] = sig
                changes.append(
                    {
                        "id": row.id,
                        "batch_id": row.batch_id,
                        "producer": row.producer,
                        "state": row.state.value,
                        "selected_for_hero": row.selected_for_hero,
                        "priority": row.priority,
                        "cancel_requested": row.cancel_requested,
                        "attempt_count": row.attempt_count,
                        "error_class": row.error_class,
                        "created_at": as_utc(row.created_at).isoformat(),
                        "progress": progress(row),  # as GET /takes has it: a long take's window too
                    }
                )
            # never past our own clock: one writer's fast clock must not hide everyone else's changes
            self._mark = max(self._mark, min(as_utc(row.updated_at), utcnow()))
        if len(self._seen) > 50_000:  # forget the oldest half; they are outside the look-back by now
            for key in list(self._seen)[: len(self._seen) // 2]:
                del self._seen[key]
        return changes


def _signature(row) -> tuple:
    return (
        row.state,
        row.progress_step,
        row.progress_total,
        row.progress_windows,
        row.windows_saved,
        row.selected_for_hero,
        row.priority,
        row.cancel_requested,
        row.attempt_count,
    )


async def stream(request, feed: ChangeFeed, batch_id: str | None, producer: str | None):
    """The SSE body: `event: take` per change, a comment now and then to keep it open."""
    sub = feed.subscribe(batch_id, producer)
    try:
        yield "retry: 2000\n: connected\n\n"
        while not await request.is_disconnected():
            try:
                change = await asyncio.wait_for(sub.queue.get(), KEEPALIVE)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            yield f"event: take\ndata: {json.dumps(change)}\n\n"
    finally:
        feed.unsubscribe(sub)
