"""Nightly hero runs: the takes selected for hero become hero takes (same inputs and seed,
the hero checkpoint at its default size, pool hero, linked to their parent), once per night
per take, inside the night's window and GPU-hour budget.

`farm beat` runs a `Scheduler`: every beat_interval it makes sure it holds the one scheduler
lock (a Postgres advisory lock; a file lock on the embedded SQLite) and, while it does and
the clock is inside a night's window, runs `plan_night`. Planning is idempotent and safe
against a second scheduler all the same: the night's row is locked while it plans, and the
unique key (parent_id, hero_night) refuses a second hero take of a parent in one night.

One pass of `plan_night`:
1. unstarted hero takes of nights whose window has closed are canceled ("night ended"): a
   parent still selected competes again, in priority order, in tonight's budget;
2. once the night's recorded GPU seconds exceed its budget, the night stops: its unstarted
   takes are canceled ("over budget"), on this pass and every later one (a take retried
   after the night stopped is canceled again), and nothing more is planned;
3. otherwise selected takes without a hero take become hero takes, highest priority first,
   while their estimate fits what is left of the budget; the rest are skipped (counted on
   the night) and picked up on a later night if still selected.
The release loop releases a night's hero takes only inside that night's window.
"""

from .planning import PLANNED, STOPPED, candidates, close_ended, hero_take, plan_night
from .report import CLOSED, NightReport, night_takes, reports
from .scheduler import FileLock, PostgresLock, Scheduler, SchedulerLock, scheduler_lock, serve
from .window import next_night, night_at, window

__all__ = [
    "CLOSED",
    "PLANNED",
    "STOPPED",
    "FileLock",
    "NightReport",
    "PostgresLock",
    "Scheduler",
    "SchedulerLock",
    "candidates",
    "close_ended",
    "hero_take",
    "next_night",
    "night_at",
    "night_takes",
    "plan_night",
    "reports",
    "scheduler_lock",
    "serve",
    "window",
]
