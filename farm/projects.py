"""Projects: the names batches are filed under, with how many batches each holds."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .tables import Batch, Project

MAX_LISTED = 500  #: projects one answer lists, the most recently used first


@dataclass(frozen=True)
class ProjectRow:
    name: str
    batches: int


def listed(session: Session, limit: int = MAX_LISTED) -> list[ProjectRow]:
    """Projects that hold a batch, the one used last first. Counted from batches alone: the
    takes page reads it on every visit, and a farm holds far fewer batches than takes."""
    rows = session.execute(
        select(Project.name, func.count(Batch.id))
        .join(Batch, Batch.project_id == Project.id)
        .group_by(Project.id, Project.name)
        .order_by(func.max(Batch.created_at).desc(), Project.name)
        .limit(limit)
    )
    return [ProjectRow(name, batches) for name, batches in rows]
