"""POST /batches/file: a batch from a CSV or YAML file, over HTTP on Postgres and S3."""

from __future__ import annotations

import pytest

from ..helpers import assets


def submit(client, name: str, text: str, **form):
    return client.post("/batches/file", files={"file": (name, text.encode())}, data=form)


def takes_of(client, batch: dict) -> list[dict]:
    return [client.get(f"/takes/{i}").json() for i in batch["take_ids"]]


def test_a_csv_makes_one_take_per_row_with_typed_columns_and_defaults_for_empty_cells(client, media):
    image, audio = assets(client, media)
    csv = (
        "prompt,seed,steps,shift,mode,checkpoint,image,audio,priority\n"
        f"a presenter,3,2,4.5,TIA,tiny,{image},{audio},5\n"
        f"a singer,4,,,T,tiny,,,\n"
    )
    r = submit(client, "shots.csv", csv, project="films")
    assert r.status_code == 201, r.text
    batch = r.json()
    assert (batch["project"], batch["name"], len(batch["take_ids"])) == ("films", "shots", 2)
    first, second = sorted(takes_of(client, batch), key=lambda t: t["params"]["seed"])
    assert {k: first["params"][k] for k in ("prompt", "seed", "steps", "shift")} == {
        "prompt": "a presenter",
        "seed": 3,
        "steps": 2,
        "shift": 4.5,
    }
    assert (first["image"], first["audio"], first["priority"]) == (image, audio, 5)
    assert second["params"]["mode"] == "T" and "steps" not in second["params"] and second["priority"] == 0


def test_a_yaml_batch_file_with_a_sweep_and_defaults(client, media):
    image, audio = assets(client, media)
    yaml = f"""
project: films
name: sweep
defaults: {{checkpoint: tiny, mode: TIA, image: {image}, audio: {audio}, steps: 2}}
sweep: {{prompts: [a, b], seeds: [1, 2, 3]}}
"""
    r = submit(client, "night.yaml", yaml)
    assert r.status_code == 201, r.text
    takes = takes_of(client, r.json())
    assert sorted((t["params"]["prompt"], t["params"]["seed"]) for t in takes) == [
        (p, s) for p in "ab" for s in (1, 2, 3)
    ]
    assert all(t["params"]["steps"] == 2 and t["image"] == image for t in takes)


@pytest.mark.parametrize(
    "name,text,field,words",
    [
        ("b.csv", "prompt,seed\na,three\n", "file: row 2, seed", "not a number"),
        ("b.csv", "prompt,frames\na,20\n", "takes[0].frames", "4k+1"),
        ("b.csv", "prompt,colour\na,red\n", "takes.0.colour", "Extra inputs"),
        ("b.csv", "prompt\n", "file", "no rows"),
        ("b.yaml", "takes: [unclosed\n", "file", "not valid YAML"),
        ("b.yaml", "- just a list\n", "file", "expected a mapping"),
    ],
)
def test_a_bad_batch_file_names_the_field_and_the_fix(client, name, text, field, words):
    r = submit(client, name, text)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and words in r.json()["detail"]


def test_a_batch_file_is_bounded(client):
    r = submit(client, "big.csv", "prompt\n" + "a\n" * (3 * 1024 * 1024))
    assert r.status_code == 422 and r.json()["field"] == "file" and "larger than" in r.json()["detail"]
