"""/metrics: the farm's figures, from the record, on Postgres and SQLite, and during a real run."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from farm.db import session_factory, transaction
from farm.metrics import FarmCollector
from farm.migrate import upgrade
from farm.settings import Settings
from farm.tables import Attempt, AttemptState, Batch, Project, Take, TakeState, Worker, utcnow

from ..services import wait_for


class Scrape(dict):
    """{(sample name, sorted labels): value} of one exposition."""

    def __init__(self, text: str):
        super().__init__(
            {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
        )

    def __call__(self, name: str, **labels) -> float:
        return self[name, tuple(sorted(labels.items()))]

    def bucket(self, name: str, le: str, **labels) -> float:
        return self(f"{name}_bucket", le=le, **labels)


def collect(factory, settings, now) -> Scrape:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FarmCollector(factory, settings, clock=lambda: now))
    return Scrape(generate_latest(registry).decode())


def record(factory, now) -> None:
    """A farm with one of everything, at known times."""
    s = lambda seconds: now - timedelta(seconds=seconds)
    with transaction(factory) as session:
        session.add(Project(id="p", name="p"))
        session.flush()
        for producer in ("ana", "bo"):
            session.add(Batch(id=producer, project_id="p", name=producer, producer=producer, request={}))
        session.flush()

        def take(id, state, producer="ana", pool="explore", released=None, started=None):
            session.add(
                Take(
                    id=id,
                    batch_id=producer,
                    producer=producer,
                    checkpoint="tiny",
                    pool=pool,
                    params={},
                    state=state,
                    released_at=released and s(released),
                    started_at=started and s(started),
                )
            )

        take("done", TakeState.done, released=100, started=97)  # waited 3 s
        take("failed", TakeState.failed, producer="bo", released=60, started=59.8)  # 0.2 s
        take("q1", TakeState.queued)
        take("q2", TakeState.queued)
        take("rel", TakeState.released, released=1)
        take("run", TakeState.running, released=10, started=9.5)  # 0.5 s
        take("old", TakeState.done, released=7300, started=7200)  # outside the latency window
        take("hero", TakeState.done, pool="hero", released=3000, started=2900)
        session.flush()

        def attempt(take_id, number, state, started, finished, gpu):
            session.add(
                Attempt(
                    take_id=take_id,
                    number=number,
                    worker_id="w",
                    host="h",
                    gpu="g",
                    state=state,
                    started_at=s(started),
                    finished_at=None if finished is None else s(finished),
                    gpu_seconds=gpu,
                )
            )

        attempt("done", 1, AttemptState.done, 97, 57, 40.0)  # 40 s
        attempt("failed", 1, AttemptState.failed, 59.8, 57.8, 2.0)  # 2 s
        attempt("failed", 2, AttemptState.lost, 50, 20, 0.0)  # lost: not a render duration
        attempt("run", 1, AttemptState.running, 9.5, None, 0.0)
        attempt("old", 1, AttemptState.done, 7200, 7190, 10.0)  # 10 s
        attempt("hero", 1, AttemptState.done, 2900, 900, 16000.0)  # 2000 s on 8 GPUs
        workers = (
            ("idle", "explore", 1, False, None),
            ("busy", "explore", 2, False, "run"),
            ("drain", "explore", 1, True, None),
            ("dead", "explore", 30, False, None),
            ("gone", "explore", 40, True, None),
            ("ancient", "explore", 7200, False, None),
            ("h", "hero", 3, False, None),
        )
        for id, pool, age, stopped, current in workers:
            session.add(
                Worker(
                    id=id,
                    pool=pool,
                    host="host",
                    gpu="H100",
                    slots=1,
                    heartbeat_at=s(age),
                    stopped=stopped,
                    current_take_id=current,
                )
            )


def check_figures(m: Scrape) -> None:
    assert m("farm_takes", pool="explore", state="queued") == 2
    assert m("farm_takes", pool="explore", state="done") == 2 and m("farm_takes", pool="hero", state="done") == 1
    assert m("farm_takes", pool="hero", state="queued") == 0  # every pool and state, zeros too
    assert m("farm_queue_depth", pool="explore") == 3  # 2 queued + 1 released
    assert m("farm_pool_slots", pool="explore") == 2 and m("farm_pool_slots", pool="hero") == 1  # idle + busy
    # release -> claim over the last 15 minutes: 0.2 s, 0.5 s, 3 s (the 2-hour-old claim is out)
    lat = "farm_release_latency_seconds"
    assert m(f"{lat}_gcount", pool="explore") == 3 and m(f"{lat}_gsum", pool="explore") == pytest.approx(3.7, abs=0.01)
    bounds = ("0.1", "0.25", "0.5", "2.5", "5.0", "+Inf")
    assert [m.bucket(lat, le, pool="explore") for le in bounds] == [0, 1, 2, 2, 3, 3]
    assert m(f"{lat}_gcount", pool="hero") == 0  # claimed 48 minutes ago
    # attempts that ended on their worker: 40 s, 2 s, 10 s (explore), 2000 s (hero); the lost one is out
    ren = "farm_render_seconds"
    assert m(f"{ren}_count", pool="explore") == 3 and m(f"{ren}_sum", pool="explore") == pytest.approx(52, abs=0.01)
    assert [m.bucket(ren, le, pool="explore") for le in ("1.0", "5.0", "15.0", "30.0", "60.0")] == [0, 1, 2, 2, 3]
    assert m.bucket(ren, "1800.0", pool="hero") == 0 and m.bucket(ren, "3600.0", pool="hero") == 1
    assert m("farm_gpu_seconds_total", producer="ana", pool="explore") == 50
    assert m("farm_gpu_seconds_total", producer="bo", pool="explore") == 2
    assert m("farm_gpu_seconds_total", producer="ana", pool="hero") == 16000
    ages = {dict(labels)["worker"]: v for (name, labels), v in m.items() if name == "farm_worker_heartbeat_age_seconds"}
    assert set(ages) == {"idle", "busy", "drain", "dead", "gone", "h"}  # seen in the last hour
    assert ages["dead"] == pytest.approx(30, abs=0.01)
    states = {s: m("farm_workers", pool="explore", state=s) for s in ("idle", "busy", "draining", "dead", "stopped")}
    assert states == {"idle": 1, "busy": 1, "draining": 1, "dead": 1, "stopped": 1}
    assert m("farm_workers", pool="hero", state="idle") == 1


def test_figures_on_postgres(sessions, clean):
    now = utcnow()
    record(sessions, now)
    check_figures(collect(sessions, Settings(worker_timeout=10.0), now))


def test_figures_on_sqlite(tmp_path):
    """The embedded default (`farm up` with no services) serves the same figures."""
    url = f"sqlite:///{tmp_path / 'farm.db'}"
    upgrade(url)
    factory = session_factory(url)
    now = utcnow()
    record(factory, now)
    check_figures(collect(factory, Settings(data_dir=tmp_path, worker_timeout=10.0), now))


def test_metrics_and_demand_need_a_viewer(client, client_as):
    for path in ("/metrics", "/metrics/demand"):  # KEDA and Prometheus send a viewer's API token
        r = client_as(None).get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
    r = client_as("vic").get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert Scrape(r.text)("farm_takes", pool="explore", state="queued") == 0
    r = client_as("vic").get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text") and r.text.endswith("# EOF\n")
    demand = client_as("vic").get("/metrics/demand")
    assert demand.status_code == 200 and demand.json()["explore"]["demand"] == 0 and "hero" in demand.json()


def test_figures_move_during_a_real_run(client, client_as, start_worker, release_loop):
    def scrape() -> Scrape:
        r = client.get("/metrics")
        assert r.status_code == 200
        return Scrape(r.text)

    def submit(producer: str, n: int) -> list[str]:
        body = {
            "producer": producer,
            "takes": [{"prompt": f"{producer} {i}", "mode": "T", "seed": i, "steps": 3} for i in range(n)],
        }
        r = client.post("/batches", json=body)
        assert r.status_code == 201, r.text
        return r.json()["take_ids"]

    before = scrape()
    assert before("farm_render_seconds_count", pool="explore") == 0
    assert not any(name == "farm_gpu_seconds_total" for name, _ in before)
    submit("ana", 3)
    submit("bo", 1)
    queued = scrape()  # no worker yet: nothing is released
    assert queued("farm_takes", pool="explore", state="queued") == 4 and queued("farm_queue_depth", pool="explore") == 4
    assert queued("farm_pool_slots", pool="explore") == 0
    assert client_as("vic").get("/metrics/demand").json()["explore"] == {
        "demand": 4,
        "queued": 4,
        "released": 0,
        "running": 0,
        "workers": 0,
        "slots": 0,
    }

    worker = start_worker()
    done = wait_for(
        lambda: (m := scrape())("farm_takes", pool="explore", state="done") == 4 and m, 180, "the four takes to render"
    )
    assert done("farm_takes", pool="explore", state="queued") == 0 and done("farm_queue_depth", pool="explore") == 0
    assert done("farm_render_seconds_count", pool="explore") == 4
    assert done("farm_render_seconds_sum", pool="explore") > 0
    assert done("farm_release_latency_seconds_gcount", pool="explore") == 4
    ana = done("farm_gpu_seconds_total", producer="ana", pool="explore")
    assert ana > 0 and done("farm_gpu_seconds_total", producer="bo", pool="explore") > 0
    assert done("farm_pool_slots", pool="explore") == 1
    assert done("farm_workers", pool="explore", state="idle") + done("farm_workers", pool="explore", state="busy") == 1
    assert done("farm_worker_heartbeat_age_seconds", worker=worker.id, pool="explore") < 4

    submit("ana", 1)
    again = wait_for(
        lambda: (m := scrape())("farm_takes", pool="explore", state="done") == 5 and m, 120, "the fifth take to render"
    )
    assert again("farm_render_seconds_count", pool="explore") == 5
    assert again("farm_gpu_seconds_total", producer="ana", pool="explore") > ana
    assert again("farm_gpu_seconds_total", producer="bo", pool="explore") == done(
        "farm_gpu_seconds_total", producer="bo", pool="explore"
    )
