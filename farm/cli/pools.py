"""What operators see and do from a shell on the dispatcher: `farm workers` (and drain,
resume) and `farm pools`, read from the farm's record."""

from __future__ import annotations

import json
from contextlib import contextmanager

from .. import fleet, metrics
from ..affinity import parse_stack_key
from ..errors import FarmError
from ..leader import holder
from ..tables import utcnow


@contextmanager
def _record():
    """(settings, session) on the farm's database, for the operator commands that read it
    directly like `farm db` (run them where the dispatcher runs); one line if it is away."""
    from sqlalchemy.exc import DBAPIError

    from ..db import session_factory
    from ..settings import get_settings, redact

    settings = get_settings()
    try:
        with session_factory(settings.database)() as session:
            yield settings, session
    except DBAPIError as exc:
        reason = (str(exc.orig).strip().splitlines() or [""])[0]
        raise SystemExit(
            f"error: database: cannot read the farm's record at {redact(settings.database)} "
            f"({type(exc.orig).__name__}: {reason}); check FARM_DATABASE_URL and run `farm db upgrade`"
        ) from None


def _table(rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = (f"{v:>{w}}" if isinstance(v, int) else f"{v:<{w}}" for v, w in zip(r, widths))
        print("  ".join(cells).rstrip())


def cmd_workers(args) -> int:
    """List the workers, or drain one (it finishes its take and claims no new one) or resume it."""
    from dataclasses import asdict

    if args.action in ("drain", "resume"):
        return _drain(args.worker, args.action == "drain")
    with _record() as (settings, session):
        rows = fleet.workers(session, utcnow(), settings.worker_timeout, seen=None if args.all else fleet.SEEN)
    # a cleanly stopped worker is history: only --all lists it (a dead one stays: it crashed)
    rows = [w for w in rows if args.pool in (None, w.pool) and (args.all or w.state != "stopped")]
    if args.json:
        print(json.dumps([asdict(w) for w in rows], indent=2))
    elif not rows:
        print("no workers" + ("" if args.all else f" seen in the last {fleet.SEEN / 3600:g} h (--all: every one)"))
    else:
        _table(
            [("ID", "POOL", "HOST", "GPU", "HEARTBEAT", "TAKE", "STATE", "HOLDS")]
            + [(w.id, w.pool, w.host, w.gpu, fleet.ago(w.heartbeat_age), w.current_take_id or "-", w.state,
                _holds(w.holding)) for w in rows]
        )  # fmt: skip
    return 0


def _holds(key: str | None) -> str:
    """What a worker's DiT holds, short: the checkpoint, then each LoRA's hash prefix @ strength."""
    if key is None:
        return "-"
    held = parse_stack_key(key)
    return " + ".join([held["checkpoint"], *(f"{u['sha256'][:8]}@{u['strength']:g}" for u in held["loras"])])


def _drain(worker_id: str, drain: bool) -> int:
    """Drain sets the worker's `stopped` flag while it lives: the release loop counts it out,
    and the worker hands back any take delivered to it; resume clears the flag."""
    with _record() as (settings, session):
        try:
            worker = fleet.find(session, worker_id)
            changed = fleet.set_draining(session, worker, drain, utcnow(), settings.worker_timeout)
        except FarmError as exc:
            raise SystemExit(f"error: {exc}") from None
        session.commit()
    print(fleet.drained_words(worker, drain, changed))  # the API's words too
    return 0


def cmd_pools(args) -> int:
    """Per pool: live workers and their slots, draining workers, and the takes waiting and running."""
    from dataclasses import asdict

    with _record() as (settings, session):
        figures = metrics.pools(session, utcnow(), settings.worker_timeout)
        leader = holder(settings, "release")
    if args.json:
        print(json.dumps({p.pool: {**asdict(p), "depth": p.depth} for p in figures}, indent=2))
        return 0
    _table(
        [("POOL", "WORKERS", "SLOTS", "DRAINING", "QUEUED", "RELEASED", "RUNNING", "DEPTH")]
        + [(p.pool, p.workers, p.slots, p.draining, p.queued, p.released, p.running, p.depth) for p in figures]
    )
    print(f"release leader: {leader}" if leader else "release leader: none (no `farm up` holds the release lock)")
    return 0
