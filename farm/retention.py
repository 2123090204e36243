"""How long a long take's stored windows are kept.

A done take's windows are deleted by its worker once the clip is recorded
(workers/windows.py); one that delete missed goes at the scheduler's next pass. A failed or
canceled take keeps them for FARM_WINDOW_RETENTION_DAYS, so a retry resumes where it stopped;
after that, and at once for a take whose consent was withdrawn (it can never be rendered
again, and its latents carry the person's likeness), the scheduler's pass deletes them. The
count on the take goes to 0 first, in one guarded UPDATE, so an attempt that starts meanwhile
renders from the first window instead of reading one being deleted.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from .errors import StorageError
from .settings import Settings
from .storage import Storage, window_key
from .tables import Take, TakeState

log = logging.getLogger(__name__)

#: takes swept a pass at most: a backlog goes over the next passes, each pass stays short
BATCH = 200


def expired_windows(session: Session, settings: Settings, now: datetime) -> list[tuple[str, int]]:
    """Zero the count of the takes whose windows are no longer kept; (take id, windows to delete)."""
    old = now - timedelta(days=settings.window_retention_days)
    ended = and_(
        Take.state.in_((TakeState.failed, TakeState.canceled)),
        or_(Take.consent_withdrawn.is_not(None), and_(Take.finished_at.is_not(None), Take.finished_at < old)),
    )
    due = and_(Take.windows_saved > 0, or_(Take.state == TakeState.done, ended))
    stmt = (
        update(Take)
        .where(due, Take.id.in_(select(Take.id).where(due).order_by(Take.finished_at).limit(BATCH)))
        .values(windows_saved=0)
        .returning(Take.id, Take.progress_windows)
    )
    rows = session.execute(stmt.execution_options(synchronize_session=False))
    return [(take_id, windows) for take_id, windows in rows]


def delete_windows(storage: Storage, takes: list[tuple[str, int]]) -> int:
    """Delete each take's window objects; how many takes were cleared."""
    cleared = sum(delete_take_windows(storage, take_id, windows) for take_id, windows in takes)
    if takes:
        log.info("deleted the stored windows of %d ended long takes", cleared)
    return cleared


def delete_take_windows(storage: Storage, take_id: str, windows: int) -> bool:
    """Delete every window object of a take's plan (an attempt may have stored one past the
    count); True when all went. One that stays is logged: nothing counts it any more."""
    cleared = True
    for index in range(windows):
        try:
            storage.delete(window_key(take_id, index))
        except StorageError as exc:
            cleared = False
            log.warning("take %s: stored window %d not deleted (%s)", take_id, index + 1, exc)
    return cleared
