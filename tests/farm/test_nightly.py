"""Nightly hero runs on real Postgres: once per night per take, the window, the budget,
the report, and one scheduler at a time."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from farm import states
from farm.db import get_engine, transaction
from farm.nightly import FileLock, PostgresLock, Scheduler, candidates, night_at, plan_night, window
from farm.queue import make_celery
from farm.release import Releaser
from farm.tables import Asset, HeroNight, Take, TakeState, Worker

from ..helpers import make_batch
from ..services import ROOT, settings_env, wait_for

UTC = UTC
NIGHT = date(2030, 1, 7)
INSIDE = datetime(2030, 1, 7, 23, 0, tzinfo=UTC)  #: the window is 22:00-06:00 UTC
OUTSIDE = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)
IMAGE, AUDIO = "a" * 64, "b" * 64
HOURS_PER_TAKE = 0.5  #: 50 steps x 36 s, 97 frames, one GPU


@pytest.fixture
def nightly(clean):
    """Settings with a known window and estimate; no nights recorded."""
    with get_engine(clean.database).begin() as conn:
        conn.execute(text("TRUNCATE hero_nights CASCADE"))
    return clean.model_copy(
        update={
            "nightly_window_start": "22:00",
            "nightly_window_end": "06:00",
            "nightly_timezone": "UTC",
            "nightly_budget_gpu_hours": 10.0,
            "hero_step_seconds": 36.0,
            "hero_gpus": 1,
            "beat_interval": 0.1,
        }
    )


def selected(sessions, settings, priorities: list[int], producer: str = "ana") -> list[str]:
    """Finished explore takes (image + audio) selected for hero, one per priority."""
    with transaction(sessions) as session:
        for sha, kind in ((IMAGE, "image"), (AUDIO, "audio")):
            if session.get(Asset, sha) is None:
                session.add(Asset(sha256=sha, kind=kind, size=1, key=f"assets/{sha}", filename=kind, media_format="x"))
    ids = make_batch(
        sessions,
        settings,
        [
            {"prompt": f"take {i}", "seed": 100 + i, "image": IMAGE, "audio": AUDIO, "mode": "TIA", "priority": p}
            for i, p in enumerate(priorities)
        ],
        producer=producer,
    )
    with transaction(sessions) as session:
        session.execute(update(Take).where(Take.id.in_(ids)).values(state=TakeState.done, selected_for_hero=True))
    return ids


def plan(sessions, settings, night=NIGHT, now=INSIDE, **kw) -> HeroNight | None:
    with transaction(sessions) as session:
        return plan_night(session, settings, night, now, **kw)


def heroes(sessions, night=NIGHT) -> list[Take]:
    with sessions() as session:
        return list(session.execute(select(Take).where(Take.hero_night == night).order_by(Take.created_at)).scalars())


def test_the_window_and_the_night_of_a_moment(nightly):
    assert window(NIGHT, nightly) == (INSIDE.replace(hour=22), datetime(2030, 1, 8, 6, 0, tzinfo=UTC))
    assert night_at(INSIDE, nightly) == NIGHT
    assert night_at(datetime(2030, 1, 8, 5, 59, tzinfo=UTC), nightly) == NIGHT
    assert night_at(datetime(2030, 1, 8, 6, 0, tzinfo=UTC), nightly) is None
    assert night_at(OUTSIDE, nightly) is None
    paris = nightly.model_copy(
        update={"nightly_timezone": "Europe/Paris", "nightly_window_start": "01:00", "nightly_window_end": "05:00"}
    )
    assert night_at(datetime(2030, 1, 7, 0, 30, tzinfo=UTC), paris) == NIGHT  # 01:30 in Paris


def test_planning_twice_makes_one_set_of_hero_takes_with_the_parents_inputs(nightly, sessions):
    parents = selected(sessions, nightly, [0, 0, 0])
    first = plan(sessions, nightly)
    again = plan(sessions, nightly, now=INSIDE + timedelta(hours=1))
    assert (first.planned, again.planned) == (3, 3)
    takes = heroes(sessions)
    assert sorted(t.parent_id for t in takes) == sorted(parents)
    with sessions() as session:
        for hero in takes:
            parent = session.get(Take, hero.parent_id)
            assert (hero.checkpoint, hero.pool, hero.state) == ("humo-17b", "hero", TakeState.queued)
            assert (hero.params["width"], hero.params["height"]) == (1280, 720)
            for key in ("prompt", "seed", "mode"):
                assert hero.params[key] == parent.params[key]
            assert (hero.image_sha256, hero.audio_sha256) == (IMAGE, AUDIO)
            assert hero.producer == parent.producer == "ana"
        night = session.get(HeroNight, NIGHT)
        assert night.estimated_gpu_hours == pytest.approx(3 * HOURS_PER_TAKE)


def test_racing_planners_make_one_set(nightly, sessions):
    parents = selected(sessions, nightly, [0] * 5)
    barrier, results, errors = threading.Barrier(4), [], []

    def run():
        try:
            barrier.wait(10)
            results.append(plan(sessions, nightly))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(results) == 4
    assert sorted(t.parent_id for t in heroes(sessions)) == sorted(parents)
    with sessions() as session:
        assert session.get(HeroNight, NIGHT).planned == 5


def test_the_database_refuses_a_second_hero_take_of_a_parent_in_one_night(nightly, sessions):
    selected(sessions, nightly, [0])
    plan(sessions, nightly)
    hero = heroes(sessions)[0]
    with pytest.raises(IntegrityError), transaction(sessions) as session:
        session.add(
            Take(
                batch_id=hero.batch_id,
                producer="ana",
                checkpoint="humo-17b",
                pool="hero",
                params=hero.params,
                parent_id=hero.parent_id,
                hero_night=NIGHT,
            )
        )


def test_outside_the_window_nothing_happens(nightly, sessions):
    selected(sessions, nightly, [0, 0])
    assert plan(sessions, nightly, now=OUTSIDE) is None
    assert plan(sessions, nightly, now=datetime(2030, 1, 8, 6, 0, tzinfo=UTC)) is None  # closed
    assert plan(sessions, nightly, now=datetime(2030, 1, 8, 7, 0, tzinfo=UTC), force=True) is None
    with sessions() as session:
        assert session.execute(select(func.count()).select_from(HeroNight)).scalar_one() == 0
    assert heroes(sessions) == []
    assert plan(sessions, nightly, now=OUTSIDE, force=True).planned == 2  # an operator, before it opens


def test_the_budget_plans_by_priority_and_skips_the_rest_for_a_later_night(nightly, sessions):
    settings = nightly.model_copy(update={"nightly_budget_gpu_hours": 1.2})
    parents = selected(sessions, settings, [0, 5, 1, 3])
    night = plan(sessions, settings)
    assert (night.planned, night.skipped_over_budget) == (2, 2)
    assert night.estimated_gpu_hours == pytest.approx(2 * HOURS_PER_TAKE)
    assert {t.parent_id for t in heroes(sessions)} == {parents[1], parents[3]}
    assert plan(sessions, settings, now=INSIDE + timedelta(hours=2)).planned == 2  # nothing new fits tonight
    with transaction(sessions) as session:  # tonight's ran; one skipped parent is unselected
        session.execute(update(Take).where(Take.hero_night == NIGHT).values(state=TakeState.done))
        session.execute(update(Take).where(Take.id == parents[0]).values(selected_for_hero=False))
    tomorrow = plan(sessions, settings, night=NIGHT + timedelta(days=1), now=INSIDE + timedelta(days=1))
    assert (tomorrow.planned, tomorrow.skipped_over_budget) == (1, 0)
    assert [t.parent_id for t in heroes(sessions, NIGHT + timedelta(days=1))] == [parents[2]]


def test_unstarted_takes_of_a_closed_night_are_canceled_and_planned_again(nightly, sessions):
    parents = selected(sessions, nightly, [0, 0])
    plan(sessions, nightly)
    tomorrow = NIGHT + timedelta(days=1)
    plan(sessions, nightly, night=tomorrow, now=INSIDE + timedelta(days=1))
    assert {(t.state, t.error_class) for t in heroes(sessions)} == {(TakeState.canceled, "NightEnded")}
    assert sorted(t.parent_id for t in heroes(sessions, tomorrow)) == sorted(parents)


def test_recorded_gpu_hours_over_the_budget_stop_the_night(nightly, sessions):
    settings = nightly.model_copy(update={"nightly_budget_gpu_hours": 2.0})
    selected(sessions, settings, [3, 2, 1])
    assert plan(sessions, settings).planned == 3  # 1.5 estimated
    spent, running, waiting = heroes(sessions)
    with transaction(sessions) as session:
        attempt = states.claim(session, spent.id, "hero-worker", "h", "gpu0", INSIDE)
        states.fail(session, spent.id, attempt, RuntimeError("slow"), retryable=False, gpu_seconds=2.5 * 3600)
        states.claim(session, running.id, "hero-worker", "h", "gpu0", INSIDE)
    more = selected(sessions, settings, [9])
    night = plan(sessions, settings, now=INSIDE + timedelta(hours=3))
    assert night.state == "stopped"
    with sessions() as session:
        waiting = session.get(Take, waiting.id)
        assert (waiting.state, waiting.error_class) == (TakeState.canceled, "OverBudget")
        assert waiting.error_message.startswith("over budget")
        assert session.get(Take, running.id).state == TakeState.running  # started: it finishes
    assert plan(sessions, settings, now=INSIDE + timedelta(hours=4)).planned == 3  # stopped stays stopped
    assert all(t.parent_id != more[0] for t in heroes(sessions))


def test_a_take_retried_on_a_stopped_night_is_canceled_again_and_not_released(nightly, sessions):
    """A producer retrying an over-budget take cannot push a stopped night past its budget."""
    settings = nightly.model_copy(update={"nightly_budget_gpu_hours": 1.0})
    selected(sessions, settings, [2, 1])
    plan(sessions, settings)
    spent, waiting = heroes(sessions)
    with transaction(sessions) as session:
        attempt = states.claim(session, spent.id, "hero-worker", "h", "gpu0", INSIDE)
        states.fail(session, spent.id, attempt, RuntimeError("slow"), retryable=False, gpu_seconds=1.5 * 3600)
    assert plan(sessions, settings, now=INSIDE + timedelta(hours=1)).state == "stopped"
    later = INSIDE + timedelta(hours=2)
    releaser = Releaser(sessions, make_celery(settings), settings, clock=lambda: later)
    with transaction(sessions) as session:  # a hero worker with free slots
        session.add(Worker(id="h:1:0-7", pool="hero", host="h", gpu="0-7", slots=4, heartbeat_at=later))

    def over_budget() -> tuple:
        with sessions() as session:
            take = session.get(Take, waiting.id)
            return take.state, take.error_class, (take.error_message or "").startswith("over budget")

    assert over_budget() == (TakeState.canceled, "OverBudget", True)
    with transaction(sessions) as session:  # the producer retries it inside the window
        states.retry(session, waiting.id, extra_attempts=1, now=later)
    assert plan(sessions, settings, now=later).state == "stopped"
    assert over_budget() == (TakeState.canceled, "OverBudget", True)
    assert releaser.release_once()["hero"] == []
    with transaction(sessions) as session:  # again, and the release loop gets to it before the pass:
        states.retry(session, waiting.id, extra_attempts=1, now=later)
    assert releaser.release_once()["hero"] == []  # a stopped night's takes are never released
    plan(sessions, settings, now=later + timedelta(minutes=1))
    assert over_budget() == (TakeState.canceled, "OverBudget", True)


def test_a_nights_hero_takes_are_released_only_inside_its_window(nightly, sessions):
    selected(sessions, nightly, [0])
    manual = make_batch(sessions, nightly, [{"prompt": "a hero take by hand", "checkpoint": "humo-17b"}])[0]
    plan(sessions, nightly, now=OUTSIDE, force=True)
    nightly_take = heroes(sessions)[0].id
    now = [OUTSIDE]
    releaser = Releaser(sessions, make_celery(nightly), nightly, clock=lambda: now[0])
    with transaction(sessions) as session:
        session.add(Worker(id="h:1:0-7", pool="hero", host="h", gpu="0-7", slots=4, heartbeat_at=OUTSIDE))
    assert releaser.release_once()["hero"] == [manual]  # by hand: any time
    released = []
    for moment in (INSIDE - timedelta(days=1), INSIDE):  # the night before, then its own
        now[0] = moment
        with transaction(sessions) as session:
            session.execute(update(Worker).values(heartbeat_at=moment))
        released.append(releaser.release_once()["hero"])
    assert released == [[], [nightly_take]]


def test_the_report_in_the_api(nightly, sessions, client_as, settings):
    night = date.today() + timedelta(days=3)
    operator = client_as("olga")
    selected(sessions, nightly, [2, 1, 0])
    r = operator.post(f"/nights/{night}/plan")
    assert r.status_code == 422 and r.json()["field"] == "force"
    r = operator.post(f"/nights/{night}/plan", params={"force": True})
    assert r.status_code == 200, r.text
    done, failed, running = (t["id"] for t in r.json()["hero_takes"])
    with transaction(sessions) as session:
        attempt = states.claim(session, done, "w", "h", "gpu0")
        states.finish(
            session,
            done,
            attempt,
            {"clip_key": "c", "thumbnail_key": "t", "manifest_key": "m", "clip_sha256": "0" * 64, "clip_size": 1},
            gpu_seconds=1800.0,
        )
        attempt = states.claim(session, failed, "w", "h", "gpu0")
        states.fail(session, failed, attempt, RuntimeError("CUDA out of memory"), retryable=False, gpu_seconds=900.0)
        states.claim(session, running, "w", "h", "gpu0")
    rows = client_as("vic").get("/nights").json()
    assert len(rows) == 1
    row = rows[0]
    assert row["night"] == night.isoformat() and row["state"] == "running"
    assert (row["takes"], row["done"], row["failed"], row["running"], row["queued"]) == (3, 1, 1, 1, 0)
    assert row["gpu_hours"] == pytest.approx(0.75)
    assert row["budget_gpu_hours"] == settings.nightly_budget_gpu_hours  # the API's settings
    assert row["estimated_gpu_hours"] == pytest.approx(3 * 50 * settings.hero_step_seconds * settings.hero_gpus / 3600)
    detail = client_as("vic").get(f"/nights/{night}").json()
    by_id = {t["id"]: t for t in detail["hero_takes"]}
    assert by_id[done]["gpu_seconds"] == 1800.0 and by_id[failed]["error_class"] == "RuntimeError"
    assert client_as("vic").get(f"/nights/{night + timedelta(days=1)}").status_code == 404
    past = operator.post(f"/nights/{date.today() - timedelta(days=3)}/plan", params={"force": True})
    assert past.status_code == 422 and past.json()["field"] == "night"
    far = operator.post("/nights/9999-12-31/plan", params={"force": True})
    assert far.status_code == 422 and far.json()["field"] == "night"


def test_who_may_read_and_plan_nights(nightly, client_as):
    night = date.today() + timedelta(days=3)
    assert client_as("vic").get("/nights").status_code == 200
    assert client_as("vic").post(f"/nights/{night}/plan", params={"force": True}).status_code == 403
    assert client_as("ana").post(f"/nights/{night}/plan", params={"force": True}).status_code == 403
    assert client_as(None).get("/nights").status_code == 401
    assert client_as(None).post(f"/nights/{night}/plan").status_code == 401
    assert client_as("olga").post(f"/nights/{night}/plan", params={"force": True}).status_code == 200


def test_one_postgres_lock_holder_and_a_dead_holders_lock_is_freed(nightly):
    engine = get_engine(nightly.database)
    a, b = PostgresLock(engine, "beat"), PostgresLock(engine, "beat")
    assert a.acquire() and not b.acquire()
    assert a.acquire()  # still ours
    a.release()
    assert b.acquire() and not a.acquire()
    b.conn.invalidate()  # the holder's connection dies with it
    b.conn = None
    wait_for(a.acquire, 10, "the dead holder's lock to be freed")
    a.release()


def test_one_file_lock_holder(tmp_path):
    a, b = FileLock(tmp_path / "beat.lock"), FileLock(tmp_path / "beat.lock")
    assert a.acquire() and not b.acquire()
    a.release()
    assert b.acquire() and not a.acquire()
    b.release()


def test_of_two_schedulers_only_the_lock_holder_plans(nightly, sessions):
    selected(sessions, nightly, [0])
    engine = get_engine(nightly.database)
    a = Scheduler(sessions, nightly, PostgresLock(engine, "beat"), clock=lambda: INSIDE)
    b = Scheduler(sessions, nightly, PostgresLock(engine, "beat"), clock=lambda: INSIDE)
    assert a.tick().planned == 1
    assert b.tick() is None and (a.leading, b.leading) == (True, False)
    a.lock.release()
    assert b.tick().planned == 1 and b.leading  # took over; the night is not planned twice
    b.lock.release()
    assert len(heroes(sessions)) == 1


def _advisory_holders(settings) -> int:
    with get_engine(settings.database).connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        ).scalar_one()


def test_two_farm_beat_processes_one_leads_the_other_takes_over(nightly, tmp_path):
    env = settings_env(nightly)
    procs, logs = [], []
    for i in range(2):
        logs.append(tmp_path / f"beat-{i}.log")
        with open(logs[-1], "w") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "farm.cli", "beat"],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:

        def roles() -> list[str] | None:
            texts = [log.read_text() for log in logs]
            for p, t in zip(procs, texts):
                assert p.poll() is None, t
            found = ["leading" if "leading:" in t else "standby" if "standby:" in t else None for t in texts]
            return None if None in found else found

        found = wait_for(roles, 60, "both schedulers to start")
        assert sorted(found) == ["leading", "standby"]
        assert _advisory_holders(nightly) == 1
        leader = procs[found.index("leading")]
        standby = found.index("standby")
        leader.send_signal(signal.SIGKILL)
        leader.wait(30)
        wait_for(lambda: "leading:" in logs[standby].read_text(), 30, "the standby scheduler to take over")
        assert _advisory_holders(nightly) == 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(30)


def test_candidates_exclude_hero_takes_and_unfinished_takes(nightly, sessions):
    parents = selected(sessions, nightly, [0, 0])
    with transaction(sessions) as session:
        session.execute(update(Take).where(Take.id == parents[0]).values(state=TakeState.failed))
        assert [t.id for t in candidates(session, NIGHT)] == [parents[1]]
        session.execute(update(Take).where(Take.id == parents[1]).values(pool="hero"))
        assert candidates(session, NIGHT) == []


def test_the_unique_index_drops_a_duplicate_a_racing_planner_would_insert(nightly, sessions, monkeypatch):
    """The last line of defence: a planner that missed tonight's hero take inserts nothing."""
    import farm.nightly

    parents = selected(sessions, nightly, [0, 0])
    plan(sessions, nightly)
    with sessions() as session:
        every = [session.get(Take, p) for p in parents]
    monkeypatch.setattr(farm.nightly, "candidates", lambda session, night: every)
    assert plan(sessions, nightly, now=INSIDE + timedelta(hours=1)).planned == 2
    assert len(heroes(sessions)) == 2


def test_a_drafts_fast_settings_loras_and_preset_stay_with_the_draft(nightly, sessions):
    """A fast explore take (few steps, euler, guidance off, a LoRA, from a preset) selected for
    hero: its hero take renders at the hero checkpoint's full quality, without them."""
    (parent,) = selected(sessions, nightly, [0])
    with transaction(sessions) as session:
        draft = session.get(Take, parent)
        draft.params = {**draft.params, "steps": 4, "sampler": "euler", "guidance": "off", "timesteps": "1000,500"}
        draft.loras, draft.preset = [{"sha256": "c" * 64, "strength": 1.0}], "draft-1.7b"
    plan(sessions, nightly)
    (hero,) = heroes(sessions)
    assert hero.parent_id == parent and hero.loras is None and hero.preset is None
    assert not {"steps", "sampler", "guidance", "timesteps"} & set(hero.params)
    assert hero.params["seed"] == 100 and hero.params["mode"] == "TIA"
