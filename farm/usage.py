"""GPU time: the seconds recorded by attempts, summed in SQL (written here only).

An attempt records wall seconds times the GPUs it held (a hero group holds several), so a
sum is GPU seconds whatever the pool.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from .tables import Attempt, Take


@dataclass(frozen=True)
class Usage:
    gpu_seconds: float
    attempts: int


def by(
    session: Session,
    *keys: ColumnElement[Any] | Any,
    where: Iterable[ColumnElement[bool]] = (),
    since: datetime | None = None,
) -> dict[Any, Usage]:
    """Usage grouped by columns of Attempt or Take (a tuple key for several columns),
    optionally only of attempts started since a time."""
    stmt = (
        select(*keys, func.coalesce(func.sum(Attempt.gpu_seconds), 0.0), func.count())
        .select_from(Attempt)
        .join(Take, Take.id == Attempt.take_id)
        .where(*where)
    )
    if since is not None:
        stmt = stmt.where(Attempt.started_at >= since)
    out = {}
    for *key, seconds, n in session.execute(stmt.group_by(*keys)):
        out[tuple(key) if len(keys) > 1 else key[0]] = Usage(float(seconds or 0.0), int(n))
    return out


def total(session: Session, where: Iterable[ColumnElement[bool]] = ()) -> float:
    """GPU seconds of every attempt matching `where` (columns of Attempt or Take)."""
    return float(
        session.execute(
            select(func.coalesce(func.sum(Attempt.gpu_seconds), 0.0))
            .select_from(Attempt)
            .join(Take, Take.id == Attempt.take_id)
            .where(*where)
        ).scalar_one()
    )
