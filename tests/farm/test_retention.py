"""Stored windows are kept while a retry may resume from them, and no longer (farm/retention.py),
on the real database and a local store, through the scheduler's pass."""

from __future__ import annotations

import io
from datetime import timedelta

from farm.db import get_engine, transaction
from farm.nightly import PostgresLock, Scheduler
from farm.storage import LocalStorage, window_key
from farm.tables import Take, TakeState, utcnow

from ..helpers import make_batch

LONG = {"prompt": "long", "mode": "T", "steps": 2, "width": 64, "height": 48, "frames": 417}  # 5 windows


def test_the_beat_deletes_windows_no_retry_will_use(sessions, clean, tmp_path):
    now = utcnow()
    cases = {  # name: (state, ended days ago, consent withdrawn) -> kept?
        "failed long ago": (TakeState.failed, 8, None, False),
        "canceled yesterday": (TakeState.canceled, 1, None, True),
        "canceled, consent withdrawn": (TakeState.canceled, 1, "consent record revoked", False),
        "running": (TakeState.running, None, None, True),
        "done (its worker's delete missed)": (TakeState.done, 0, None, False),
    }
    ids = dict(zip(cases, make_batch(sessions, clean, [{**LONG, "seed": i} for i in range(len(cases))]), strict=True))
    storage = LocalStorage(tmp_path)
    with transaction(sessions) as s:
        for name, (state, days, withdrawn, _) in cases.items():
            take = s.get_one(Take, ids[name])
            take.state, take.consent_withdrawn = state, withdrawn
            take.finished_at = None if days is None else now - timedelta(days=days)
            take.windows_saved, take.progress_windows = 3, 5
    for take_id in ids.values():
        for i in range(4):  # one past the count: an attempt may have stored one more
            storage.put_stream(window_key(take_id, i), io.BytesIO(b"latents"), "application/octet-stream")

    beat = Scheduler(sessions, clean, PostgresLock(get_engine(clean.database), "beat"), storage=storage)
    try:
        beat.tick()
        beat.tick()  # nothing left to do: the counts are 0
    finally:
        beat.lock.release()
    with sessions() as s:
        saved = {name: s.get_one(Take, ids[name]).windows_saved for name in cases}
    kept = {name: any(storage.exists(window_key(ids[name], i)) for i in range(4)) for name in cases}
    assert kept == {name: case[3] for name, case in cases.items()}
    assert all(not storage.exists(window_key(ids[n], i)) for n in kept if not kept[n] for i in range(4))
    assert saved == {name: 3 if case[3] else 0 for name, case in cases.items()}
