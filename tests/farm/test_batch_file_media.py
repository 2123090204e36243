"""POST /batches/file with the media it names, in one upload: the README's own YAML (file
names) and CSVs with sha256 prefixes resolve to assets; what does not resolve names the
field and the fix. Over HTTP on Postgres and S3."""

from __future__ import annotations

from ..services import ROOT

EXAMPLES = ROOT / "examples"


def send(client, name: str, text: str, *media):
    files = [("file", (name, text.encode()))] + [("media", (p.name, p.read_bytes())) for p in media]
    return client.post("/batches/file", files=files)


def test_the_readmes_yaml_with_its_media_in_one_upload(client):
    text = (EXAMPLES / "batch.yaml").read_text()
    r = send(client, "batch.yaml", text, EXAMPLES / "media" / "portrait.png", EXAMPLES / "media" / "speech.wav")
    assert r.status_code == 201, r.text
    batch = r.json()
    assert batch["name"] == "studio presenter, first pass" and len(batch["take_ids"]) == 4
    assets = {a["filename"]: a["sha256"] for a in client.get("/assets").json()}
    assert set(assets) == {"portrait.png", "speech.wav"}
    takes = [client.get(f"/takes/{t}").json() for t in batch["take_ids"]]
    assert [t["image"] for t in takes] == [assets["portrait.png"]] * 3 + [None]  # the last is TA: no image
    assert [t["audio"] for t in takes] == [assets["speech.wav"]] * 4


def test_a_unique_sha256_prefix_names_an_uploaded_asset(client):
    image = send(client, "first.yaml", "takes: [{prompt: p, mode: TI, image: portrait.png}]\n",
                 EXAMPLES / "media" / "portrait.png").json()  # fmt: skip
    sha = client.get(f"/takes/{image['take_ids'][0]}").json()["image"]
    r = send(client, "shots.csv", f"prompt,mode,image\na presenter,TI,{sha[:8]}\nthe same,TI,{sha[:8].upper()}\n")
    assert r.status_code == 201, r.text
    assert [client.get(f"/takes/{t}").json()["image"] for t in r.json()["take_ids"]] == [sha, sha]


def test_what_does_not_resolve_names_its_field_and_the_fix(client):
    r = send(client, "b.yaml", "defaults: {mode: TI, image: media/missing.png}\ntakes: [{prompt: p}]\n",
             EXAMPLES / "media" / "speech.wav")  # fmt: skip
    assert r.status_code == 422
    assert r.json() == {
        "field": "defaults.image",
        "detail": "'media/missing.png': no image of that name came with the batch file (its media: speech.wav) and "
        "no uploaded image's sha256 starts with it; add the file to the upload, or give its sha256",
    }
    r = send(client, "b.yaml", "takes: [{prompt: p, mode: TI, image: speech.wav}]\n", EXAMPLES / "media" / "speech.wav")
    assert r.status_code == 422 and r.json()["field"] == "takes[0].image"
    assert r.json()["detail"] == "speech.wav is audio, not image; name an image file here"
    r = send(client, "b.yaml", "takes: [{prompt: p, mode: T}]\n", ROOT / "README.md")
    assert r.status_code == 415 and r.json()["field"] == "media: README.md"  # a media file that is neither
    assert client.get("/takes").json()["count"] == 0


def test_a_batch_file_is_estimated_before_it_is_sent(client):
    text = "defaults: {checkpoint: tiny, mode: TIA, image: portrait.png, audio: speech.wav, steps: 2}\n"
    text += "sweep: {prompts: [a, b, c, d, e], seeds: [1, 2, 3, 4]}\n"
    r = send_estimate(client, "big.yaml", text, EXAMPLES / "media" / "portrait.png", EXAMPLES / "media" / "speech.wav")
    assert r.status_code == 200, r.text
    cost = r.json()
    assert (cost["takes"], cost["confirm"], cost["gpu_seconds"]) == (20, True, None)
    assert client.get("/takes").json()["count"] == 0  # estimated, not submitted
    files = [("file", ("big.yaml", text.encode())), ("media", ("portrait.png", b"not an image"))]
    bad = client.post("/batches/file/estimate", files=files)
    assert bad.status_code == 415 and bad.json()["field"] == "media: portrait.png"  # checked as the submit checks


def send_estimate(client, name, text, *media):
    files = [("file", (name, text.encode()))] + [("media", (p.name, p.read_bytes())) for p in media]
    return client.post("/batches/file/estimate", files=files)
