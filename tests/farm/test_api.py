"""The REST API over HTTP, on Postgres and the S3 server."""

from __future__ import annotations

from ..helpers import assets, upload


def test_upload_is_content_addressed_and_deduplicated(client, media, tmp_path, storage):
    first = upload(client, media["image"])
    assert first.status_code == 201 and first.json()["kind"] == "image" and first.json()["created"]
    copy = tmp_path / "renamed.bin"
    copy.write_bytes(media["image"].read_bytes())
    again = upload(client, copy)
    assert again.status_code == 200 and again.json()["sha256"] == first.json()["sha256"]
    audio = upload(client, media["audio"]).json()
    assert audio["kind"] == "audio" and audio["media_format"] == "wav"
    assert storage.exists(f"assets/audio/{audio['sha256'][:2]}/{audio['sha256']}")


def test_upload_sniffs_content_not_names(client, tmp_path):
    fake = tmp_path / "face.png"
    fake.write_text("#!/bin/sh\necho not an image")
    r = upload(client, fake)
    assert r.status_code == 415 and "neither a supported image" in r.json()["detail"]
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert upload(client, empty).status_code == 422


def batch_body(image, audio, n=2, **extra):
    return {
        "project": "p1",
        "name": "b",
        "producer": "ana",
        "defaults": {"checkpoint": "tiny", "mode": "TIA", "image": image, "audio": audio},
        "takes": [{"prompt": f"take {i}", "seed": i} for i in range(n)],
        **extra,
    }


def test_create_batch_and_idempotent_replay(client, media):
    image, audio = assets(client, media)
    body = batch_body(image, audio)
    r1 = client.post("/batches", json=body, headers={"Idempotency-Key": "k-1"})
    assert r1.status_code == 201
    batch = r1.json()
    assert len(batch["take_ids"]) == 2 and batch["counts"]["queued"] == 2 and not batch["finished"]
    r2 = client.post("/batches", json=body, headers={"Idempotency-Key": "k-1"})
    assert r2.status_code == 200 and r2.json()["id"] == batch["id"]
    assert client.get("/takes", params={"producer": "ana"}).json()["count"] == 2  # no duplicates
    r3 = client.post("/batches", json=batch_body(image, audio, n=3), headers={"Idempotency-Key": "k-1"})
    assert r3.status_code == 409 and "different batch" in r3.json()["detail"]
    assert client.post("/batches", json=body).status_code == 201  # no key: a new batch


def test_sweep_expands_prompts_seeds_checkpoints_with_overrides(client):
    body = {
        "producer": "bo",
        "defaults": {"mode": "T", "steps": 2},
        "sweep": {
            "prompts": ["a", "b"],
            "seeds": [1, 2, 3],
            "checkpoints": ["tiny", "tiny-concat"],
            "overrides": [{"where": {"prompt": "b", "seed": 3}, "set": {"steps": 3, "priority": 9}}],
        },
    }
    batch = client.post("/batches", json=body).json()
    assert len(batch["take_ids"]) == 12
    takes = client.get("/takes", params={"batch_id": batch["id"], "limit": 50}).json()["data"]
    combos = {(t["params"]["prompt"], t["params"]["seed"], t["checkpoint"]) for t in takes}
    assert len(combos) == 12
    special = [t for t in takes if t["params"]["prompt"] == "b" and t["params"]["seed"] == 3]
    assert len(special) == 2 and all(t["params"]["steps"] == 3 and t["priority"] == 9 for t in special)
    assert all(t["params"]["steps"] == 2 for t in takes if t not in special)


