"""Consent: the records of a real person's consent to the use of their likeness or voice,
the assets linked to them, the policy that decides what may render, and the audit trail.

Written once here: what a record covers, the policy modes, what an input needs (an image a
likeness, an audio a voice), when an input is covered, and what revoking or expiring a
record does (its unstarted takes are canceled, its clips marked "consent withdrawn").

A record's terms never change (its `content_sha256` is their hash, which manifests and the
clips' content credentials carry); it ends by revocation or expiry. Every change, and every
decision it makes, is a ConsentEvent row; nothing is deleted. Callers commit.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from . import assets, states
from .errors import IllegalTransition, InvalidRequest, NotFound
from .tables import Asset, ConsentEvent, ConsentLink, ConsentRecord, Take, TakeState, as_utc, new_id, utcnow

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger(__name__)

COVERS = ("likeness", "voice", "both")  #: what a record covers
EVIDENCE_KINDS = ("release", "statement")  #: a signed release document, a recorded statement
#: the policy modes (FARM_CONSENT_POLICY): nothing checked; uncovered inputs recorded as a
#: warning; refused on the hero pool (the delivery renders), warned elsewhere; refused anywhere
POLICIES = ("off", "warn", "require-hero", "require")
DEFAULT_POLICY = "require-hero"
NEEDS = {"image": "likeness", "audio": "voice"}  #: what an input of each kind needs a record to cover
ACTIONS = (
    "recorded",
    "linked",
    "declared_synthetic",
    "revoked",
    "expired",
    "take_canceled",
    "clip_withdrawn",
    "hero_skipped",
)
MAX_TERMS = 50  #: entries in each of uses, territories, downstream
MAX_LINKS = 100  #: assets linked in one request
FARM = "farm"  #: the actor of what the farm does itself (expiry)
CHUNK = 5000  #: take ids per UPDATE (a statement's bound parameters are limited)


def _iso(at: datetime | None) -> str | None:
    return as_utc(at).isoformat() if at is not None else None


def content_digest(record: ConsentRecord) -> str:
    """The sha256 of a record's terms (its id, subject, coverage, uses, territories,
    downstream uses, validity, evidence and who recorded it when), canonical JSON."""
    terms = {
        "id": record.id,
        "subject": record.subject,
        "covers": record.covers,
        "uses": record.uses,
        "territories": record.territories,
        "downstream": record.downstream,
        "valid_from": _iso(record.valid_from),
        "valid_until": _iso(record.valid_until),
        "evidence_sha256": record.evidence_sha256,
        "evidence_kind": record.evidence_kind,
        "recorded_by": record.recorded_by,
        "recorded_at": _iso(record.recorded_at),
    }
    return hashlib.sha256(json.dumps(terms, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def ended(record: ConsentRecord) -> str | None:
    """Why the record no longer grants anything (revoked, expired); None while it stands."""
    if record.revoked_at is not None:
        return f"revoked by {record.revoked_by} on {_iso(record.revoked_at)}: {record.revoke_reason}"
    if record.expired_at is not None:
        return f"expired on {_iso(record.valid_until)}"
    return None


def _audit(session: Session, actor: str, action: str, *, record_id=None, asset=None, take_id=None, **detail) -> None:
    assert action in ACTIONS, action
    session.add(
        ConsentEvent(
            at=utcnow(), actor=actor, action=action, record_id=record_id, asset_sha256=asset, take_id=take_id,
            detail=detail,
        )
    )  # fmt: skip


def _terms(field: str, values: Iterable[str]) -> list[str]:
    out = [v.strip() for v in values if v and v.strip()]
    if len(out) > MAX_TERMS:
        raise InvalidRequest(field, f"{len(out)} entries; at most {MAX_TERMS}")
    return list(dict.fromkeys(out))


def get(session: Session, record_id: str) -> ConsentRecord:
    record = session.get(ConsentRecord, record_id)
    if record is None:
        raise NotFound(f"consent record {record_id} not found", field="record_id")
    return record


def _asset(session: Session, sha256: str, field: str) -> Asset:
    asset = session.get(Asset, sha256)
    if asset is None:
        raise InvalidRequest(field, f"no uploaded asset with sha256 {sha256}; upload it first")
    return asset


def _check_fits(record: ConsentRecord, asset: Asset, field: str) -> None:
    need = NEEDS.get(asset.kind)
    if need is None:
        raise InvalidRequest(field, f"{asset.filename} is a {asset.kind}; only images (likeness) and audio (voice)")
    if record.covers not in (need, "both"):
        raise InvalidRequest(
            field,
            f"record {record.id} covers {record.covers}; the {asset.kind} {asset.filename} needs {need}: "
            f"record the subject's consent to their {need}",
        )
    if asset.synthetic_by:
        raise IllegalTransition(
            f"{asset.filename} was declared no real person by {asset.synthetic_by}; a synthetic asset takes no "
            "consent record",
        )


def record(
    session: Session,
    actor: str,
    *,
    subject: str,
    covers: str,
    evidence_sha256: str,
    evidence_kind: str,
    valid_from: datetime,
    valid_until: datetime | None = None,
    uses: Iterable[str] = (),
    territories: Iterable[str] = (),
    downstream: Iterable[str] = (),
    assets: Iterable[str] = (),
) -> ConsentRecord:
    """A new record, audited, with the assets it covers linked."""
    if covers not in COVERS:
        raise InvalidRequest("covers", f"{covers!r}; one of {', '.join(COVERS)}")
    if evidence_kind not in EVIDENCE_KINDS:
        raise InvalidRequest("evidence_kind", f"{evidence_kind!r}; one of {', '.join(EVIDENCE_KINDS)}")
    if not subject.strip():
        raise InvalidRequest("subject", "empty; give the person's name or an internal id")
    if valid_until is not None and as_utc(valid_until) <= as_utc(valid_from):
        raise InvalidRequest("valid_until", "is not after valid_from; give the day the consent ends, or none")
    _asset(session, evidence_sha256, "evidence_sha256")
    linked = list(dict.fromkeys(assets))
    if len(linked) > MAX_LINKS:
        raise InvalidRequest("assets", f"{len(linked)} assets; link at most {MAX_LINKS} at a time")
    row = ConsentRecord(
        id=new_id(),
        subject=subject.strip(),
        covers=covers,
        uses=_terms("uses", uses),
        territories=_terms("territories", territories),
        downstream=_terms("downstream", downstream),
        valid_from=as_utc(valid_from),
        valid_until=as_utc(valid_until) if valid_until else None,
        evidence_sha256=evidence_sha256,
        evidence_kind=evidence_kind,
        recorded_by=actor,
        recorded_at=utcnow(),
    )
    row.content_sha256 = content_digest(row)
    session.add(row)
    session.flush()
    _audit(session, actor, "recorded", record_id=row.id, content_sha256=row.content_sha256, subject=row.subject)
    for i, sha in enumerate(linked):
        link(session, actor, row.id, sha, field=f"assets[{i}]")
    return row


def link(session: Session, actor: str, record_id: str, sha256: str, field: str = "asset") -> bool:
    """Link an asset to a standing record; False (and nothing written) if it already is."""
    row = get(session, record_id)
    why = ended(row)
    if why:
        raise IllegalTransition(f"record {record_id} was {why}; record a new consent")
    asset = _asset(session, sha256, field)
    _check_fits(row, asset, field)
    if session.get(ConsentLink, (sha256, record_id)) is not None:
        return False
    session.add(ConsentLink(asset_sha256=sha256, record_id=record_id, linked_by=actor, linked_at=utcnow()))
    _audit(session, actor, "linked", record_id=record_id, asset=sha256, kind=asset.kind)
    return True


def declare_synthetic(session: Session, actor: str, sha256: str) -> Asset:
    """Declare that an asset shows or voices no real person."""
    asset = assets.get(session, sha256)
    if asset.kind not in NEEDS:
        raise InvalidRequest("asset", f"{asset.filename} is a {asset.kind}; only images and audio carry consent")
    linked = session.execute(select(ConsentLink.record_id).where(ConsentLink.asset_sha256 == sha256)).scalars().all()
    if linked:
        raise IllegalTransition(f"{asset.filename} is linked to consent records {', '.join(linked)}: a real person")
    if asset.synthetic_by is None:
        asset.synthetic_by, asset.synthetic_at = actor, utcnow()
        _audit(session, actor, "declared_synthetic", asset=sha256, kind=asset.kind)
    return asset


# ---------- an asset's status, and the policy ----------


@dataclass(frozen=True)
class AssetConsent:
    sha256: str
    status: str  #: consented (linked to records), synthetic (no real person) or unknown
    records: list[ConsentRecord]  #: every record linked to it, standing or not
    synthetic_by: str | None


def statuses(session: Session, shas: Iterable[str], lock: bool = False) -> dict[str, AssetConsent]:
    """The consent status of each asset, in two queries whatever their number. lock: hold
    their records (FOR SHARE) until commit, so a revocation waits for a submit deciding on
    them, and then sees its takes."""
    wanted = list(set(shas))
    if not wanted:
        return {}
    rows = {a.sha256: a for a in session.execute(select(Asset).where(Asset.sha256.in_(wanted))).scalars()}
    linked: dict[str, list[ConsentRecord]] = {sha: [] for sha in wanted}
    stmt = (
        select(ConsentLink.asset_sha256, ConsentRecord)
        .join(ConsentRecord, ConsentRecord.id == ConsentLink.record_id)
        .where(ConsentLink.asset_sha256.in_(wanted))
        .order_by(ConsentRecord.recorded_at)
    )
    for sha, rec in session.execute(stmt.with_for_update(read=True, of=ConsentRecord) if lock else stmt):
        linked[sha].append(rec)
    out = {}
    for sha in wanted:
        synthetic = rows[sha].synthetic_by if sha in rows else None
        status = "consented" if linked[sha] else "synthetic" if synthetic else "unknown"
        out[sha] = AssetConsent(sha, status, linked[sha], synthetic)
    return out


def status(session: Session, sha256: str) -> AssetConsent:
    assets.get(session, sha256)  # an unknown asset: 404
    return statuses(session, [sha256])[sha256]


def covering(found: AssetConsent, need: str, start: datetime, end: datetime) -> tuple[list[ConsentRecord], str]:
    """The standing records that cover `need` through [start, end], and, when none does, what is missing."""
    if found.status == "synthetic":
        return [], ""
    good, reasons = [], []
    for rec in found.records:
        until = as_utc(rec.valid_until) if rec.valid_until else None
        why = ended(rec)
        if why:
            reasons.append(f"record {rec.id} was {why}")
        elif rec.covers not in (need, "both"):
            reasons.append(f"record {rec.id} covers only {rec.covers}")
        elif as_utc(rec.valid_from) > start:
            reasons.append(f"record {rec.id} starts on {_iso(rec.valid_from)}")
        elif until is not None and until < end:
            reasons.append(f"record {rec.id} ends on {_iso(until)}, before the render would end")
        else:
            good.append(rec)
    if good:
        return good, ""
    if not found.records:
        return [], f"no consent record covers its {need}"
    return [], "; ".join(reasons)


def requires(policy: str, pool: str) -> bool:
    """Whether the policy refuses an uncovered take of this pool (else it warns, or is off)."""
    return policy == "require" or (policy == "require-hero" and pool == "hero")


def decide(
    session: Session,
    rows: list[dict],
    settings: Settings,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    field: str = "takes",
    refuse: bool = True,
) -> list[dict]:
    """Each take's consent decision for a render between start (now) and end (default: now
    plus FARM_RENDER_TIME_LIMIT), added to its row values as `consent`. A take the policy
    refuses raises InvalidRequest naming the take's input and what is missing (refuse=False:
    it is decided "refused" and returned, for the nightly run to skip)."""
    policy = settings.consent_policy
    start = start or utcnow()
    end = end or start + timedelta(seconds=settings.render_time_limit)
    shas = [row[f"{kind}_sha256"] for row in rows for kind in NEEDS if row.get(f"{kind}_sha256")]
    found = statuses(session, shas, lock=True)
    names = dict(session.execute(select(Asset.sha256, Asset.filename).where(Asset.sha256.in_(set(shas)))).all())
    out = []
    for i, row in enumerate(rows):
        inputs, missing = {}, []
        for kind, need in NEEDS.items():
            sha = row.get(f"{kind}_sha256")
            if not sha:
                continue
            good, why = covering(found[sha], need, start, end)
            inputs[kind] = {
                "sha256": sha,
                "status": found[sha].status,
                "records": [{"id": r.id, "sha256": r.content_sha256} for r in good],
                "synthetic_by": found[sha].synthetic_by,
                "missing": why or None,
            }
            if why:
                missing.append((kind, f"the {kind} {names.get(sha, sha[:12])} ({sha[:12]}): {why}"))
        outcome = "unchecked" if policy == "off" else "covered" if not missing else "warned"
        if missing and policy != "off" and requires(policy, row.get("pool", "explore")):
            outcome = "refused"
            if refuse:
                kind, text = missing[0]
                raise InvalidRequest(
                    f"{field}[{i}].{kind}",
                    f"consent policy {policy}: {text}; link a consent record to it (farm consent link) or, "
                    "if no real person is shown or heard, declare it synthetic (farm consent synthetic)",
                )
        decision = {
            "policy": policy,
            "outcome": outcome,
            "decided_at": _iso(start),
            "until": _iso(end),
            "inputs": inputs,
            "missing": [text for _, text in missing] if policy != "off" else [],
        }
        out.append({**row, "consent": decision})
    return out


def snapshot(session: Session, take: Take) -> dict:
    """What the manifest records, per input, at render time: its status and the standing
    records linked to it, each with the sha256 of its content."""
    shas = {kind: getattr(take, f"{kind}_sha256") for kind in NEEDS if getattr(take, f"{kind}_sha256")}
    found = statuses(session, shas.values())
    return {
        kind: {
            "status": found[sha].status,
            "records": [{"id": r.id, "sha256": r.content_sha256} for r in found[sha].records if not ended(r)],
            "synthetic_by": found[sha].synthetic_by,
        }
        for kind, sha in shas.items()
    }


# ---------- the end of a record: revocation and expiry ----------


def revoke(session: Session, actor: str, record_id: str, reason: str, now: datetime | None = None) -> ConsentRecord:
    """Revoke a standing record: its takes are withdrawn (see `_withdraw`)."""
    now = now or utcnow()
    row = session.execute(select(ConsentRecord).where(ConsentRecord.id == record_id).with_for_update()).scalar()
    if row is None:
        raise NotFound(f"consent record {record_id} not found", field="record_id")
    why = ended(row)
    if why:
        raise IllegalTransition(f"record {record_id} was already {why}")
    if not reason.strip():
        raise InvalidRequest("reason", "empty; say why the consent is revoked (it is kept in the audit trail)")
    row.revoked_by, row.revoked_at, row.revoke_reason = actor, now, reason.strip()
    _audit(session, actor, "revoked", record_id=record_id, reason=row.revoke_reason)
    _withdraw(session, row, f"consent record {record_id} revoked: {row.revoke_reason}", actor, now)
    return row


def expire_due(session: Session, now: datetime | None = None) -> list[str]:
    """Records whose validity ended and were not yet acted on: marked expired, their takes
    withdrawn. Ids of those expired (the farm's beat calls this every pass)."""
    now = now or utcnow()
    due = session.execute(
        select(ConsentRecord)
        .where(ConsentRecord.valid_until <= now, ConsentRecord.expired_at.is_(None), ConsentRecord.revoked_at.is_(None))
        .with_for_update(skip_locked=True)
    ).scalars()
    out = []
    for row in due:
        row.expired_at = now
        _audit(session, FARM, "expired", record_id=row.id, valid_until=_iso(row.valid_until))
        _withdraw(session, row, f"consent record {row.id} expired on {_iso(row.valid_until)}", FARM, now)
        out.append(row.id)
    return out


def _withdraw(session: Session, row: ConsentRecord, why: str, actor: str, now: datetime) -> None:
    """Every take using an asset linked to the record is marked "consent withdrawn": a done
    take's clip is no longer handed out, a failed or canceled one is never retried, and one
    that has not finished is ended (a rendering take stops after its current step)."""
    linked = select(ConsentLink.asset_sha256).where(ConsentLink.record_id == row.id)
    using = (or_(Take.image_sha256.in_(linked), Take.audio_sha256.in_(linked)), Take.consent_withdrawn.is_(None))
    takes = session.execute(select(Take.id, Take.state).where(*using)).all()
    for i in range(0, len(takes), CHUNK):  # by id: exactly the takes acted on below
        session.execute(
            update(Take)
            .where(Take.id.in_([t.id for t in takes[i : i + CHUNK]]))
            .values(consent_withdrawn=why[:4000], updated_at=now)
            .execution_options(synchronize_session=False)
        )
    for take_id, state in takes:
        if state == TakeState.done:
            _audit(session, actor, "clip_withdrawn", record_id=row.id, take_id=take_id, reason=why)
            continue
        if state in states.RETRYABLE:  # no clip, and a retry is refused from now on
            continue
        if not states.cancel_unstarted(session, take_id, "ConsentWithdrawn", why, now):
            try:
                states.cancel(session, take_id, now)
            except IllegalTransition:  # it finished meanwhile: its clip is marked withdrawn above
                pass
        _audit(session, actor, "take_canceled", record_id=row.id, take_id=take_id, reason=why, was=state.value)
    if takes:
        log.warning("%s: %d takes withdrawn", why, len(takes))


def events(
    session: Session,
    *,
    record_id: str | None = None,
    asset: str | None = None,
    take_id: str | None = None,
    limit: int = 200,
) -> list[ConsentEvent]:
    """The audit trail, newest first."""
    stmt = select(ConsentEvent).order_by(ConsentEvent.id.desc()).limit(limit)
    for column, value in ((ConsentEvent.record_id, record_id), (ConsentEvent.asset_sha256, asset),
                          (ConsentEvent.take_id, take_id)):  # fmt: skip
        if value is not None:
            stmt = stmt.where(column == value)
    return list(session.execute(stmt).scalars())


def records(session: Session, subject: str | None = None, limit: int = 200) -> list[ConsentRecord]:
    """Records, newest first; `subject`: part of it, any case."""
    stmt = select(ConsentRecord).order_by(ConsentRecord.recorded_at.desc()).limit(limit)
    if subject:
        stmt = stmt.where(ConsentRecord.subject.ilike(f"%{subject}%"))
    return list(session.execute(stmt).scalars())


def linked_assets(session: Session, record_id: str) -> list[ConsentLink]:
    return list(
        session.execute(select(ConsentLink).where(ConsentLink.record_id == record_id).order_by(ConsentLink.linked_at))
        .scalars()
        .all()
    )


def skipped(session: Session, parent_id: str, night: date, missing: list[str]) -> None:
    """The nightly run skipped a selected take its consent does not cover: audited once a night."""
    seen = session.execute(
        select(ConsentEvent.id).where(
            ConsentEvent.take_id == parent_id,
            ConsentEvent.action == "hero_skipped",
            ConsentEvent.detail["night"].as_string() == night.isoformat(),
        )
    ).first()
    if seen is None:
        _audit(session, FARM, "hero_skipped", take_id=parent_id, night=night.isoformat(), missing=missing)
        log.warning("night %s: take %s not planned, its consent does not cover it: %s", night, parent_id, missing)
