"""Affinity: the release loop sends a released take to an idle worker that already holds its
checkpoint and LoRA stack, without changing which takes are released or in what order; on
Postgres, Redis and real worker processes."""

from __future__ import annotations

import json
from datetime import timedelta

import redis
from sqlalchemy import update

from farm import states
from farm.affinity import choose, parse_stack_key, stack_key
from farm.db import transaction
from farm.queue import direct_queue, make_celery, send_take
from farm.release import Releaser, next_takes
from farm.tables import Asset, Take, Worker, utcnow
from models.specs import TINY

from ..helpers import age, make_batch, state, wait_done
from ..models.lora_files import block_linears, param_shapes, write_lora
from ..services import REDIS_URL, wait_for
from .test_loras import post_lora


def queued(queue: str) -> list[str]:
    """The take ids waiting on a Celery queue (a Redis list), oldest first."""
    r = redis.Redis.from_url(REDIS_URL)
    return [json.loads(m)["headers"]["id"] for m in reversed(r.lrange(queue, 0, -1))]


def lora_assets(sessions, n: int) -> list[str]:
    """n LoRA asset rows that fit the tiny checkpoint (the release loop never reads the files)."""
    shas = [f"{i:x}" * 64 for i in range(10, 10 + n)]
    with transaction(sessions) as s:
        for sha in shas:
            s.add(Asset(sha256=sha, kind="lora", size=1, key=f"assets/lora/{sha}", filename=f"{sha[:4]}.safetensors",
                        media_format="safetensors", info={"bases": ["tiny", "tiny-concat"]}))  # fmt: skip
    return shas


def uses(*stack: tuple[str, float]) -> list[dict]:
    """A take's `loras` as submitted."""
    return [{"asset": sha, "strength": strength} for sha, strength in stack]


def key(*stack: tuple[str, float]) -> str:
    """The stack key of the tiny checkpoint with this stack, as the take records it."""
    return stack_key("tiny", [{"sha256": sha, "strength": strength} for sha, strength in stack] or None)


def add_worker(sessions, worker_id: str, holding: str | None, **values) -> str:
    with transaction(sessions) as s:
        s.add(Worker(id=worker_id, pool="explore", host=worker_id.split(":")[0], gpu="cpu", heartbeat_at=utcnow(),
                     holding=holding, **values))  # fmt: skip
    return worker_id


def test_the_stack_key_is_the_checkpoint_then_each_lora_and_strength_in_order():
    a, b = "a" * 64, "b" * 64
    assert stack_key("tiny", None) == stack_key("tiny", []) == "tiny"
    stack = [{"sha256": a, "strength": 0.8}, {"sha256": b, "strength": -0.5}]
    assert stack_key("tiny", stack) == f"tiny+{a}@0.8+{b}@-0.5"
    assert parse_stack_key(stack_key("tiny", stack)) == {"checkpoint": "tiny", "loras": stack}  # its inverse
    assert parse_stack_key("tiny") == {"checkpoint": "tiny", "loras": []}
    assert stack_key("tiny", stack[::-1]) != stack_key("tiny", stack)  # stacked in order
    assert stack_key("tiny", [{"sha256": a, "strength": 1}]) == stack_key("tiny", [{"sha256": a, "strength": 1.0}])
    assert stack_key("tiny", [{"sha256": a, "strength": 0.8}]) != stack_key("tiny", [{"sha256": a, "strength": 0.81}])
    assert stack_key("humo-1.7b", stack) != stack_key("tiny", stack)
    assert direct_queue("explore", "gpu-3.lab:4242:explore") == "explore.gpu-3.lab-4242-explore"


