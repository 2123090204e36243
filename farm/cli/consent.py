"""`farm consent ...` (records, links, synthetic declarations, the audit trail, over the API)
and `farm verify CLIP.mp4` (a clip's content credentials, read and validated here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .client import api_client

ACTIONS = ("record", "list", "show", "revoke", "link", "synthetic", "status", "events")


def add_parsers(sub) -> None:
    c = sub.add_parser("consent", help="consent records: record, list, show, revoke, link, synthetic, status, events")
    c.add_argument("action", choices=ACTIONS)
    c.add_argument("target", nargs="*", help="a record id; link: RECORD ASSET; synthetic, status: ASSET (sha256, file)")
    c.add_argument("--subject", help="record: the person's name or internal id; list: filter")
    c.add_argument("--covers", choices=["likeness", "voice", "both"])
    c.add_argument("--evidence", help="record: the signed release (PDF, image) or recorded statement (audio, video)")
    c.add_argument("--kind", choices=["release", "statement"], help="record: what the evidence is")
    c.add_argument("--from", dest="valid_from", help="record: valid from (ISO date or time, UTC; default: now)")
    c.add_argument("--until", dest="valid_until", help="record: valid until (default: until revoked)")
    c.add_argument("--use", action="append", default=[], help="record: an allowed use (repeatable)")
    c.add_argument("--territory", action="append", default=[], help="record: a territory (repeatable)")
    c.add_argument("--downstream", action="append", default=[], help="record: a downstream use (repeatable)")
    c.add_argument("--asset", action="append", default=[], help="record: an asset it covers, sha256 or file")
    c.add_argument("--reason", help="revoke: why (kept in the audit trail)")
    c.add_argument("--record", help="events: of this record")
    c.add_argument("--take", help="events: of this take")
    c.add_argument("--json", action="store_true")
    c.add_argument("--api", default=None)
    c.add_argument("--token", default=None, help="API token (default: $FARM_API_TOKEN)")
    c.set_defaults(fn=cmd_consent)
    v = sub.add_parser("verify", help="read and validate a clip's content credentials (C2PA) and print them")
    v.add_argument("clip")
    v.add_argument("--manifest", help="the take's manifest.json: check the credentials name it")
    v.add_argument("--json", action="store_true")
    v.set_defaults(fn=cmd_verify)


def _fail(response) -> None:
    if response.status_code >= 400:
        try:
            body = response.json()
            text = f"{body.get('field') or 'request'}: {body.get('detail')}"
        except ValueError:
            text = response.text[:500]
        raise SystemExit(f"error: {text}")


def _sha(client, value: str, route: str = "/assets") -> str:
    """A sha256 as given, or a file's, uploaded."""
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise SystemExit(f"error: {value}: neither a sha256 nor a file")
    with open(path, "rb") as f:
        r = client.post(route, files={"file": (path.name, f)})
    _fail(r)
    return r.json()["sha256"]


def _print_record(r: dict) -> None:
    until = r["valid_until"] or "until revoked"
    print(f"{r['id']}  {r['state']:8s} {r['subject']}  covers {r['covers']}  {r['valid_from']} -> {until}")
    for name in ("uses", "territories", "downstream"):
        if r[name]:
            print(f"    {name}: {', '.join(r[name])}")
    print(f"    evidence: {r['evidence_kind']} {r['evidence_sha256']}  content sha256 {r['content_sha256']}")
    print(f"    recorded by {r['recorded_by']} at {r['recorded_at']}")
    if r["revoked_at"]:
        print(f"    revoked by {r['revoked_by']} at {r['revoked_at']}: {r['revoke_reason']}")
    for sha in r.get("assets") or []:
        print(f"    asset {sha}")


def _need(args, n: int, what: str) -> list[str]:
    if len(args.target) != n:
        raise SystemExit(f"error: farm consent {args.action} takes {what}")
    return args.target


