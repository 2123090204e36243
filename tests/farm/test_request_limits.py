"""Every request has a bounded cost: a batch is counted before it is built, every list and
prompt has a maximum, every body a limit applied as it arrives (chunked or not), and YAML
batch files may not expand (no anchors, no aliases). Over HTTP, on Postgres and S3."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from farm.api.app import create_app
from farm.api.handlers import ENVELOPE
from farm.api.routes.batches import MAX_FILE
from farm.batches import MAX_TAKES, load_yaml
from farm.errors import InvalidRequest

from ..services import serving
from .test_cli import farm

#: a 1 KB YAML "billion laughs": nine levels of nine aliases, 9**9 prompts once expanded
ALIAS_BOMB = "\n".join(
    ["a: &a [laugh, laugh, laugh, laugh, laugh, laugh, laugh, laugh, laugh]"]
    + [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    + ["sweep: {prompts: *i, seeds: [1]}"]
)


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body of `total` bytes sent without a Content-Length (Transfer-Encoding: chunked)."""
    sent = 0
    while sent < total:
        chunk = b" " * min(size, total - sent)
        sent += len(chunk)
        yield chunk


@pytest.fixture
def small(clean, storage) -> Iterator[str]:
    """An API of its own with small limits: uploads of 100 kB, other bodies of 64 KiB."""
    settings = clean.model_copy(update={"max_upload_bytes": 100_000, "max_body_bytes": 64 * 1024})
    with serving(create_app(settings, storage)) as url:
        yield url


def no_takes(client) -> bool:
    return client.get("/takes").json()["count"] == 0 and client.get("/batches").json() == []


# --- a batch's size is counted before it is built


def test_a_sweep_over_max_takes_is_refused_before_it_is_built(client):
    sweep = {
        "prompts": [f"shot {i}" for i in range(2000)],
        "seed_count": 10_000,
        "checkpoints": ["tiny", "tiny-concat"],
    }
    r = client.post("/batches", json={"defaults": {"mode": "T"}, "sweep": sweep})  # 40 million takes
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "sweep"
    assert r.json()["detail"] == (
        "2000 prompts x 10000 seeds x 2 checkpoints = 40000000 takes; at most 20000 in one batch: "
        "sweep fewer prompts, seeds or checkpoints, or split it into several batches"
    )
    # the listed takes count too: one over the maximum
    body = {"takes": [{"prompt": "p", "mode": "T"}], "sweep": {"prompts": ["a", "b"], "seed_count": 10_000}}
    r = client.post("/batches", json=body)
    assert (
        r.status_code == 422 and r.json()["field"] == "sweep" and "+ 1 listed takes = 20001 takes" in r.json()["detail"]
    )
    assert no_takes(client)
    # the dispatcher is still there for the next request
    ok = client.post("/batches", json={"takes": [{"prompt": "p", "mode": "T"}]})
    assert ok.status_code == 201 and len(ok.json()["take_ids"]) == 1


