"""LoRAs on the farm: uploaded and read once, checked against each take's checkpoint, stacked
on the DiT by the worker, recorded in the manifest and re-rendered exactly."""

from __future__ import annotations

import httpx
import pytest
import torch

from farm.api.app import create_app
from farm.db import transaction
from farm.tables import Asset
from models.specs import HUMO_17B, TINY

from ..helpers import upload, wait_done
from ..models.lora_files import block_linears, param_shapes, write_lora
from ..services import serving


def post_lora(client, path, name=None):
    with open(path, "rb") as f:
        return client.post("/loras", files={"file": (name or path.name, f)})


@pytest.fixture(scope="module")
def shapes():
    return {"tiny": param_shapes(TINY), "humo-17b": param_shapes(HUMO_17B)}


def tiny_lora(tmp_path, shapes, fmt="comfyui", seed=0, rank=4):
    path = tmp_path / f"{fmt}-{seed}.safetensors"
    write_lora(path, shapes["tiny"], block_linears(TINY), fmt, rank=rank, alpha=2.0, seed=seed)
    return path


@pytest.mark.parametrize("fmt", ["comfyui", "kohya", "diffusers"])
def test_a_lora_is_read_at_upload_and_stored_once(client, tmp_path, shapes, fmt):
    path = tiny_lora(tmp_path, shapes, fmt)
    first = post_lora(client, path, "style.safetensors")
    assert first.status_code == 201, first.text
    lora = first.json()
    assert lora["kind"] == "lora" and lora["media_format"] == "safetensors" and lora["filename"] == "style.safetensors"
    info = lora["info"]
    assert info["format"] == fmt and info["rank"] == 4 and info["modules"] == len(block_linears(TINY))
    assert info["bases"] == ["tiny", "tiny-concat"]  # blocks only: both tiny conditionings fit
    again = post_lora(client, path, "renamed.safetensors")
    assert again.status_code == 200 and again.json()["sha256"] == lora["sha256"]
    listed = client.get("/loras").json()
    assert [a["sha256"] for a in listed] == [lora["sha256"]]
    assert client.get("/assets", params={"kind": "lora"}).json() == listed


def test_uploads_that_are_not_loras_for_these_checkpoints_are_refused(client, tmp_path, shapes, media):
    r = post_lora(client, media["image"])
    assert r.status_code == 422 and r.json()["field"] == "file" and "not a safetensors file" in r.json()["detail"]
    odd = tmp_path / "text-encoder.safetensors"  # a LoRA for another model's text encoder
    stem = "lora_te_text_model_encoder_layers_0_mlp_fc1"
    extra = {f"{stem}.lora_down.weight": torch.zeros(2, 8), f"{stem}.lora_up.weight": torch.zeros(8, 2)}
    write_lora(odd, shapes["tiny"], [], "comfyui", rank=1, extra=extra)
    r = post_lora(client, odd)
    assert r.status_code == 422 and r.json()["field"] == "file"
    assert "fits none of the checkpoints" in r.json()["detail"] and "tiny:" in r.json()["detail"]
    r = upload(client, tiny_lora(tmp_path, shapes))  # a LoRA sent as an input image or audio
    assert r.status_code == 422 and "/loras" in r.json()["detail"]


def test_a_lora_over_its_size_limit_is_refused_before_it_is_read(clean, storage, tokens, tmp_path, shapes):
    app = create_app(clean.model_copy(update={"max_lora_bytes": 1000}), storage)
    path = tiny_lora(tmp_path, shapes)
    with serving(app) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens['ana']}"}) as c:
        r = post_lora(c, path)
    assert r.status_code == 413 and r.json()["field"] == "file" and "1000 byte limit" in r.json()["detail"]


