"""Text and numbers the record cannot hold are refused where they enter, naming the field."""

from __future__ import annotations

import json

import pytest


def post_raw(client, text: str, path: str = "/batches"):
    return client.post(path, content=text.encode(), headers={"Content-Type": "application/json"})


def post_json(client, body: dict, path: str = "/batches"):
    """As a client in another language would send it: lone surrogates as \\u escapes."""
    return post_raw(client, json.dumps(body), path)


@pytest.mark.parametrize(
    "take,field,words",
    [
        ({"prompt": "a \ud800 b"}, "prompt", "lone surrogate"),
        ({"prompt": "p", "negative_prompt": "x\u0000y"}, "negative_prompt", "control characters"),
        ({"prompt": "p", "checkpoint": "\udfff"}, "checkpoint", "lone surrogate"),
        ({"prompt": "p", "shift": 1e308}, "shift", "up to 100"),
        ({"prompt": "p", "width": 16 * 10**9}, "width", "up to 2048"),
        ({"prompt": "p", "frames": 10**6 + 1}, "frames", "up to 1501"),
    ],
)
def test_a_take_field_the_record_cannot_hold_is_refused(client, take, field, words):
    r = post_json(client, {"takes": [{"mode": "T", **take}]})
    assert r.status_code == 422, r.text
    assert r.json()["field"] in (f"takes[0].{field}", f"takes.0.{field}") and words in r.json()["detail"]
    assert client.get("/takes").status_code == 200  # nothing stored that breaks a list


@pytest.mark.parametrize("literal,field", [("NaN", "shift"), ("Infinity", "scale_text"), ("-Infinity", "scale_audio")])
def test_non_finite_numbers_are_refused(client, literal, field):
    r = post_raw(client, f'{{"takes": [{{"prompt": "p", "mode": "T", "{field}": {literal}}}]}}')
    assert r.status_code == 422 and r.json()["field"] == f"takes[0].{field}", r.text
    assert "must be a number" in r.json()["detail"]


def test_batch_and_account_strings_are_checked_too(client):
    for body, field in (
        ({"project": "\ud800", "takes": [{"prompt": "p", "mode": "T"}]}, "project"),
        ({"name": "x\u0007", "takes": [{"prompt": "p", "mode": "T"}]}, "name"),
        ({"sweep": {"prompts": ["ok", "\ud801"]}}, "sweep.prompts.1"),
    ):
        r = post_json(client, body)
        assert (r.status_code, r.json()["field"]) == (422, field), r.text
    r = post_json(client, {"name": "ana", "password": "\ud800" * 12}, "/auth/login")
    assert (r.status_code, r.json()["field"]) == (422, "password"), r.text