def test_each_take_gets_the_first_idle_holder_of_its_stack_that_no_earlier_take_got():
    idle = {"w1": "tiny+a", "w2": "tiny", "w3": "tiny+a"}
    takes = [("t1", "tiny+a"), ("t2", "tiny+b"), ("t3", "tiny+a"), ("t4", "tiny+a"), ("t5", "tiny"), ("t6", "tiny")]
    assert choose(takes, idle) == {"t1": "w1", "t2": None, "t3": "w3", "t4": None, "t5": "w2", "t6": None}


def test_the_release_sends_each_take_to_an_idle_holder_of_its_stack_in_the_same_order(sessions, clean):
    a, b, c = lora_assets(sessions, 3)
    sa, sb, sc = ((a, 0.8),), ((a, 0.8), (b, -0.5)), ((c, 1.0),)
    holders = {
        "w-a:1:explore": key(*sa),
        "w-b:1:explore": key(*sb),
        "w-plain:1:explore": key(),
        "w-reversed:1:explore": key(*sb[::-1]),  # the same LoRAs stacked the other way: another stack
    }
    for worker_id, holding in holders.items():
        add_worker(sessions, worker_id, holding)
    add_worker(sessions, "w-old:1:explore", None)  # says nothing of what it holds: counted, never chosen
    # sc's holders cannot take work: busy, dead, draining
    (running,) = make_batch(sessions, clean, [{"prompt": "r", "mode": "T"}], producer="cy")
    add_worker(sessions, "w-busy:1:explore", key(*sc), current_take_id=running)
    with transaction(sessions) as s:
        states.claim(s, running, "w-busy:1:explore", "w-busy", "cpu")
    add_worker(sessions, "w-dead:1:explore", key(*sc))
    with transaction(sessions) as s:
        s.execute(update(Worker).where(Worker.id == "w-dead:1:explore").values(heartbeat_at=utcnow() - timedelta(1)))
    add_worker(sessions, "w-draining:1:explore", key(*sc), stopped=True)

    ana = make_batch(sessions, clean, [{"prompt": "a1", "mode": "T", "loras": uses(*sa)},
                                       {"prompt": "a2", "mode": "T", "loras": uses(*sa)},
                                       {"prompt": "p1", "mode": "T"},
                                       {"prompt": "a3", "mode": "T", "loras": uses(*sa)}], producer="ana")  # fmt: skip
    bo = make_batch(sessions, clean, [{"prompt": "b1", "mode": "T", "loras": uses(*sb), "priority": 5},
                                      {"prompt": "c1", "mode": "T", "loras": uses(*sc)},
                                      {"prompt": "p2", "mode": "T"}], producer="bo")  # fmt: skip
    for i, take_id in enumerate(ana):  # ana's takes are the oldest
        age(sessions, take_id, 100 - i)
    a1, a2, p1, a3 = ana
    b1, c1, p2 = bo

    # 6 serving workers, 1 busy: 5 takes; by priority, then fair share, then age
    with sessions() as s:
        expected = next_takes(s, "explore", 5)
    assert expected == [b1, a1, c1, a2, p2]
    releaser = Releaser(sessions, make_celery(clean), clean)
    assert releaser.release_once()["explore"] == expected  # affinity changes neither the takes nor their order
    assert releaser.routed == {
        b1: "w-b:1:explore",
        a1: "w-a:1:explore",
        c1: None,  # no idle worker holds its stack
        a2: None,  # the holder of its stack was given a1 in this pass
        p2: "w-plain:1:explore",  # a take without LoRAs prefers a worker holding the bare checkpoint
    }
    assert queued(direct_queue("explore", "w-b:1:explore")) == [b1]
    assert queued(direct_queue("explore", "w-a:1:explore")) == [a1]
    assert queued(direct_queue("explore", "w-plain:1:explore")) == [p2]
    assert queued("explore") == [c1, a2]  # the pool's queue keeps the release order
    for worker_id in ("w-reversed", "w-old", "w-busy", "w-dead", "w-draining"):
        assert queued(direct_queue("explore", f"{worker_id}:1:explore")) == []
    assert {t: state(sessions, t) for t in (p1, a3)} == {p1: "queued", a3: "queued"}


