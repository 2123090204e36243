"""`farm`: run the farm (`up`), a worker, migrations; submit batches and list takes."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import yaml

DEFAULT_API = "http://127.0.0.1:8000"


def cmd_db(args) -> int:
    from .migrate import downgrade, upgrade
    from .settings import get_settings

    url = get_settings().database
    upgrade(url, args.revision) if args.action == "upgrade" else downgrade(url, args.revision)
    print(f"database {args.action}d to {args.revision}")
    return 0


def cmd_worker(args) -> int:
    return subprocess.call([sys.executable, "-m", "workers", "--pool", args.pool])


def cmd_up(args) -> int:
    """API + dashboard, release loop and one explore worker, until Ctrl-C."""
    import uvicorn

    from .api.app import create_app
    from .db import session_factory
    from .migrate import upgrade
    from .queue import make_celery
    from .release import Releaser
    from .settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database)
    stop = threading.Event()
    releaser = Releaser(session_factory(settings.database), make_celery(settings), settings)
    loop = threading.Thread(target=releaser.run, args=(stop,), name="release-loop", daemon=True)
    loop.start()
    workers = [] if args.no_worker else [subprocess.Popen([sys.executable, "-m", "workers", "--pool", "explore"])]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=args.host, port=args.port, log_level="info"))
    print(f"farm up: API on http://{args.host}:{args.port} (interactive docs at /docs), data in {settings.data_dir}",
          flush=True)
    try:
        server.run()
    finally:
        stop.set()
        for proc in workers:  # SIGTERM: a worker finishes or hands back its take
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


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


def cmd_submit(args) -> int:
    from tqdm import tqdm

    path = Path(args.file)
    try:
        raw = path.read_bytes()
        body = yaml.safe_load(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"error: {path}: {exc}")
    if not isinstance(body, dict):
        raise SystemExit(f"error: {path}: expected a mapping with `takes` or `sweep`")
    api = args.api or body.pop("api", None) or os.environ.get("FARM_API", DEFAULT_API)
    body.pop("api", None)
    with httpx.Client(base_url=api, timeout=60) as client:
        if body.get("defaults"):
            body["defaults"] = _resolve_media(client, body["defaults"], path.parent)
        body["takes"] = [_resolve_media(client, t, path.parent) for t in body.get("takes") or []]
        key = args.idempotency_key or hashlib.sha256(raw).hexdigest()[:32]
        r = client.post("/batches", json=body, headers={"Idempotency-Key": key})
        if r.status_code >= 400:
            detail = r.json()
            raise SystemExit(f"error: {detail.get('field') or 'batch'}: {detail.get('detail')}"
                             if isinstance(detail.get("detail"), str) else f"error: {json.dumps(detail)}")
        batch = r.json()
        print(f"batch {batch['id']}: {len(batch['take_ids'])} takes" + (" (already submitted)" if r.status_code == 200 else ""))
        if args.no_wait:
            return 0
        with tqdm(total=len(batch["take_ids"]), unit="take") as bar:
            while not batch["finished"]:
                time.sleep(1)
                batch = client.get(f"/batches/{batch['id']}").json()
                c = batch["counts"]
                bar.set_postfix(queued=c["queued"], running=c["running"] + c["released"], failed=c["failed"])
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
    api = args.api or os.environ.get("FARM_API", DEFAULT_API)
    params = {"limit": args.limit}
    if args.state:
        params["state"] = args.state
    if args.batch:
        params["batch_id"] = args.batch
    r = httpx.get(f"{api}/takes", params=params, timeout=30)
    r.raise_for_status()
    for t in r.json()["data"]:
        p = t["progress"]
        print(f"{t['id']}  {t['state']:9s} {p['step']:>3}/{p['total']:<3} {t['checkpoint']:10s} "
              f"seed={t['params'].get('seed')}  {t['params'].get('prompt', '')[:60]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="farm", description="the HuMo render farm")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the API, the release loop and one explore worker")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--no-worker", action="store_true", help="start no worker in this process group")
    up.set_defaults(fn=cmd_up)
    submit = sub.add_parser("submit", help="submit a batch file (YAML) and wait for its clips")
    submit.add_argument("file")
    submit.add_argument("--api", default=None)
    submit.add_argument("--no-wait", action="store_true")
    submit.add_argument("--idempotency-key", default=None, help="default: the file's hash")
    submit.set_defaults(fn=cmd_submit)
    takes = sub.add_parser("takes", help="list takes")
    takes.add_argument("--state", choices=["queued", "released", "running", "done", "failed", "canceled"])
    takes.add_argument("--batch", default=None)
    takes.add_argument("--limit", type=int, default=50)
    takes.add_argument("--api", default=None)
    takes.set_defaults(fn=cmd_takes)
    worker = sub.add_parser("worker", help="run one worker process")
    worker.add_argument("--pool", choices=["explore"], default="explore")
    worker.set_defaults(fn=cmd_worker)
    db = sub.add_parser("db", help="schema migrations")
    db.add_argument("action", choices=["upgrade", "downgrade"])
    db.add_argument("revision", nargs="?", default=None)
    db.set_defaults(fn=cmd_db)
    args = parser.parse_args(argv)
    if args.command == "db" and args.revision is None:
        args.revision = "head" if args.action == "upgrade" else "-1"
    try:
        return args.fn(args)
    except httpx.TransportError as exc:
        api = getattr(args, "api", None) or os.environ.get("FARM_API", DEFAULT_API)
        print(f"error: cannot reach the farm at {api} ({exc}); start it with `farm up` or pass --api", file=sys.stderr)
        return 2
    except httpx.HTTPStatusError as exc:
        print(f"error: the farm answered {exc.response.status_code}: {exc.response.text[:500]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