def test_a_take_names_the_lora_that_does_not_fit_its_checkpoint(client, tmp_path, shapes):
    big = tmp_path / "wan14b.safetensors"  # one module at the 17B's width, rank 1: a small file
    write_lora(big, shapes["humo-17b"], ["blocks.0.self_attn.q"], "comfyui", rank=1)
    sha = post_lora(client, big).json()["sha256"]
    assert client.get(f"/assets/{sha}").json()["info"]["bases"] == ["humo-17b"]
    r = client.post("/batches", json={"takes": [{"prompt": "p", "mode": "T", "loras": [{"asset": sha}]}]})
    assert r.status_code == 422 and r.json()["field"] == "takes[0].loras[0].asset"
    assert "made for humo-17b, not tiny" in r.json()["detail"]
    r = client.post("/batches", json={"takes": [{"prompt": "p", "mode": "T", "loras": [{"asset": "a" * 64}]}]})
    assert r.status_code == 422 and "upload it to /loras" in r.json()["detail"]
    r = client.post(
        "/batches", json={"takes": [{"prompt": "p", "mode": "T", "loras": [{"asset": sha, "strength": 11}]}]}
    )
    assert r.status_code == 422 and "strength" in r.json()["field"]
    too_many = [{"asset": sha}] * 9
    r = client.post("/batches", json={"takes": [{"prompt": "p", "mode": "T", "loras": too_many}]})
    assert r.status_code == 422 and "loras" in r.json()["field"]


def test_a_take_with_two_loras_renders_records_them_and_re_renders_exactly(
    client, tmp_path, shapes, start_worker, release_loop
):
    start_worker()
    style, detail = (post_lora(client, tiny_lora(tmp_path, shapes, fmt, seed)).json()["sha256"]
                     for fmt, seed in (("comfyui", 1), ("kohya", 2)))  # fmt: skip
    stack = [{"asset": style, "strength": 0.8}, {"asset": detail, "strength": -0.5}]
    body = {
        "takes": [
            {"prompt": "a presenter", "mode": "T", "seed": 7, "loras": stack},
            {"prompt": "a presenter", "mode": "T", "seed": 7},  # the same take without them
        ]
    }
    with_loras, without = wait_done(client, client.post("/batches", json=body).json()["take_ids"])
    assert with_loras["state"] == without["state"] == "done"
    assert with_loras["loras"] == [{"sha256": style, "strength": 0.8}, {"sha256": detail, "strength": -0.5}]
    manifest = client.get(f"/takes/{with_loras['id']}/manifest").json()
    assert manifest["inputs"]["loras"] == with_loras["loras"]
    applied = manifest["engine"]["loras"]
    assert [(u["sha256"], u["strength"]) for u in applied["loras"]] == [(style, 0.8), (detail, -0.5)]
    plain = client.get(f"/takes/{without['id']}/manifest").json()
    assert plain["engine"]["loras"]["loras"] == [] and plain["frames_sha256"] != manifest["frames_sha256"]

    copy = wait_done(client, client.post(f"/takes/{with_loras['id']}/rerender").json()["take_ids"])[0]
    assert copy["state"] == "done" and copy["loras"] == with_loras["loras"]
    assert client.get(f"/takes/{copy['id']}/manifest").json()["frames_sha256"] == manifest["frames_sha256"]


def test_a_take_whose_lora_is_gone_from_the_store_fails_once_naming_it(
    client, sessions, tmp_path, shapes, storage, start_worker, release_loop
):
    sha = post_lora(client, tiny_lora(tmp_path, shapes)).json()["sha256"]
    with sessions() as session:
        storage.delete(session.get(Asset, sha).key)
    start_worker()
    take_id = client.post("/batches", json={"takes": [{"prompt": "p", "mode": "T", "loras": [{"asset": sha}]}]}).json()[
        "take_ids"
    ][0]
    take = wait_done(client, [take_id])[0]
    assert take["state"] == "failed" and take["error_class"] == "InputError"
    assert take["error_message"].startswith("loras: ") and "missing from the store" in take["error_message"]
    assert len(take["attempts"]) == 1
    assert post_lora(client, tiny_lora(tmp_path, shapes)).status_code == 200  # the same bytes repair it
    with transaction(sessions) as session:
        assert storage.exists(session.get(Asset, sha).key)