@pytest.mark.parametrize(
    "body,field",
    [
        ({"takes": [{"prompt": "p"}] * (MAX_TAKES + 1)}, "takes"),
        ({"sweep": {"prompts": ["p"] * (MAX_TAKES + 1)}}, "sweep.prompts"),
        ({"sweep": {"prompts": ["p"], "seeds": list(range(MAX_TAKES + 1))}}, "sweep.seeds"),
        ({"sweep": {"prompts": ["p"], "checkpoints": ["tiny"] * 51}}, "sweep.checkpoints"),
        ({"sweep": {"prompts": ["p"], "overrides": [{"set": {}}] * 101}}, "sweep.overrides"),
        ({"sweep": {"prompts": ["p"], "overrides": [{"where": {str(i): i for i in range(21)}, "set": {}}]}}, None),
    ],
)
def test_every_list_has_a_maximum(client, body, field):
    r = client.post("/batches", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == (field or "sweep.overrides.0.where") and "at most" in r.json()["detail"]
    assert no_takes(client)


def test_a_prompt_over_the_maximum_names_its_field(client):
    r = client.post("/batches", json={"takes": [{"prompt": "p" * 4001, "mode": "T"}]})
    assert r.status_code == 422
    assert r.json() == {"detail": "4001 characters; at most 4000; shorten it", "field": "takes[0].prompt"}
    r = client.post("/batches", json={"takes": [{"prompt": "p", "negative_prompt": "n" * 5000, "mode": "T"}]})
    assert r.status_code == 422 and r.json()["field"] == "takes[0].negative_prompt"
    r = client.post("/batches", json={"sweep": {"prompts": ["ok", "p" * 4001]}})
    assert r.status_code == 422 and r.json()["field"] == "sweep.prompts.1"
    assert client.post("/batches", json={"takes": [{"prompt": "p" * 4000, "mode": "T"}]}).status_code == 201
    prompt = client.get("/openapi.json").json()["components"]["schemas"]["TakeCreate"]["properties"]["prompt"]
    assert prompt["maxLength"] == 4000  # documented where the schema is


# --- every body has a limit, applied as it arrives


def test_a_json_body_over_the_limit_is_refused_with_or_without_a_length(client):
    big = b'{"takes": [' + b" " * (3 * 1024 * 1024) + b"]}"
    headers = {"Content-Type": "application/json"}
    r = client.post("/batches", content=big, headers=headers)
    assert r.status_code == 413, r.text
    assert r.json() == {
        "detail": "the request body is over the 2097152 byte limit; "
        "send fewer takes per batch (or a sweep, or a batch file)",
        "field": None,
    }
    r = client.post("/batches", content=chunks(8 * 1024 * 1024), headers=headers)  # no Content-Length
    assert r.status_code == 413 and "2097152 byte limit" in r.json()["detail"]
    assert "content-length" not in r.request.headers and r.request.headers["transfer-encoding"] == "chunked"
    # any route, any body
    assert client.post("/auth/login", content=chunks(3 * 1024 * 1024), headers=headers).status_code == 413
    assert no_takes(client)
    # a chunked body within the limit is read as before
    ok = client.post("/batches", content=iter([b'{"takes": [{"prompt": "p",', b' "mode": "T"}]}']), headers=headers)
    assert ok.status_code == 201, ok.text


def test_a_chunked_upload_over_the_limit_is_refused_as_it_arrives(small, tokens, media):
    import httpx

    with httpx.Client(base_url=small, timeout=30, headers={"Authorization": f"Bearer {tokens['ana']}"}) as client:
        boundary = "farm-test-boundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()

        def form(total: int) -> Iterator[bytes]:
            yield head
            yield from chunks(total)
            yield f"\r\n--{boundary}--\r\n".encode()

        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        sent = form(100_000 + ENVELOPE + 4 * 1024 * 1024)
        r = client.post("/assets", content=sent, headers=headers)
        assert r.status_code == 413, r.text
        assert r.json() == {
            "detail": "file: larger than the 100000 byte limit; send a shorter clip or a smaller image",
            "field": "file",
        }
        assert "content-length" not in r.request.headers
        # over the file's limit, within the envelope: farm.assets counts the file itself
        r = client.post("/assets", content=form(150_000), headers=headers)
        assert r.status_code == 413 and r.json()["field"] == "file"
        # a chunked upload within the limit is stored
        image = media["image"].read_bytes()
        assert len(image) < 100_000
        ok = client.post("/assets", content=iter([head, image, f"\r\n--{boundary}--\r\n".encode()]), headers=headers)
        assert ok.status_code == 201 and ok.json()["kind"] == "image", ok.text
        # the other bodies have the smaller limit: 64 KiB
        r = client.post("/batches", content=chunks(200_000), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "65536 byte limit" in r.json()["detail"]


@pytest.mark.parametrize(
    "path,limit,status",
    [
        ("/assets", 100_000 + ENVELOPE, 413),
        ("/batches/file", MAX_FILE + 100_000 + ENVELOPE, 422),  # the file, and media of one upload's size
        ("/batches", 64 * 1024, 413),
    ],
)
def test_the_answer_comes_while_the_body_is_still_arriving(small, tokens, path, limit, status):
    """A chunked body past the limit and never finished: only a limit applied as the body
    arrives can answer (Starlette alone would wait for the rest, then spool it whole)."""
    import socket
    from urllib.parse import urlsplit

    port = urlsplit(small).port
    kind = "application/json" if path == "/batches" else "multipart/form-data; boundary=b"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: farm\r\nAuthorization: Bearer {tokens['ana']}\r\n"
            f"Content-Type: {kind}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for chunk in [head, *chunks(limit + 64 * 1024)]:  # past the limit; the last chunk never comes
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(65536) or pytest.fail(f"the connection closed: {answer!r}")
    assert answer.startswith(b"HTTP/1.1 %d" % status), answer


def test_the_body_limit_stops_reading_as_soon_as_the_count_passes_it():
    """At the ASGI level: the app asks for an endless body; the middleware answers 413 after
    the first chunk past the limit and never asks for another."""
    import asyncio

    from farm.api.handlers import BodyLimit
    from farm.settings import Settings

    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})

    received, sent = [], []

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}  # never ends

    async def send(message):
        sent.append(message)

    limited = BodyLimit(app, Settings(max_body_bytes=10_000))
    scope = {"type": "http", "method": "POST", "path": "/batches", "headers": [], "root_path": ""}
    asyncio.run(limited(scope, receive, send))
    assert len(received) == 11  # 11,000 bytes: one chunk past the limit
    assert sent[0]["status"] == 413 and b"10000 byte limit" in sent[1]["body"]
    # a Content-Length over the limit: refused before anything is read
    received.clear()
    sent.clear()
    asyncio.run(limited({**scope, "headers": [(b"content-length", b"10001")]}, receive, send))
    assert received == [] and sent[0]["status"] == 413


