"""Consent records on real Postgres through the API: recording, links, synthetic assets, roles,
bad input named, each policy mode at submit and in the nightly run, revocation and expiry
cancelling takes and withdrawing clips, and an audit row for every change."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from farm import consent, states
from farm.api.app import create_app
from farm.db import get_engine, transaction
from farm.nightly import PostgresLock, Scheduler, plan_night
from farm.tables import ConsentEvent, ConsentRecord, Take, TakeState

from ..helpers import assets, make_batch, take_state
from ..services import serving

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
NOW = datetime.now(UTC)


def evidence(client) -> str:
    r = client.post("/consent/evidence", files={"file": ("release.pdf", PDF, "application/pdf")})
    assert r.status_code in (200, 201), r.text
    assert r.json()["kind"] == "evidence" and r.json()["media_format"] == "pdf"
    return r.json()["sha256"]


def record(client, covers="both", linked=(), **terms) -> dict:
    body = {
        "subject": "Ana Actor",
        "covers": covers,
        "evidence_sha256": evidence(client),
        "evidence_kind": "release",
        "valid_from": (NOW - timedelta(days=1)).isoformat(),
        "uses": ["advertising"],
        "territories": ["EU"],
        "downstream": ["social"],
        "assets": list(linked),
        **terms,
    }
    r = client.post("/consent/records", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def actions(sessions, **where) -> list[tuple[str, str]]:
    with sessions() as session:
        return [(e.actor, e.action) for e in reversed(consent.events(session, **where))]


@contextmanager
def farm_with(settings, storage, policy: str):
    """The API with a consent policy; the hero pool renders tiny-concat (no 17B here)."""
    changed = settings.model_copy(update={"consent_policy": policy, "hero_checkpoint": "tiny-concat"})
    with serving(create_app(changed, storage)) as url:
        yield url


def test_recording_linking_and_the_audit_trail(client_as, media, sessions):
    ana, vic, olga = client_as("ana"), client_as("vic"), client_as("olga")
    image, audio = assets(ana, media)
    assert ana.get(f"/consent/assets/{image}").json()["status"] == "unknown"
    made = record(ana, linked=[image, audio])
    assert made["state"] == "standing" and sorted(made["assets"]) == sorted([image, audio])
    with sessions() as session:  # the hash the manifests carry is the hash of the record's terms
        row = session.get(ConsentRecord, made["id"])
        assert made["content_sha256"] == consent.content_digest(row) and len(made["content_sha256"]) == 64
    status = ana.get(f"/consent/assets/{image}").json()
    assert status["status"] == "consented" and [r["id"] for r in status["records"]] == [made["id"]]
    assert ana.post(f"/consent/records/{made['id']}/assets", json={"asset": image}).status_code == 200  # no-op
    # roles: viewers read, producers record, only operators revoke
    assert vic.get("/consent/records").status_code == 200
    assert vic.post("/consent/records", json={}).status_code == 403
    r = ana.post(f"/consent/records/{made['id']}/revoke", json={"reason": "asked"})
    assert r.status_code == 403 and r.json()["field"] == "role"
    assert olga.post(f"/consent/records/{made['id']}/revoke", json={"reason": "she withdrew"}).status_code == 200
    assert olga.post(f"/consent/records/{made['id']}/revoke", json={"reason": "again"}).status_code == 409
    assert ana.get(f"/consent/records/{made['id']}").json()["state"] == "revoked"
    assert actions(sessions, record_id=made["id"]) == [
        ("ana", "recorded"),
        ("ana", "linked"),
        ("ana", "linked"),
        ("olga", "revoked"),
    ]


def test_bad_input_is_named(client_as, media, sessions):
    ana = client_as("ana")
    image, audio = assets(ana, media)
    proof = evidence(ana)
    base = {"subject": "Bo", "covers": "likeness", "evidence_sha256": proof, "evidence_kind": "statement"}
    base["valid_from"] = NOW.isoformat()
    cases = {
        "valid_until": {"valid_until": (NOW - timedelta(hours=1)).isoformat()},
        "covers": {"covers": "face"},
        "uses": {"uses": ["x"] * (consent.MAX_TERMS + 1)},
        "evidence_sha256": {"evidence_sha256": "e" * 64},
        "assets[0]": {"assets": [audio]},  # a voice, on a likeness-only record
        "subject": {"subject": "bad\x00name"},
    }
    for field, change in cases.items():
        r = ana.post("/consent/records", json={**base, **change})
        assert r.status_code == 422, (field, r.text)
        assert field in (r.json().get("field") or ""), (field, r.json())
    r = ana.post("/consent/evidence", files={"file": ("notes.txt", b"just some words", "text/plain")})
    assert r.status_code == 415 and r.json()["field"] == "file"
    assert ana.post("/consent/records/nope/assets", json={"asset": image}).status_code == 404
    # an asset declared synthetic takes no record, and a linked one cannot be declared synthetic
    assert ana.post(f"/consent/assets/{image}/synthetic").json()["status"] == "synthetic"
    assert ana.post(f"/consent/assets/{image}/synthetic").json()["synthetic_by"] == "ana"  # once
    assert actions(sessions, asset=image) == [("ana", "declared_synthetic")]
    assert ana.get(f"/consent/assets/{'f' * 64}").status_code == 404
    r = ana.post("/consent/records", json={**base, "assets": [image]})
    assert r.status_code == 409 and "no real person" in r.json()["detail"]
    linked = record(ana, covers="voice", linked=[audio])
    r = ana.post(f"/consent/assets/{audio}/synthetic")
    assert r.status_code == 409 and linked["id"] in r.json()["detail"]


def test_each_policy_mode_at_submit(client_as, media, settings, storage, sessions):
    ana, elsewhere = client_as("ana"), client_as("ana")  # elsewhere: on a farm of each policy in turn
    image, audio = assets(ana, media)
    explore = {"takes": [{"prompt": "p", "mode": "TIA", "image": image, "audio": audio, "checkpoint": "tiny"}]}
    hero = {"takes": [{"prompt": "p", "mode": "TIA", "image": image, "audio": audio, "checkpoint": "tiny-concat"}]}
    answers = {}
    for policy in consent.POLICIES:
        with farm_with(settings, storage, policy) as url:
            elsewhere.base_url = url
            answers[policy] = (elsewhere.post("/batches", json=explore), elsewhere.post("/batches", json=hero))
    outcome = lambda r: take_state(ana, r.json()["take_ids"][0])["consent"]["outcome"] if r.status_code == 201 else r
    assert [outcome(r) for r in answers["off"]] == ["unchecked", "unchecked"]
    assert [outcome(r) for r in answers["warn"]] == ["warned", "warned"]
    assert outcome(answers["require-hero"][0]) == "warned"
    for refused in (answers["require-hero"][1], *answers["require"]):
        assert refused.status_code == 422 and refused.json()["field"] == "takes[0].image"
        assert "no consent record covers its likeness" in refused.json()["detail"]
        assert "portrait.png" in refused.json()["detail"] and "farm consent link" in refused.json()["detail"]
    warned = take_state(ana, answers["warn"][0].json()["take_ids"][0])["consent"]
    assert [m.split(":")[0] for m in warned["missing"]] == [
        f"the image portrait.png ({image[:12]})",
        f"the audio speech.wav ({audio[:12]})",
    ]
    # a record covering the likeness only: the voice is still missing; one ending mid-render covers nothing
    face = record(ana, covers="likeness", linked=[image])
    with farm_with(settings, storage, "require") as url:
        elsewhere.base_url = url
        r = elsewhere.post("/batches", json=explore)
        assert r.status_code == 422 and r.json()["field"] == "takes[0].audio"
        short = record(ana, covers="voice", linked=[audio], valid_until=(NOW + timedelta(minutes=5)).isoformat())
        r = elsewhere.post("/batches", json=explore)
        assert r.status_code == 422 and f"record {short['id']} ends on" in r.json()["detail"]
        voice = record(ana, covers="voice", linked=[audio])
        r = elsewhere.post("/batches", json=explore)
        assert r.status_code == 201, r.text
    decided = take_state(ana, r.json()["take_ids"][0])["consent"]
    assert decided["policy"] == "require" and decided["outcome"] == "covered"
    assert decided["inputs"]["image"]["records"] == [{"id": face["id"], "sha256": face["content_sha256"]}]
    assert decided["inputs"]["audio"]["records"] == [{"id": voice["id"], "sha256": voice["content_sha256"]}]


def _finish(sessions, take_id: str) -> None:
    """A take rendered to done through the state machine (its clip keys need not exist here)."""
    with transaction(sessions) as session:
        attempt = states.claim(session, take_id, "w1", "host", "cpu")
        keys = {k: f"takes/{take_id}/1/{k}" for k in ("clip_key", "thumbnail_key", "manifest_key")}
        states.finish(session, take_id, attempt, {**keys, "clip_sha256": "c" * 64, "clip_size": 1}, 1.0)


def test_revoking_cancels_what_has_not_rendered_and_withdraws_the_clips(client_as, media, sessions, clean):
    ana, olga = client_as("ana"), client_as("olga")
    image, audio = assets(ana, media)
    made = record(ana, covers="likeness", linked=[image])
    take = {"prompt": "p", "mode": "TIA", "image": image, "audio": audio}
    done, queued, running = make_batch(sessions, clean, [take, take, take])
    other = make_batch(sessions, clean, [{"prompt": "q", "mode": "TA", "audio": audio}])[0]
    _finish(sessions, done)
    with transaction(sessions) as session:
        states.claim(session, running, "w2", "host", "cpu")
    assert take_state(ana, done)["outputs"]["clip"] is not None
    r = olga.post(f"/consent/records/{made['id']}/revoke", json={"reason": "withdrawn by her agent"})
    assert r.status_code == 200
    after = {t: take_state(ana, t) for t in (done, queued, running, other)}
    assert after[queued]["state"] == "canceled" and after[queued]["error_class"] == "ConsentWithdrawn"
    assert after[running]["state"] == "running" and after[running]["cancel_requested"]  # stops after its step
    assert after[done]["state"] == "done" and after[done]["outputs"]["clip"] is None  # no more downloads
    assert after[done]["outputs"]["manifest"] is None and after[done]["outputs"]["thumbnail"]
    for t in (done, queued, running):
        assert "withdrawn by her agent" in after[t]["consent_withdrawn"]
    assert after[other]["state"] == "queued" and after[other]["consent_withdrawn"] is None
    trail = actions(sessions, record_id=made["id"])
    assert sorted(a for _, a in trail) == sorted(
        ["recorded", "linked", "revoked", "clip_withdrawn", "take_canceled", "take_canceled"]
    )
    assert actions(sessions, take_id=done) == [("olga", "clip_withdrawn")]


def test_expiry_withdraws_like_a_revocation_on_the_beats_pass(client_as, media, sessions, clean):
    ana = client_as("ana")
    image, _ = assets(ana, media)
    made = record(ana, covers="likeness", linked=[image], valid_until=(NOW + timedelta(days=2)).isoformat())
    queued = make_batch(sessions, clean, [{"prompt": "p", "mode": "TI", "image": image}])[0]
    clock = [NOW + timedelta(days=1)]
    beat = Scheduler(sessions, clean, PostgresLock(get_engine(clean.database), "beat"), clock=lambda: clock[0])
    try:
        beat.tick()
        assert take_state(ana, queued)["state"] == "queued"  # not yet
        clock[0] = NOW + timedelta(days=3)
        beat.tick()
        beat.tick()  # acted on once
    finally:
        beat.lock.release()
    take = take_state(ana, queued)
    assert take["state"] == "canceled" and "expired" in take["consent_withdrawn"]
    assert ana.get(f"/consent/records/{made['id']}").json()["state"] == "expired"
    assert actions(sessions, record_id=made["id"])[-2:] == [("farm", "expired"), ("farm", "take_canceled")]
    assert [a for _, a in actions(sessions, record_id=made["id"])].count("expired") == 1
    r = ana.post(f"/takes/{queued}/retry")  # a withdrawn take is never rendered again
    assert r.status_code == 409 and "expired" in r.json()["detail"]


@pytest.mark.parametrize("policy", consent.POLICIES)
def test_the_nightly_run_skips_and_reports_takes_consent_does_not_cover(policy, client_as, media, sessions, clean):
    ana = client_as("ana")
    image, audio = assets(ana, media)
    settings = clean.model_copy(update={"consent_policy": policy, "nightly_budget_gpu_hours": 1000.0})
    covered_image = ana.post("/assets", files={"file": ("other.png", media["image"].read_bytes() + b"\0")}).json()
    record(ana, linked=[covered_image["sha256"], audio])
    take = lambda img: {"prompt": "p", "mode": "TIA", "image": img, "audio": audio, "seed": 1}
    covered, uncovered = make_batch(sessions, clean, [take(covered_image["sha256"]), take(image)])
    with transaction(sessions) as session:
        for t in (covered, uncovered):
            session.get(Take, t).state = TakeState.done
            session.get(Take, t).selected_for_hero = True
    night, inside = date(2030, 1, 7), datetime(2030, 1, 7, 23, 0, tzinfo=UTC)
    for _ in range(2):  # two passes: one skip reported, audited once
        with transaction(sessions) as session:
            report = plan_night(session, settings, night, inside)
            skipped = report.skipped_consent
    with sessions() as session:
        heroes = session.execute(select(Take).where(Take.hero_night == night)).scalars().all()
        parents = sorted(h.parent_id for h in heroes)
        decisions = {h.parent_id: h.consent["outcome"] for h in heroes}
        skips = session.execute(select(ConsentEvent).where(ConsentEvent.action == "hero_skipped")).scalars().all()
    if policy in ("off", "warn"):
        assert parents == sorted([covered, uncovered]) and skipped == 0 and skips == []
        unchecked = policy == "off"
        assert decisions == {
            covered: "unchecked" if unchecked else "covered",
            uncovered: "unchecked" if unchecked else "warned",
        }
    else:  # require-hero and require: a hero take needs cover
        assert parents == [covered] and skipped == 1 and decisions == {covered: "covered"}
        assert [(e.take_id, e.actor) for e in skips] == [(uncovered, "farm")]
        assert "no consent record covers its likeness" in skips[0].detail["missing"][0]
        report = client_as("vic").get(f"/nights/{night.isoformat()}")
        assert report.status_code == 200 and report.json()["skipped_consent"] == 1


def test_the_cli_records_links_revokes_and_lists_the_trail(api, tokens, media, tmp_path, sessions):
    from .test_cli import farm

    release = tmp_path / "release.pdf"
    release.write_bytes(PDF)
    ana, olga = ("--api", api, "--token", tokens["ana"]), ("--api", api, "--token", tokens["olga"])
    r = farm("consent", "record", "--subject", "Ana Actor", "--covers", "likeness", "--evidence", str(release),
             "--kind", "release", "--from", "2026-01-01", "--use", "film", "--territory", "EU",
             "--asset", str(media["image"]), *ana)  # fmt: skip
    assert r.returncode == 0, r.stderr
    record_id = r.stdout.split()[0]
    assert "standing Ana Actor  covers likeness" in r.stdout and "uses: film" in r.stdout
    r = farm("consent", "link", record_id, str(media["audio"]), *ana)  # a voice on a likeness-only record
    assert r.returncode == 1 and r.stderr.startswith("error: asset: record") and "needs voice" in r.stderr
    assert "Traceback" not in r.stderr
    r = farm("consent", "status", str(media["image"]), *ana)
    assert r.returncode == 0 and "consented" in r.stdout.splitlines()[0]
    r = farm("consent", "revoke", record_id, *ana)
    assert r.returncode == 1 and "--reason" in r.stderr
    r = farm("consent", "revoke", record_id, "--reason", "withdrawn", *ana)
    assert r.returncode == 1 and "needs a operator" in r.stderr
    r = farm("consent", "revoke", record_id, "--reason", "withdrawn", *olga)
    assert r.returncode == 0 and "revoked by olga" in r.stdout
    r = farm("consent", "events", "--record", record_id, *ana)
    assert [line.split()[2] for line in r.stdout.splitlines()] == ["revoked", "linked", "recorded"]


def test_a_revocation_racing_submits_withdraws_every_take_the_record_covered(client_as, media, sessions, clean):
    """Submits lock the records they decide on (FOR SHARE): a revocation waits for them, then
    finds their takes. Every take a record was said to cover ends withdrawn, however they interleave."""
    import threading

    from farm import batches

    ana = client_as("ana")
    image, _ = assets(ana, media)
    made = record(ana, covers="likeness", linked=[image])
    settings = clean.model_copy(update={"consent_policy": "warn"})
    start = threading.Barrier(5)
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            start.wait(30)
            for _ in range(10):
                with transaction(sessions) as session:
                    batches.create_batch(session, {"takes": [{"prompt": "p", "mode": "TI", "image": image}]}, "ana",
                                         settings)  # fmt: skip
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    start.wait(30)
    with transaction(sessions) as session:
        consent.revoke(session, "olga", made["id"], "withdrawn mid-submit")
    for t in threads:
        t.join(120)
    assert errors == []
    with sessions() as session:
        takes = session.execute(select(Take).where(Take.image_sha256 == image)).scalars().all()
    assert len(takes) == 40
    covered = [t for t in takes if t.consent["inputs"]["image"]["records"]]
    for t in covered:  # decided while the record stood: withdrawn, and not left to render
        assert t.consent_withdrawn is not None and t.state == TakeState.canceled, (t.id, t.state)
    for t in takes:
        if not t.consent["inputs"]["image"]["records"]:  # decided after: warned, naming the revocation
            assert t.consent["outcome"] == "warned" and "revoked by olga" in t.consent["missing"][0]
