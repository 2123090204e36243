"""`farm workers` and `farm pools`: what operators see, and draining a worker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta

from farm.db import transaction
from farm.queue import make_celery, send_take
from farm.tables import Worker, utcnow

from ..helpers import make_batch, state
from ..services import ROOT, settings_env, wait_for


def farm(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "farm.cli", *args],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def table(out: str) -> list[dict[str, str]]:
    header, *rows = [re.split(r"\s{2,}", line.strip()) for line in out.strip().splitlines()]
    return [dict(zip(header, row)) for row in rows]


def add_workers(sessions, **ages_and_flags) -> None:
    now = utcnow()
    with transaction(sessions) as session:
        for name, (pool, age, stopped, current) in ages_and_flags.items():
            session.add(
                Worker(
                    id=f"{name}:1:{pool}",
                    pool=pool,
                    host=name,
                    gpu="H100",
                    slots=1,
                    heartbeat_at=now - timedelta(seconds=age),
                    stopped=stopped,
                    current_take_id=current,
                )
            )


def test_workers_and_pools_show_every_state(sessions, clean):
    settings = clean.model_copy(update={"worker_timeout": 60.0})
    queued = make_batch(sessions, clean, [{"prompt": f"p{i}", "mode": "T"} for i in range(3)])
    add_workers(
        sessions,
        idle=("explore", 1, False, None),
        busy=("explore", 2, False, queued[0]),
        drain=("explore", 1, True, None),
        dead=("explore", 120, False, None),
        gone=("explore", 200, True, None),
        ancient=("explore", 7200, False, None),
        hero=("hero", 5, False, None),
    )
    r = farm(settings, "workers")
    assert r.returncode == 0, r.stderr
    rows = {row["ID"]: row for row in table(r.stdout)}
    assert {i: row["STATE"] for i, row in rows.items()} == {
        "idle:1:explore": "idle",
        "busy:1:explore": "busy",
        "drain:1:explore": "draining",
        "dead:1:explore": "dead",
        "hero:1:hero": "idle",
    }  # the last hour's, but a cleanly stopped one (gone) only with --all
    assert rows["busy:1:explore"]["TAKE"] == queued[0] and rows["idle:1:explore"]["TAKE"] == "-"
    assert rows["dead:1:explore"]["HEARTBEAT"] == "2m ago" and rows["hero:1:hero"]["GPU"] == "H100"
    every = json.loads(farm(settings, "workers", "--all", "--json", "--pool", "explore").stdout)
    states = {w["id"]: w["state"] for w in every}
    assert states["ancient:1:explore"] == "dead" and states["gone:1:explore"] == "stopped" and len(every) == 6
    assert every[0].keys() >= {"id", "pool", "host", "gpu", "heartbeat_age", "current_take_id", "state"}

    r = farm(settings, "pools")
    assert r.returncode == 0, r.stderr
    pools = {row["POOL"]: row for row in table(r.stdout)}
    assert pools["explore"] == {
        "POOL": "explore",
        "WORKERS": "2",
        "SLOTS": "2",
        "DRAINING": "1",
        "QUEUED": "3",
        "RELEASED": "0",
        "RUNNING": "0",
        "DEPTH": "3",
    }
    assert pools["hero"]["WORKERS"] == "1" and pools["hero"]["DEPTH"] == "0"
    assert json.loads(farm(settings, "pools", "--json").stdout)["explore"]["depth"] == 3


def test_drain_and_resume_on_the_embedded_sqlite_record(clean, tmp_path):
    """The embedded default keeps the record in SQLite, whose datetimes come back naive."""
    from farm import migrate
    from farm.db import session_factory

    settings = clean.model_copy(update={"database_url": f"sqlite:///{tmp_path}/farm.db", "worker_timeout": 60.0})
    migrate.upgrade(settings.database)
    add_workers(session_factory(settings.database), live=("explore", 1, False, None))
    r = farm(settings, "workers", "drain", "live")
    assert r.returncode == 0 and "live:1:explore draining" in r.stdout, r.stderr
    assert table(farm(settings, "workers").stdout)[0]["STATE"] == "draining"
    r = farm(settings, "workers", "resume", "live:1:explore")
    assert r.returncode == 0 and "resumed" in r.stdout, r.stderr
    assert table(farm(settings, "workers").stdout)[0]["STATE"] == "idle"


def test_drain_and_resume_errors_are_one_line(sessions, clean):
    settings = clean.model_copy(update={"worker_timeout": 60.0})
    add_workers(
        sessions,
        **{
            "host-a": ("explore", 1, False, None),
            "host-b": ("explore", 1, False, None),
            "dead": ("explore", 120, False, None),
        },
    )
    cases = [
        (("workers", "drain", "nope"), "error: worker: no worker 'nope'; `farm workers --all` lists them"),
        (
            ("workers", "drain", "host-"),
            "error: worker: 'host-' matches 2 workers (host-a:1:explore, host-b:1:explore); give more of the id",
        ),
        (
            ("workers", "drain", "dead"),
            "error: worker: dead:1:explore is dead (last heartbeat 2m ago); nothing to drain",
        ),
    ]
    for args, message in cases:
        r = farm(settings, *args)
        assert (r.returncode, r.stderr.strip()) == (1, message)
    out = lambda *args: farm(settings, "workers", *args).stdout.strip()
    assert out("resume", "host-a") == "worker host-a:1:explore is already taking work"
    assert out("drain", "host-a") == "worker host-a:1:explore draining: it claims no new take"
    assert out("drain", "host-a:1:explore") == "worker host-a:1:explore is already draining"
    assert out("resume", "host-a") == "worker host-a:1:explore resumed: it claims takes again"
    away = settings.model_copy(update={"database_url": "postgresql+psycopg://farm:hunter2@127.0.0.1:9/farm"})
    for args in (("workers",), ("pools",), ("workers", "drain", "x")):
        r = farm(away, *args)
        assert r.returncode == 1 and r.stderr.startswith(
            "error: database: cannot read the farm's record at postgresql+psycopg://farm:***@127.0.0.1:9/farm"
        )
        assert len(r.stderr.strip().splitlines()) == 1 and "hunter2" not in r.stderr


def test_a_drained_worker_finishes_its_take_and_claims_no_new_one(client, clean, sessions, start_worker, release_loop):
    worker = start_worker()
    body = {"takes": [{"prompt": "long", "mode": "T", "steps": 150}]}
    first = client.post("/batches", json=body).json()["take_ids"][0]
    wait_for(lambda: client.get(f"/takes/{first}").json()["progress"]["step"] >= 1, 60, "the first take to render")
    r = farm(clean, "workers", "drain", worker.id.split(":")[0])
    assert r.stdout.strip() == f"worker {worker.id} draining: it finishes take {first} and claims no new one"
    assert table(farm(clean, "workers").stdout)[0]["STATE"] == "draining"
    wait_for(lambda: state(sessions, first) == "done", 120, "the first take to finish on the drained worker")

    second = client.post("/batches", json={"takes": [{"prompt": "next", "mode": "T"}]}).json()["take_ids"][0]
    send_take(make_celery(clean), second, "explore")  # delivered anyway (e.g. released before the drain)
    wait_for(
        lambda: f"take {second}: this worker is draining" in worker.log.read_text(),
        60,
        "the drained worker to hand the take back",
    )
    pools = {row["POOL"]: row for row in table(farm(clean, "pools").stdout)}
    assert (pools["explore"]["WORKERS"], pools["explore"]["DRAINING"], pools["explore"]["QUEUED"]) == ("0", "1", "1")
    assert state(sessions, second) == "queued"  # the release loop sees no capacity, the worker claimed nothing

    assert farm(clean, "workers", "resume", worker.id).returncode == 0
    wait_for(lambda: state(sessions, second) == "done", 120, "the resumed worker to render the take")
