"""The commands that talk to a running farm over its API: `farm submit` and `farm takes`."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import httpx
import yaml

from ..batches import load_yaml
from ..errors import InvalidRequest

DEFAULT_API = "http://127.0.0.1:8000"


def api_client(args, timeout: float = 60) -> httpx.Client:
    """An HTTP client for the farm's API, signed in with --token or FARM_API_TOKEN."""
    token = getattr(args, "token", None) or os.environ.get("FARM_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def signed_in(response: httpx.Response) -> None:
        if response.status_code == 401:
            raise SystemExit(
                "error: authorization: the farm needs an API token; create one with "
                "`farm user token NAME` and set FARM_API_TOKEN or pass --token"
            )

    return httpx.Client(base_url=api_url(args), timeout=timeout, headers=headers, event_hooks={"response": [signed_in]})


def refuse(r: httpx.Response) -> None:
    """Exit with the API's error in its words (`error: field: detail`) when it refused."""
    if r.status_code < 400:
        return
    try:
        detail = r.json()
    except ValueError:
        raise SystemExit(f"error: the farm answered {r.status_code}: {r.text[:300]}") from None
    if isinstance(detail.get("detail"), str):
        raise SystemExit(f"error: {detail.get('field') or 'batch'}: {detail['detail']}")
    raise SystemExit(f"error: {json.dumps(detail)}")


def api_url(args) -> str:
    return getattr(args, "api", None) or os.environ.get("FARM_API", DEFAULT_API)


def _upload(client: httpx.Client, path: Path) -> str:
    with open(path, "rb") as f:
        r = client.post("/assets", files={"file": (path.name, f)})
    if r.status_code >= 400:
        raise SystemExit(f"error: uploading {path}: {r.json().get('detail', r.text)}")
    return r.json()["sha256"]


def _resolve_media(client: httpx.Client, take: dict, base: Path) -> dict:
    out = dict(take)
    for kind in ("image", "audio"):
        value = take.get(kind)
        if isinstance(value, str) and not (len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
            path = (base / value).expanduser()
            if not path.is_file():
                raise SystemExit(f"error: {kind}: file not found: {path}")
            out[kind] = _upload(client, path)
    return out


def gpu_time(seconds: float | None) -> str:
    if seconds is None:
        return "GPU time not known yet (nothing of its checkpoints has finished on this farm)"
    return f"about {seconds / 3600:.1f} GPU hours" if seconds >= 3600 else f"about {seconds / 60:.0f} GPU minutes"


def confirm_big(client: httpx.Client, body: dict, yes: bool) -> None:
    """Show a big batch's size and GPU time and ask before it is submitted (--yes: do not ask);
    say what keeps takes waiting."""
    r = client.post("/batches/estimate", json=body)
    refuse(r)
    cost = r.json()
    for line in cost["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    if not cost["confirm"] or yes:
        return
    what = f"{cost['takes']} takes, {gpu_time(cost['gpu_seconds'])}"
    if not sys.stdin.isatty():
        raise SystemExit(f"error: this batch is {what}; pass --yes to submit it")
    if input(f"Submit {what}? [y/N] ").strip().lower() not in ("y", "yes"):
        raise SystemExit("not submitted")


def cmd_submit(args) -> int:
    from tqdm import tqdm

    path = Path(args.file)
    try:
        raw = path.read_bytes()
        body = load_yaml(raw)  # anchors and aliases refused: a 1 KB file must not become a 300 MB body
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"error: {path}: {exc}") from None
    except InvalidRequest as exc:
        raise SystemExit(f"error: {path}: {exc.message}") from None
    if not isinstance(body, dict):
        raise SystemExit(f"error: {path}: expected a mapping with `takes` or `sweep`")
    if body.pop("api", None):  # a file must not choose where your token is sent
        print("note: `api:` in a batch file is ignored; pass --api or set FARM_API", file=sys.stderr)
    api = api_url(args)
    with api_client(args) as client:
        if body.get("defaults"):
            body["defaults"] = _resolve_media(client, body["defaults"], path.parent)
        body["takes"] = [_resolve_media(client, t, path.parent) for t in body.get("takes") or []]
        key = args.idempotency_key or hashlib.sha256(raw).hexdigest()[:32]
        confirm_big(client, body, args.yes)
        r = client.post("/batches", json=body, headers={"Idempotency-Key": key})
        refuse(r)
        batch = r.json()
        print(
            f"batch {batch['id']}: {len(batch['take_ids'])} takes"
            + (" (already submitted)" if r.status_code == 200 else "")
        )
        if args.no_wait:
            return 0
        with tqdm(total=len(batch["take_ids"]), unit="take") as bar:
            while not batch["finished"]:
                time.sleep(1)
                batch = client.get(f"/batches/{batch['id']}").json()
                c = batch["counts"]
                bar.set_postfix(
                    queued=c["queued"], paused=c["paused"], running=c["running"] + c["released"], failed=c["failed"]
                )
                bar.update(c["done"] + c["failed"] + c["canceled"] - bar.n)
        failed = 0
        for take_id in batch["take_ids"]:
            take = client.get(f"/takes/{take_id}").json()
            if take["outputs"]:
                clip = take["outputs"]["clip"]
                print(f"{take_id} done  {clip if clip.startswith('http') else api + clip}")
            else:
                failed += 1
                print(f"{take_id} {take['state']}  {take['error_class'] or ''} {take['error_message'] or ''}".rstrip())
    return 1 if failed else 0


def cmd_takes(args) -> int:
    params = {"limit": args.limit}
    if args.state:
        params["state"] = args.state
    if args.batch:
        params["batch_id"] = args.batch
    with api_client(args, timeout=30) as client:
        r = client.get("/takes", params=params)
    r.raise_for_status()
    for t in r.json()["data"]:
        p = t["progress"]
        window = f"window {p['window']}/{p['windows']}" if "windows" in p else ""  # a long take
        print(
            f"{t['id']}  {t['state']:9s} {p['step']:>3}/{p['total']:<3} {window:13s} {t['checkpoint']:10s} "
            f"seed={t['params'].get('seed')}  {t['params'].get('prompt', '')[:60]}"
        )
    return 0
