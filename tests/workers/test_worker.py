"""End to end: the API over HTTP, the release loop, a real worker process, Postgres, Redis, S3."""

from __future__ import annotations

import io
import json

import av
import httpx
from sqlalchemy import select

from farm.queue import make_celery, send_take
from farm.storage import output_keys
from farm.tables import Attempt, AttemptState, Output
from tests.helpers import assets, missing_asset, take_state, wait_done
from tests.services import wait_for


def test_a_batch_over_http_ends_with_clips_in_s3_whose_manifests_match(
    client, media, storage, start_worker, release_loop
):
    worker = start_worker()
    image, audio = assets(client, media)
    body = {
        "producer": "ana",
        "defaults": {"checkpoint": "tiny", "image": image, "audio": audio},
        "takes": [
            {"prompt": "a presenter", "mode": "TIA", "seed": 5},
            {"prompt": "a singer", "mode": "TA", "seed": 6, "steps": 3},
            {"prompt": "an actor", "mode": "T", "seed": 7, "width": 48, "height": 80},
        ],
    }
    batch = client.post("/batches", json=body).json()
    takes = wait_done(client, batch["take_ids"])
    assert [t["state"] for t in takes] == ["done"] * 3
    for spec, take in zip(body["takes"], takes):
        assert len(take["attempts"]) == 1 and take["attempts"][0]["worker_id"] == worker.id
        assert take["attempts"][0]["gpu_seconds"] > 0 and take["progress"]["fraction"] == 1.0
        clip = httpx.get(take["outputs"]["clip"])  # a presigned URL of the S3 API
        assert clip.status_code == 200
        with av.open(io.BytesIO(clip.content)) as c:
            assert c.streams.video[0].codec_context.name == "h264"
            assert bool(c.streams.audio) == ("A" in spec["mode"])
        manifest = json.loads(storage.get_bytes(output_keys(take["id"], 1)["manifest_key"]))
        assert manifest["take_id"] == take["id"] and manifest["checkpoint"]["name"] == "tiny"
        assert manifest["request"]["seed"] == spec["seed"] and manifest["request"]["prompt"] == spec["prompt"]
        assert manifest["request"]["mode"] == spec["mode"]
        assert manifest["inputs"]["audio"] == (audio if "A" in spec["mode"] else None)
        assert manifest["inputs"]["image"] == (image if "I" in spec["mode"] else None)
        assert manifest["outputs"]["clip"]["sha256"] == take["outputs"]["clip_sha256"]
        assert len(manifest["checkpoint"]["dit_sha256"]) == 64
    assert takes[2]["params"]["width"] == 48


def test_cancel_mid_render_stops_between_steps(client, sessions, storage, start_worker, release_loop):
    start_worker()
    take_id = client.post("/batches", json={"takes": [{"prompt": "long", "mode": "T", "steps": 1000}]}).json()[
        "take_ids"
    ][0]
    wait_for(lambda: take_state(client, take_id)["progress"]["step"] >= 2, 60, "the render to make progress")
    assert client.post(f"/takes/{take_id}/cancel").json()["cancel_requested"] is True
    take = wait_done(client, [take_id])[0]
    assert take["state"] == "canceled" and take["progress"]["step"] < 1000
    assert [a["state"] for a in take["attempts"]] == ["canceled"]
    assert not storage.exists(output_keys(take_id, 1)["manifest_key"]) and take["outputs"] is None


def test_a_duplicate_delivery_of_a_finished_take_changes_nothing(client, sessions, clean, start_worker, release_loop):
    worker = start_worker()
    take_id = client.post("/batches", json={"takes": [{"prompt": "once", "mode": "T"}]}).json()["take_ids"][0]
    before = wait_done(client, [take_id])[0]
    send_take(make_celery(clean), take_id, "explore")  # the broker delivers it again
    wait_for(
        lambda: f"take {take_id} is done: duplicate or stale delivery dropped" in worker.log.read_text(),
        60,
        "the worker to drop the duplicate",
    )
    after = take_state(client, take_id)
    assert (
        after["attempts"] == before["attempts"] and after["outputs"]["clip_sha256"] == before["outputs"]["clip_sha256"]
    )
    with sessions() as s:
        assert len(s.execute(select(Attempt).where(Attempt.take_id == take_id)).scalars().all()) == 1
        assert len(s.execute(select(Output).where(Output.take_id == take_id)).scalars().all()) == 1


def test_rerender_from_the_manifest_reproduces_the_clip(client, media, start_worker, release_loop):
    start_worker()
    image, audio = assets(client, media)
    take_id = client.post(
        "/batches", json={"takes": [{"prompt": "again", "mode": "TIA", "image": image, "audio": audio, "seed": 42}]}
    ).json()["take_ids"][0]
    original = wait_done(client, [take_id])[0]
    batch = client.post(f"/takes/{take_id}/rerender").json()
    copy = wait_done(client, batch["take_ids"])[0]
    assert copy["parent_id"] == take_id and copy["state"] == "done"
    manifest = client.get(f"/takes/{take_id}/manifest").json()
    # every setting pinned, defaults included; an unset `timesteps` (None: the schedule from the
    # pinned steps and shift) stays unset, as the farm stores no unset parameter
    pinned = {k: v for k, v in manifest["request"].items() if v is not None}
    assert copy["params"] == pinned and set(manifest["request"]) - set(pinned) == {"timesteps"}
    assert {k: copy["params"][k] for k in original["params"]} == original["params"]
    assert copy["image"] == image and copy["audio"] == audio
    copy_manifest = client.get(f"/takes/{copy['id']}/manifest").json()
    # the decoded frames are bit-identical; H.264's multi-threaded encoder may pack them differently
    assert copy_manifest["frames_sha256"] == manifest["frames_sha256"]


def test_a_failing_input_is_recorded_with_its_error(client, sessions, start_worker, release_loop, storage):
    """An asset whose stored object vanished: the take fails once, naming the input (no retry
    can bring the object back; uploading the same bytes again repairs it)."""
    start_worker()
    missing_asset(sessions, "f" * 64)
    take_id = client.post("/batches", json={"takes": [{"prompt": "p", "mode": "TI", "image": "f" * 64}]}).json()[
        "take_ids"
    ][0]
    take = wait_done(client, [take_id])[0]
    assert take["state"] == "failed" and take["error_class"] == "InputError"
    assert take["error_message"].startswith("image: ") and "missing from the store" in take["error_message"]
    assert [a["state"] for a in take["attempts"]] == [AttemptState.failed.value]
