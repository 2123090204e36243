"""Presets: named take settings operators configure (FARM_PRESETS); producers name one and
override what they like. A bad preset stops the dispatcher at start, naming it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from farm.api.app import create_app
from farm.errors import InvalidRequest

from ..helpers import wait_done
from ..services import serving

DRAFT = {"steps": 2, "sampler": "euler", "shift": 8.0, "guidance": "off", "priority": 5}
WIDE = {"width": 96, "height": 48}


@pytest.fixture
def farm(clean, storage, tokens) -> Iterator[httpx.Client]:
    """The API with two presets, as a producer."""
    app = create_app(clean.model_copy(update={"presets": {"draft": DRAFT, "wide": WIDE}}), storage)
    with serving(app) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens['ana']}"}) as c:
        yield c


def takes_of(client, batch: dict) -> list[dict]:
    return [client.get(f"/takes/{t}").json() for t in batch["take_ids"]]


def test_presets_are_listed_and_a_take_starts_from_one(farm):
    assert farm.get("/presets").json() == [{"name": "draft", "fields": DRAFT}, {"name": "wide", "fields": WIDE}]
    body = {
        "defaults": {"preset": "wide", "width": 128, "steps": 3},  # the defaults' own fields beat their preset
        "takes": [
            {"prompt": "a", "mode": "T"},  # the defaults, over the wide preset
            {"prompt": "b", "mode": "T", "preset": "draft"},  # its own preset beats the defaults
            {"prompt": "c", "mode": "T", "preset": "draft", "steps": 4, "priority": 1},  # its own fields win
        ],
    }
    r = farm.post("/batches", json=body)
    assert r.status_code == 201, r.text
    a, b, c = takes_of(farm, r.json())
    assert (a["params"]["width"], a["params"]["height"], a["params"]["steps"], a["preset"]) == (128, 48, 3, "wide")
    assert b["preset"] == "draft" and b["priority"] == 5
    assert {k: b["params"][k] for k in ("steps", "sampler", "shift", "guidance")} == {
        "steps": 2,
        "sampler": "euler",
        "shift": 8.0,
        "guidance": "off",
    }
    assert b["params"]["width"] == 128  # what the draft preset leaves unset comes from the defaults
    assert (c["params"]["steps"], c["priority"], c["params"]["sampler"]) == (4, 1, "euler")


def test_an_unknown_preset_names_the_field_and_the_choices(farm):
    r = farm.post("/batches", json={"takes": [{"prompt": "p", "preset": "drafty"}]})
    assert r.status_code == 422 and r.json()["field"] == "takes[0].preset"
    assert "unknown preset 'drafty'; choose one of draft, wide" in r.json()["detail"]
    r = farm.post("/batches", json={"defaults": {"preset": "nope"}, "takes": [{"prompt": "p"}]})
    assert r.status_code == 422 and r.json()["field"] == "defaults.preset"


@pytest.mark.parametrize(
    "preset,words",
    [
        ({"steps": 0}, "steps"),
        ({"sampler": "ddim"}, "sampler"),
        ({"colour": "blue"}, "colour"),
        ({"preset": "draft"}, "names another preset"),
        ({"loras": [{"asset": "x" * 64, "strength": 99}]}, "loras.0.strength"),
    ],
)
def test_a_bad_preset_stops_the_dispatcher_at_start_naming_it(clean, storage, preset, words):
    with pytest.raises(InvalidRequest) as info:
        create_app(clean.model_copy(update={"presets": {"broken": preset}}), storage)
    assert info.value.field == "FARM_PRESETS" and "preset 'broken'" in str(info.value) and words in str(info.value)


def test_a_draft_preset_renders_as_it_says(farm, start_worker, release_loop):
    start_worker()
    r = farm.post("/batches", json={"takes": [{"prompt": "a draft", "mode": "T", "preset": "draft", "seed": 3}]})
    take = wait_done(farm, r.json()["take_ids"])[0]
    assert take["state"] == "done" and take["preset"] == "draft"
    manifest = farm.get(f"/takes/{take['id']}/manifest").json()
    assert manifest["engine"]["sampler"]["timesteps"] and len(manifest["engine"]["sampler"]["timesteps"]) == 2
    assert manifest["engine"]["passes"]["guidance"] == "off" and manifest["engine"]["passes"]["each"] == 1
    assert manifest["request"]["sampler"] == "euler"


def test_operators_choose_which_pool_serves_a_preset(clean, storage, tokens):
    """A 17B draft on the explore pool works where the explore pool holds the 17B (one large
    GPU); elsewhere the take names the pool that can render it."""
    draft = {"checkpoint": "humo-17b", "pool": "explore", **DRAFT}
    for explore, status in (("humo-17b", 201), ("tiny", 422)):
        settings = clean.model_copy(update={"presets": {"draft-17b": draft}, "explore_checkpoint": explore})
        with (
            serving(create_app(settings, storage)) as url,
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens['ana']}"}) as c,
        ):
            r = c.post("/batches", json={"takes": [{"prompt": "p", "mode": "T", "preset": "draft-17b"}]})
            assert r.status_code == status, r.text
            if status == 201:
                assert takes_of(c, r.json())[0]["pool"] == "explore"
            else:
                assert r.json()["field"] == "takes[0].pool" and "hero pool" in r.json()["detail"]


def test_batch_files_name_presets_too(farm):
    yaml_file = (
        b"defaults: {preset: draft}\ntakes:\n  - {prompt: one, mode: T}\n  - {prompt: two, mode: T, preset: wide}\n"
    )
    csv_file = b"prompt,mode,preset,steps\nthree,T,draft,3\n"
    for name, data in (("batch.yaml", yaml_file), ("batch.csv", csv_file)):
        r = farm.post("/batches/file", files={"file": (name, data)})
        assert r.status_code == 201, r.text
        for take in takes_of(farm, r.json()):
            expected = "wide" if take["params"]["prompt"] == "two" else "draft"
            assert take["preset"] == expected
            if expected == "draft":
                assert take["params"]["sampler"] == "euler"
                assert take["params"]["steps"] == (3 if name.endswith(".csv") else 2)