def test_a_take_whose_worker_dies_before_claiming_it_is_sent_again_to_the_pool_queue(sessions, clean):
    (a,) = lora_assets(sessions, 1)
    worker = add_worker(sessions, "w-a:1:explore", key((a, 1.0)))
    (take,) = make_batch(sessions, clean, [{"prompt": "p", "mode": "T", "loras": uses((a, 1.0))}])
    clock = [utcnow()]
    releaser = Releaser(sessions, make_celery(clean), clean, clock=lambda: clock[0])
    assert releaser.release_once()["explore"] == [take] and releaser.routed == {take: worker}
    assert queued(direct_queue("explore", worker)) == [take]
    clock[0] += timedelta(seconds=clean.release_timeout + 1)  # the worker stopped heartbeating long ago
    assert releaser.reconcile_once() == {"resent": [take], "reclaimed": []}
    assert queued("explore") == [take] and state(sessions, take) == "released"  # any worker of the pool gets it


def test_broker_down_hands_takes_routed_to_a_worker_back_to_queued(sessions, clean):
    (a,) = lora_assets(sessions, 1)
    add_worker(sessions, "w-a:1:explore", key((a, 1.0)))
    add_worker(sessions, "w-b:1:explore", key())
    takes = make_batch(sessions, clean, [{"prompt": "p", "mode": "T", "loras": uses((a, 1.0))},
                                         {"prompt": "q", "mode": "T", "loras": uses((a, 2.0))}])  # fmt: skip
    app = make_celery(clean.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"}))
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    app.conf.broker_transport_options = {"max_retries": 0}
    releaser = Releaser(sessions, app, clean)
    releaser.release_once()
    assert releaser.routed == {takes[0]: "w-a:1:explore", takes[1]: None}
    assert [state(sessions, t) for t in takes] == ["queued", "queued"]


def test_a_worker_that_declines_a_take_on_its_own_queue_hands_it_to_the_pool(clean, sessions, start_worker):
    drained, other = start_worker(), start_worker()
    with transaction(sessions) as s:
        s.execute(update(Worker).where(Worker.id == drained.id).values(stopped=True))
    (take,) = make_batch(sessions, clean, [{"prompt": "p", "mode": "T"}])
    with transaction(sessions) as s:
        states.release(s, [take])
    send_take(make_celery(clean), take, direct_queue("explore", drained.id))  # released just before the drain
    wait_for(lambda: state(sessions, take) == "done", 120, "the other worker to render the take")
    assert "declined on this worker's own queue; sent to the explore queue" in drained.log.read_text()
    with sessions() as s:
        assert s.get(Take, take).attempts[0].worker_id == other.id


def test_a_worker_takes_a_take_sent_to_it_before_a_pool_take_that_waited_longer(clean, sessions, start_worker):
    worker = start_worker()
    app, own_queue = make_celery(clean), direct_queue("explore", worker.id)
    first, pooled, own = make_batch(sessions, clean, [{"prompt": "long", "mode": "T", "steps": 150},
                                                      {"prompt": "pool", "mode": "T"},
                                                      {"prompt": "own", "mode": "T"}])  # fmt: skip
    with transaction(sessions) as s:
        states.release(s, [first, pooled, own])
    # the first from its own queue: a round robin would now turn to the pool's queue first
    send_take(app, first, own_queue)
    with sessions() as s:
        wait_for(lambda: s.get(Take, first, populate_existing=True).progress_step >= 1, 60, "the first take to render")
    send_take(app, pooled, "explore")
    send_take(app, own, own_queue)
    wait_for(lambda: all(state(sessions, t) == "done" for t in (first, pooled, own)), 120, "the three takes")
    with sessions() as s:
        assert s.get(Take, own).started_at < s.get(Take, pooled).started_at


def two_stacks(client, tmp_path, n: int) -> dict[str, list[str]]:
    """Two LoRAs uploaded, and a batch of n takes on each, by two producers (fair share: the
    release order alternates the two stacks); LoRA sha256 -> its batch's take ids."""
    takes = {}
    for producer, seed in (("ana", 1), ("bo", 2)):
        path = tmp_path / f"style-{seed}.safetensors"
        write_lora(path, param_shapes(TINY), block_linears(TINY), "comfyui", rank=2, seed=seed)
        sha = post_lora(client, path).json()["sha256"]
        body = {"producer": producer, "takes": [{"prompt": "p", "mode": "T", "seed": i} for i in range(n)],
                "defaults": {"loras": [{"asset": sha, "strength": 0.7}]}}  # fmt: skip
        r = client.post("/batches", json=body)
        assert r.status_code == 201, r.text
        takes[sha] = r.json()["take_ids"]
    return takes


def switches(client, take_ids: list[str]) -> int:
    """How many of these takes found another stack on their worker's DiT (the manifest's record)."""

    def switched(take_id: str) -> bool:
        record = client.get(f"/takes/{take_id}/manifest").json()["engine"]["loras"]
        return record["patched"] > 0 or record["restored"] > 0

    return sum(switched(t) for t in take_ids)


def holdings(sessions, workers) -> set[str | None]:
    with sessions() as s:
        return {s.get(Worker, w.id).holding for w in workers}


def test_two_workers_keep_their_lora_stacks_when_both_are_free_in_each_pass(client, clean, sessions, tmp_path,
                                                                            start_worker):  # fmt: skip
    workers = [start_worker(), start_worker()]
    assert holdings(sessions, workers) == {"tiny"}  # the bare checkpoint, once loaded
    n = 4
    takes = two_stacks(client, tmp_path, n)
    every = [t for ids in takes.values() for t in ids]
    # the test runs the release loop's passes, each once both workers are idle: every pass
    # releases one take of each stack, and affinity chooses which worker gets which
    releaser = Releaser(sessions, make_celery(clean), clean)
    routed: dict[str, str | None] = {}
    for _ in range(n):
        wait_for(lambda: all(state(sessions, t) in ("queued", "done") for t in every), 120, "the pass's takes")
        assert len(releaser.release_once()["explore"]) == 2
        routed |= releaser.routed
    assert [t["state"] for t in wait_done(client, every)] == ["done"] * 2 * n
    # one switch per worker, from the bare checkpoint to its stack (one more only if a worker
    # took both takes of the first pass); sent to either worker, half the later takes would switch
    assert 2 <= switches(client, every) <= 3, routed
    assert sum(w is not None for w in routed.values()) >= 2 * n - 3
    assert holdings(sessions, workers) <= {key((sha, 0.7)) for sha in takes}  # the last take's stack
    # the workers list says it, as the people reading it want it
    listed = {w["id"]: w["holding"] for w in client.get("/workers").json()}
    assert {listed[w.id]["checkpoint"] for w in workers} == {"tiny"}
    assert all([(u["sha256"], u["strength"]) for u in listed[w.id]["loras"]] in ([(sha, 0.7)] for sha in takes)
               for w in workers)  # fmt: skip


def test_two_batches_of_two_stacks_on_the_release_loop(request, client, sessions, tmp_path, start_worker):
    workers = [start_worker(), start_worker()]
    n = 4
    takes = two_stacks(client, tmp_path, n)
    request.getfixturevalue("release_loop")  # started once both batches are queued: submitted together
    every = [t for ids in takes.values() for t in ids]
    assert [t["state"] for t in wait_done(client, every)] == ["done"] * 2 * n
    # one switch per worker at the start, one more when one batch runs out before the other
    # (and one if a worker took both takes of the first pass); the alternating worst case is 2n
    assert switches(client, every) <= 4
    assert holdings(sessions, workers) <= {key((sha, 0.7)) for sha in takes}
