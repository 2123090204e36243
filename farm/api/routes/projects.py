"""Projects: what batches are filed under (filter takes and batches with `project=`)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from ... import projects
from ..auth import Viewer
from ..deps import SessionDep
from ..schemas import ProjectPublic

router = APIRouter(prefix="/projects", tags=["projects"])


@router.get("", response_model=list[ProjectPublic])
def list_projects(_user: Viewer, session: SessionDep) -> list[ProjectPublic]:
    """Projects with how many batches each holds, the one used last first."""
    return [ProjectPublic(**asdict(p)) for p in projects.listed(session)]
