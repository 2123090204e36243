"""Whether this worker may claim a delivered take: not while drained, not from a batch it keeps
failing while another serving worker of the pool is not blocked for that batch.

A refused take is handed back to the queue (the Celery task rejects it with requeue), where
another worker gets it; nothing is claimed or recorded.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from farm import fleet, states
from farm.db import run_with_retry
from farm.settings import Settings
from farm.tables import utcnow

from .errors import Declined, Draining

log = logging.getLogger(__name__)


def admit(factory: sessionmaker[Session], settings: Settings, pool: str, worker_id: str, take_id: str) -> None:
    """Raise Draining or Declined when this worker must hand the take back."""
    if run_with_retry(factory, lambda s: fleet.is_draining(s, worker_id), what="drain check"):
        log.info("take %s: this worker is draining; handing it back to the queue", take_id)
        raise Draining(take_id)
    threshold = settings.blocklist_failures  # 0: no blocklist

    def blocked(session: Session) -> bool:
        """It failed the take's batch `threshold` times within the blocklist window (failures it
        may have caused only), and another serving worker of the pool is not blocked for the
        batch. Declining must never leave the take to nobody: a lone worker, or one whose peers
        are all blocked for the batch too, keeps trying."""
        now = utcnow()
        since = now - timedelta(seconds=settings.blocklist_window)
        others = [w for w in fleet.serving_ids(session, pool, now, settings.worker_timeout) if w != worker_id]
        held = states.blocked_workers(session, take_id, [worker_id, *others], threshold, since)
        return worker_id in held and any(w not in held for w in others)

    if threshold and run_with_retry(factory, blocked, what="blocklist check"):
        log.warning("take %s: this worker failed its batch %d times; handing it to another worker", take_id, threshold)
        raise Declined(take_id)
