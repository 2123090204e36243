"""The soak benchmark in a short setting: kills during a run lose and duplicate nothing."""

from __future__ import annotations

import sys

from ..services import REDIS_URL, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))


def test_short_soak_with_sigkills_keeps_every_invariant(clean, s3_endpoint, weights):
    import soak

    result = soak.run(
        takes=30,
        workers=3,
        kill_every=3.0,
        timeout=600,
        redis_url=REDIS_URL,
        s3_endpoint=s3_endpoint,
        weights=str(weights),
    )
    assert result["kills"] >= 2, result  # the faults really happened
    assert result["problems"] == {k: 0 for k in result["problems"]}, result
    assert result["lost_takes"] == 0 and result["duplicated"] == 0
