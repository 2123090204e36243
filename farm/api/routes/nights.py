"""Nightly hero runs: what each night planned, ran, failed and cost; run the job now."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from ... import nightly
from ...errors import InvalidRequest, NotFound
from ...tables import Take, utcnow
from ..auth import Operator, Viewer
from ..deps import SessionDep, SettingsDep
from ..schemas import NightDetailPublic, NightTakePublic, TonightPublic

router = APIRouter(prefix="/nights", tags=["nights"])


def _detail(session, night: date) -> NightDetailPublic:
    found = nightly.reports(session, limit=1, night=night)
    if not found:
        raise NotFound(f"no hero run for {night}; nights appear once the nightly job has run for them", field="night")
    takes = [_night_take(t, seconds) for t, seconds in nightly.night_takes(session, night)]
    return NightDetailPublic(**asdict(found[0]), hero_takes=takes)


def _night_take(t: Take, seconds: float) -> NightTakePublic:
    assert t.parent_id is not None, f"hero take {t.id} has no parent"  # the planner always sets it
    return NightTakePublic(
        id=t.id,
        parent_id=t.parent_id,
        producer=t.producer,
        prompt=t.params.get("prompt"),
        seed=t.params.get("seed"),
        state=t.state.value,
        priority=t.priority,
        gpu_seconds=seconds,
        error_class=t.error_class,
        error_message=t.error_message,
    )


@router.get("", response_model=list[nightly.NightReport])
def list_nights(
    _user: Viewer, session: SessionDep, limit: Annotated[int, Query(ge=1, le=366)] = 60
) -> list[nightly.NightReport]:
    """The latest nights, newest first: takes planned, skipped over budget, their states and GPU hours."""
    return nightly.reports(session, limit)


@router.get("/tonight", response_model=TonightPublic)
def tonight(_user: Viewer, settings: SettingsDep) -> TonightPublic:
    """The night whose window is open now, or the next one to open: what "plan now" plans."""
    now = utcnow()
    night = nightly.next_night(now, settings)
    start, end = nightly.window(night, settings)
    return TonightPublic(
        night=night, window_start=start, window_end=end, open=start <= now < end,
        budget_gpu_hours=settings.nightly_budget_gpu_hours,
    )  # fmt: skip


@router.get("/{night}", response_model=NightDetailPublic)
def get_night(night: date, _user: Viewer, session: SessionDep) -> NightDetailPublic:
    """One night with each of its hero takes."""
    return _detail(session, night)


@router.post("/{night}/plan", response_model=NightDetailPublic)
def plan_night(
    night: date, _user: Operator, session: SessionDep, settings: SettingsDep, force: bool = False
) -> NightDetailPublic:
    """Run the nightly job for this night now, as `farm beat` does inside the window. Before
    the window opens it runs only with force=true; the night's hero takes still start only
    inside its window."""
    now = utcnow()
    if abs((night - now.date()).days) > 366:
        raise InvalidRequest("night", f"{night} is more than a year away; plan tonight or a night soon")
    if nightly.plan_night(session, settings, night, now, force=force) is None:
        start, end = nightly.window(night, settings)
        if now >= end:
            raise InvalidRequest(
                "night", f"the window of night {night} closed at {end.isoformat()}; plan tonight or a later night"
            )
        raise InvalidRequest(
            "force",
            f"the window of night {night} opens at {start.isoformat()}; pass "
            "force=true to plan it now (its takes still start only inside the window)",
        )
    session.commit()
    return _detail(session, night)
