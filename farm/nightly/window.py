"""A night's window: when hero takes of a night may plan and start (settings' local time)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..settings import Settings


def window(night: date, settings: Settings) -> tuple[datetime, datetime]:
    """The night's window as instants: it opens on `night` (local time) and closes the next
    morning when the end is not after the start."""
    zone = ZoneInfo(settings.nightly_timezone)
    opens, closes = time.fromisoformat(settings.nightly_window_start), time.fromisoformat(settings.nightly_window_end)
    start = datetime.combine(night, opens, zone)
    end = datetime.combine(night + timedelta(days=1) if closes <= opens else night, closes, zone)
    return start, end


def night_at(now: datetime, settings: Settings) -> date | None:
    """The night whose window holds `now`; None between windows."""
    today = now.astimezone(ZoneInfo(settings.nightly_timezone)).date()
    for night in (today - timedelta(days=1), today):
        start, end = window(night, settings)
        if start <= now < end:
            return night
    return None


def next_night(now: datetime, settings: Settings) -> date:
    """The night whose window holds `now`, else the next one to open."""
    night = night_at(now, settings)
    if night is not None:
        return night
    today = now.astimezone(ZoneInfo(settings.nightly_timezone)).date()
    return today if now < window(today, settings)[0] else today + timedelta(days=1)
