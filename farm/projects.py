"""Projects: the names batches are filed under, with how much each holds."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .tables import Batch, Project, Take

MAX_LISTED = 500  #: projects one answer lists, the most recently used first


@dataclass(frozen=True)
class ProjectRow:
    name: str
    batches: int
    takes: int


def listed(session: Session, limit: int = MAX_LISTED) -> list[ProjectRow]:
    """Projects that hold a batch, the one used last first."""
    per_batch = (
        select(Take.batch_id, func.count().label("n")).group_by(Take.batch_id).subquery()
    )  # takes per batch, counted once
    rows = session.execute(
        select(Project.name, func.count(Batch.id), func.coalesce(func.sum(per_batch.c.n), 0))
        .join(Batch, Batch.project_id == Project.id)
        .outerjoin(per_batch, per_batch.c.batch_id == Batch.id)
        .group_by(Project.id, Project.name)
        .order_by(func.max(Batch.created_at).desc(), Project.name)
        .limit(limit)
    )
    return [ProjectRow(name, batches, int(takes)) for name, batches, takes in rows]
