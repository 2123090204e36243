"""The dashboard's change feed on the real database: big batches, and what it sends."""

from __future__ import annotations

from farm import states
from farm.api.events import ChangeFeed
from farm.db import transaction

from ..helpers import make_batch


def test_a_change_after_a_huge_batch_is_still_sent(sessions, clean):
    """A 6,000-take sweep shares one updated_at: the feed pages through it and goes on."""
    feed = ChangeFeed(sessions)
    [early] = make_batch(sessions, clean, [{"prompt": "early", "mode": "T"}])
    feed.poll()
    sweep = make_batch(sessions, clean, [], sweep={"prompts": ["many"], "seed_count": 6000}, defaults={"mode": "T"})
    first = {c["id"] for c in feed.poll()}
    assert set(sweep) <= first  # all of them, past the page size
    with transaction(sessions) as s:
        states.reprioritise(s, early, 7)
    changes = feed.poll()
    assert [(c["id"], c["priority"]) for c in changes] == [(early, 7)]  # only what changed since
    assert feed.poll() == []