def test_bad_batches_name_the_field(client, media):
    image, audio = assets(client, media)
    cases = [
        ({"takes": [{"prompt": "p", "mode": "T", "width": 100}]}, "takes[0].width", "multiple of 16"),
        ({"takes": [{"prompt": "p", "mode": "T", "frames": 20}]}, "takes[0].frames", "4k+1"),
        (
            {"takes": [{"prompt": "p", "mode": "T", "checkpoint": "humo-1.7b", "frames": 1505}]},
            "takes[0].frames",
            "up to 1501",
        ),
        (  # a long take's whole clip is bounded too: width x height x frames
            {
                "takes": [
                    {"prompt": "p", "mode": "T", "checkpoint": "tiny", "width": 256, "height": 256, "frames": 1501}
                ]
            },
            "takes[0].frames",
            "more than tiny renders in one take (73,777,152); ask for at most 1125 frames",
        ),
        (
            {"takes": [{"prompt": "p", "mode": "T", "checkpoint": "humo-3b"}]},
            "takes[0].checkpoint",
            "unknown checkpoint",
        ),
        ({"takes": [{"prompt": "p", "mode": "TA"}]}, "takes[0].audio", "needs an audio track"),
        ({"takes": [{"prompt": "p", "mode": "TI", "image": audio}]}, "takes[0].image", "upload it to /assets"),
        (
            {"takes": [{"prompt": "p", "mode": "T", "checkpoint": "tiny", "pool": "hero"}]},
            "takes[0].pool",
            "explore pool",
        ),
        ({"takes": []}, "takes", "no takes"),
    ]
    for body, field, message in cases:
        r = client.post("/batches", json=body)
        assert r.status_code == 422, body
        assert r.json()["field"] == field and message in r.json()["detail"], r.json()
    r = client.post("/batches", json={"takes": [{"prompt": "p", "mood": "happy"}]})
    assert r.status_code == 422 and "mood" in str(r.json()["detail"])  # unknown fields are refused


def test_list_filter_and_page(client):
    client.post(
        "/batches",
        json={"producer": "ana", "sweep": {"prompts": ["x"], "seeds": list(range(7))}, "defaults": {"mode": "T"}},
    )
    client.post("/batches", json={"producer": "bo", "takes": [{"prompt": "find me please", "mode": "T"}]})
    seen, cursor = [], None
    while True:
        page = client.get(
            "/takes", params={"producer": "ana", "limit": 3, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen += [t["id"] for t in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 7
    found = client.get("/takes", params={"q": "find me"}).json()["data"]
    assert [t["producer"] for t in found] == ["bo"]
    assert client.get("/takes", params={"state": ["done"]}).json()["count"] == 0
    assert client.get("/takes", params={"cursor": "garbage"}).status_code == 422
    full, light = (client.get("/batches", params={"with_take_ids": flag}).json() for flag in ("true", "false"))
    assert [len(b["take_ids"]) for b in full] == [1, 7]  # newest first
    assert [b["take_ids"] for b in light] == [None, None] and [b["counts"] for b in light] == [
        b["counts"] for b in full
    ]


def test_take_actions_and_their_conflicts(client, sessions):
    take_id = client.post("/batches", json={"takes": [{"prompt": "p", "mode": "T"}]}).json()["take_ids"][0]
    assert client.post(f"/takes/{take_id}/priority", json={"priority": 4}).json()["priority"] == 4
    assert client.post(f"/takes/{take_id}/select", json={"selected": True}).status_code == 409
    assert client.post(f"/takes/{take_id}/cancel").json()["state"] == "canceled"
    assert client.post(f"/takes/{take_id}/cancel").status_code == 409
    assert client.post(f"/takes/{take_id}/retry").json()["state"] == "queued"
    assert client.get(f"/takes/{take_id}/manifest").status_code == 409
    assert client.get("/takes/nope").status_code == 404
    assert client.post("/takes/nope/cancel").status_code == 404
    assert client.post(f"/takes/{take_id}/priority", json={"priority": 10**6}).status_code == 422


def test_openapi_is_served(client):
    spec = client.get("/openapi.json").json()
    assert {"/assets", "/batches", "/takes", "/takes/{take_id}/rerender"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_root_serves_the_dashboard(client_as):
    r = client_as(None).get("/")  # the page itself is public: it shows the sign-in form
    assert r.status_code == 200 and "/static/app.js" in r.text and r.headers["content-type"].startswith("text/html")
    assert client_as(None).get("/static/app.js").status_code == 200
