"""The hero rank group on 2 gloo CPU ranks: a dead rank or a missed deadline costs one take."""

import os
import signal
import time
from dataclasses import replace

import pytest

from models import InputError, RenderCanceled, RenderRequest
from workers.hero_group import GroupFailed, RankGroup


@pytest.fixture(scope="module")
def group(weights):
    with RankGroup("tiny", weights, 2, device="cpu", load_timeout=120, take_timeout=120) as g:
        yield g


@pytest.fixture
def request_(media):
    return RenderRequest(prompt="a presenter talks to camera", mode="TA", audio=str(media["audio"]), seed=5, steps=2)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_for(condition, seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "condition not reached in time"


def test_a_take_reports_every_step_and_returns_the_clip(group, request_):
    steps = []
    result = group.render(request_, lambda i, n: steps.append((i, n)))
    assert steps == [(1, 2), (2, 2)]
    assert result.video.shape == (3, 17, 48, 64)


def test_a_long_take_reports_its_windows_and_resumes_after_those_given(group, request_, media):
    """A 3-window take on the group: rank 0 hands back each finished window's latents; given
    the first two back, the group renders only the third and ends on the same frames."""
    long = replace(request_, frames=257, width=64, height=48)  # 25 + 20 + 20 latent frames
    windows, steps = [], []
    whole = group.render(long, lambda i, n: steps.append(i), on_window=lambda i, n, lat: windows.append((i, n, lat)))
    assert [(i, n, tuple(lat.shape)) for i, n, lat in windows] == [(i, 3, (16, 25, 6, 8)) for i in range(3)]
    assert steps == list(range(1, 7))
    later = []
    resumed = group.render(
        long, lambda i, n: later.append(i), resume=[lat for _, _, lat in windows[:2]],
        on_window=lambda i, n, lat: later.append(("window", i)),
    )  # fmt: skip
    assert later == [5, 6, ("window", 2)]  # window 3's steps only
    assert resumed.engine["windows"]["resumed_at"] == 2
    assert resumed.frames_sha256 == whole.frames_sha256


def test_a_rank_killed_mid_take_fails_the_take_and_the_group_respawns(group, request_):
    old = group.pids

    def kill_rank_1(i, n):
        if i == 1:
            os.kill(old[1], signal.SIGKILL)

    with pytest.raises(GroupFailed, match=r"rank 1 died while rendering \(exit code -9\)"):
        group.render(request_, kill_rank_1)
    assert all(gone(pid) for pid in old)  # every rank, not only the one that died
    result = group.render(request_)  # the retry runs on the fresh group
    assert set(group.pids).isdisjoint(old) and len(group.pids) == 2
    assert result.video.shape == (3, 17, 48, 64)


def test_a_take_past_its_deadline_kills_the_group_and_the_next_take_completes(group, request_):
    old = group.pids
    endless = replace(request_, steps=1000)  # far longer than the deadline
    start = time.monotonic()
    with pytest.raises(GroupFailed, match="deadline"):
        group.render(endless, timeout=2)
    assert time.monotonic() - start >= 2
    assert all(gone(pid) for pid in old)
    assert group.render(request_).video.shape == (3, 17, 48, 64)
    assert set(group.pids).isdisjoint(old)


def test_a_rank_dead_between_takes_is_replaced_before_the_next_take(group, request_):
    old = group.pids
    os.kill(old[0], signal.SIGKILL)
    wait_for(lambda: not group.alive())
    assert group.render(request_).video.shape == (3, 17, 48, 64)
    assert set(group.pids).isdisjoint(old)


def test_on_step_stops_every_rank_at_the_same_step_and_the_group_stays(group, request_):
    old, seen = group.pids, []

    def cancel_at_one(i, n):
        seen.append(i)
        raise RenderCanceled("take canceled")

    with pytest.raises(RenderCanceled, match="take canceled"):
        group.render(replace(request_, steps=4), cancel_at_one)
    assert seen == [1] and group.pids == old
    assert group.render(request_).video.shape == (3, 17, 48, 64)  # still in step


def test_a_bad_request_fails_before_it_reaches_the_ranks(group, request_):
    old = group.pids
    with pytest.raises(InputError, match="checkpoint: this group holds tiny"):
        group.render(replace(request_, checkpoint="tiny-concat"))
    with pytest.raises(InputError, match="frames"):
        group.render(replace(request_, frames=18))
    assert group.pids == old and group.alive()


def test_close_ends_every_rank(group, request_):
    pids = group.pids
    group.close()
    assert all(gone(pid) for pid in pids) and group.pids == []