def cmd_consent(args) -> int:
    from datetime import UTC, datetime

    with api_client(args, timeout=120) as client:
        if args.action == "record":
            missing = [f"--{n}" for n in ("subject", "covers", "evidence", "kind") if not getattr(args, n)]
            if missing:
                raise SystemExit(f"error: farm consent record needs {', '.join(missing)}")
            body = {
                "subject": args.subject,
                "covers": args.covers,
                "evidence_sha256": _sha(client, args.evidence, "/consent/evidence"),
                "evidence_kind": args.kind,
                "valid_from": args.valid_from or datetime.now(UTC).isoformat(),
                "valid_until": args.valid_until,
                "uses": args.use,
                "territories": args.territory,
                "downstream": args.downstream,
                "assets": [_sha(client, a) for a in args.asset],
            }
            r = client.post("/consent/records", json=body)
        elif args.action == "list":
            r = client.get("/consent/records", params={"subject": args.subject} if args.subject else {})
        elif args.action == "show":
            r = client.get(f"/consent/records/{_need(args, 1, 'a record id')[0]}")
        elif args.action == "revoke":
            if not args.reason:
                raise SystemExit("error: farm consent revoke needs --reason (it is kept in the audit trail)")
            r = client.post(f"/consent/records/{_need(args, 1, 'a record id')[0]}/revoke", json={"reason": args.reason})
        elif args.action == "link":
            record_id, asset = _need(args, 2, "a record id and an asset")
            r = client.post(f"/consent/records/{record_id}/assets", json={"asset": _sha(client, asset)})
        elif args.action in ("synthetic", "status"):
            sha = _sha(client, _need(args, 1, "an asset (sha256 or file)")[0])
            r = (client.post if args.action == "synthetic" else client.get)(
                f"/consent/assets/{sha}" + ("/synthetic" if args.action == "synthetic" else "")
            )
        else:
            params = {k: v for k, v in (("record_id", args.record), ("take_id", args.take)) if v}
            r = client.get("/consent/events", params=params)
        _fail(r)
    data = r.json()
    if args.json:
        print(json.dumps(data, indent=2))
    elif args.action in ("record", "show", "revoke", "link"):
        _print_record(data)
    elif args.action == "list":
        for record in data:
            _print_record(record)
    elif args.action in ("synthetic", "status"):
        by = f" (declared by {data['synthetic_by']})" if data["synthetic_by"] else ""
        print(f"{data['sha256']}  {data['status']}{by}")
        for record in data["records"]:
            _print_record(record)
    else:
        for e in data:
            what = " ".join(f"{k}={v}" for k, v in (("record", e["record_id"]), ("asset", e["asset_sha256"]),
                                                     ("take", e["take_id"])) if v)  # fmt: skip
            print(f"{e['at']}  {e['actor']:10s} {e['action']:18s} {what}  {json.dumps(e['detail'])}")
    return 0


def cmd_verify(args) -> int:
    """Exit 0 when the clip's credentials are valid (and name the manifest, if given); 1 if not."""
    from ..credentials import read
    from ..settings import get_settings

    path = Path(args.clip)
    try:
        manifest = json.loads(Path(args.manifest).read_text()) if args.manifest else None
        found = read(path, get_settings(), manifest=manifest)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.json:
        print(json.dumps({**vars(found), "ok": found.ok}, indent=2, default=str))
        return 0 if found.ok else 1
    notes = [
        "development chain: not for delivery" if found.development else "",
        "intact, but its signer is not in the trust list (FARM_C2PA_TRUST_ANCHORS)" if found.state == "Valid" else "",
    ]
    print(f"{path}: {found.state}" + "".join(f" ({n})" for n in notes if n))
    if found.signer:
        signer = found.signer
        print(f"  signed by {signer.get('common_name')} ({signer.get('issuer')}), {signer.get('alg')}")
    for gen in found.generator:
        print(f"  generator: {gen.get('name')} {gen.get('version')}")
    for action in found.actions:
        agent = action.get("softwareAgent") or {}
        print(f"  action: {action.get('action')} {action.get('digitalSourceType')} by {agent.get('name')}")
    if found.take:
        print(f"  take {found.take.get('take_id')}  manifest sha256 {found.take.get('manifest_sha256')}")
        for rec in found.take.get("consent_records") or []:
            print(f"  consent: {rec['input']} record {rec['id']} sha256 {rec['sha256']}")
    if found.manifest_matches is not None:
        print(f"  manifest: {'matches' if found.manifest_matches else 'DOES NOT MATCH'} {args.manifest}")
    for failure in found.failures:
        print(f"  failure: {failure}", file=sys.stderr)
    if not found.ok:
        print("  not valid: the clip was altered after signing, or carries no farm credentials", file=sys.stderr)
    return 0 if found.ok else 1