# --- YAML batch files do not expand


def test_an_alias_bomb_batch_file_is_refused(client):
    assert len(ALIAS_BOMB) < 1024
    r = client.post("/batches/file", files={"file": ("bomb.yaml", ALIAS_BOMB.encode())})
    assert r.status_code == 422, r.text
    assert r.json() == {"detail": "YAML anchors and aliases are not accepted; write the takes out", "field": "file"}
    rows = "prompt\n" + "a\n" * (MAX_TAKES + 1)  # a CSV is read no further than the maximum
    r = client.post("/batches/file", files={"file": ("many.csv", rows.encode())})
    assert r.status_code == 422 and r.json()["field"] == "file" and "more than 20000 rows" in r.json()["detail"]
    assert no_takes(client)


def test_the_yaml_loader_reads_batches_as_safe_load_does_and_refuses_what_expands(monkeypatch):
    from farm import batches

    text = "project: p\ndefaults: {mode: T, steps: 2}\ntakes:\n  - {prompt: 'a: b', seed: 3, scale_text: 4.5}\n"
    assert load_yaml(text) == yaml.safe_load(text) == load_yaml(text.encode())
    for refused in ("a: &x 1\nb: 2\n", "a: &x {k: 1}\nb:\n  <<: *x\n", ALIAS_BOMB):
        with pytest.raises(InvalidRequest) as info:
            load_yaml(refused)
        assert info.value.field == "file" and "anchors and aliases" in info.value.message
    with pytest.raises(InvalidRequest, match="nested over 32 deep"):
        load_yaml("a: " + "[" * 33 + "]" * 33)
    monkeypatch.setattr(batches, "MAX_YAML_NODES", 10)
    with pytest.raises(InvalidRequest, match="more than 10 YAML values"):
        load_yaml("takes: [" + ", ".join(["p"] * 10) + "]")
    with pytest.raises(yaml.YAMLError):
        load_yaml("takes: [unclosed")


def test_farm_submit_refuses_an_alias_bomb_in_one_line(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    r = farm("submit", str(bomb), "--api", "http://127.0.0.1:9", "--no-wait")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"error: {bomb}: YAML anchors and aliases are not accepted; write the takes out"
