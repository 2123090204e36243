"""`farm`: run the farm (`up`), a worker, migrations, users; submit batches and list takes."""

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
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from .errors import FarmError

DEFAULT_API = "http://127.0.0.1:8000"


def cmd_db(args) -> int:
    from .migrate import downgrade, upgrade
    from .settings import get_settings

    url = get_settings().database
    upgrade(url, args.revision) if args.action == "upgrade" else downgrade(url, args.revision)
    print(f"database {args.action}d to {args.revision}")
    return 0


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


def api_url(args) -> str:
    return getattr(args, "api", None) or os.environ.get("FARM_API", DEFAULT_API)


def cmd_user(args) -> int:
    """Users and API tokens, straight in the database (works before anyone can sign in)."""
    import getpass

    from . import accounts
    from .db import session_factory, transaction
    from .migrate import upgrade
    from .settings import get_settings

    settings = get_settings()
    upgrade(settings.database)

    def password() -> str:
        if args.password_stdin:
            return sys.stdin.readline().rstrip("\n")
        if not sys.stdin.isatty():
            raise SystemExit("error: password: pass --password-stdin (and the password on stdin) or --no-password")
        first = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != first:
            raise SystemExit("error: password: the two entries differ; try again")
        return first

    with transaction(session_factory(settings.database)) as session:
        if args.action == "list":
            from sqlalchemy import select

            from .tables import User

            for u in session.execute(select(User).order_by(User.name)).scalars():
                print(f"{u.name:24s} {u.role.value:9s} {'disabled' if u.disabled else ''}".rstrip())
            return 0
        if not args.name:
            raise SystemExit(f"error: name: `farm user {args.action}` needs a user name")
        if args.action == "create":
            if not args.role:
                raise SystemExit("error: role: pass --role viewer, producer or operator")
            user = accounts.create_user(session, args.name, args.role, None if args.no_password else password())
            print(f"user {user.name} created ({user.role.value})")
            if args.token:
                print(accounts.create_token(session, user, "cli"))
        elif args.action == "token":
            print(accounts.create_token(session, accounts.get_user(session, args.name), args.token_name))
        elif args.action == "password":
            accounts.set_password(session, accounts.get_user(session, args.name), password())
            print(f"password of {args.name} changed")
        elif args.action == "disable":
            user = accounts.get_user(session, args.name)
            user.disabled = True
            print(f"user {user.name} disabled; {accounts.revoke_tokens(session, user)} API tokens revoked")
    return 0


def cmd_flower(args) -> int:
    """Flower on loopback with the dispatcher's basic-auth password (see farm.api.flower)."""
    from .api.flower import flower_basic_auth
    from .queue import make_celery
    from .settings import get_settings

    settings = get_settings()
    make_celery(settings).start(
        [
            "flower",
            "--address=127.0.0.1",
            f"--port={settings.flower_port}",
            "--url_prefix=flower",
            f"--basic-auth={flower_basic_auth(settings)}",
        ]
    )
    return 0


def cmd_beat(args) -> int:
    """The nightly hero-run scheduler; start one per dispatcher host: one leads, the rest stand by."""
    from .nightly import serve
    from .settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(get_settings())


def cmd_worker(args) -> int:
    return subprocess.call([sys.executable, "-m", "workers", "--pool", args.pool])


def cmd_up(args) -> int:
    """Dashboard + API, release loop, nightly scheduler, Flower and one explore worker, until Ctrl-C."""
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
    # the nightly hero scheduler; a second `farm up` or `farm beat` on the same record stands by
    from .nightly import Scheduler, scheduler_lock

    beat = Scheduler(session_factory(settings.database), settings, scheduler_lock(settings))
    threading.Thread(target=beat.run, args=(stop,), name="nightly-beat", daemon=True).start()
    workers = (
        []
        if args.no_worker
        else [subprocess.Popen([sys.executable, "-m", "workers", "--pool", "explore"], preexec_fn=_end_with_parent)]
    )
    if not args.no_flower:
        workers.append(subprocess.Popen([sys.executable, "-m", "farm.cli", "flower"], preexec_fn=_end_with_parent))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=args.host, port=args.port, log_level="info"))
    print(
        f"farm up: dashboard on http://{args.host}:{args.port} (API docs at /docs, Flower at /flower for "
        f"operators), data in {settings.data_dir}",
        flush=True,
    )
    if not _has_users(settings):
        print("farm up: no users yet; create one with `farm user create NAME --role operator`", flush=True)
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


def _end_with_parent() -> None:
    """In `farm up`'s children (Linux): SIGTERM when `farm up` dies, however it dies, so no
    orphaned worker keeps consuming the queue; SIGTERM lets a worker finish its take."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _has_users(settings) -> bool:
    from sqlalchemy import select

    from .db import session_factory
    from .tables import User

    with session_factory(settings.database)() as session:
        return session.execute(select(User.id).limit(1)).first() is not None


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
        raise SystemExit(f"error: {path}: {exc}") from None
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
        r = client.post("/batches", json=body, headers={"Idempotency-Key": key})
        if r.status_code >= 400:
            detail = r.json()
            raise SystemExit(
                f"error: {detail.get('field') or 'batch'}: {detail.get('detail')}"
                if isinstance(detail.get("detail"), str)
                else f"error: {json.dumps(detail)}"
            )
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
        print(
            f"{t['id']}  {t['state']:9s} {p['step']:>3}/{p['total']:<3} {t['checkpoint']:10s} "
            f"seed={t['params'].get('seed')}  {t['params'].get('prompt', '')[:60]}"
        )
    return 0


@contextmanager
def _record():
    """(settings, session) on the farm's database, for the operator commands that read it
    directly like `farm db` (run them where the dispatcher runs); one line if it is away."""
    from sqlalchemy.exc import DBAPIError

    from .db import session_factory
    from .settings import get_settings, redact

    settings = get_settings()
    try:
        with session_factory(settings.database)() as session:
            yield settings, session
    except DBAPIError as exc:
        reason = (str(exc.orig).strip().splitlines() or [""])[0]
        raise SystemExit(
            f"error: database: cannot read the farm's record at {redact(settings.database)} "
            f"({type(exc.orig).__name__}: {reason}); check FARM_DATABASE_URL and run `farm db upgrade`"
        ) from None


def _table(rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = (f"{v:>{w}}" if isinstance(v, int) else f"{v:<{w}}" for v, w in zip(r, widths))
        print("  ".join(cells).rstrip())


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.1f}s ago"


def cmd_workers(args) -> int:
    """List the workers, or drain one (it finishes its take and claims no new one) or resume it."""
    from dataclasses import asdict

    from . import metrics
    from .tables import utcnow

    if args.action in ("drain", "resume"):
        return _drain(args.worker, args.action == "drain")
    with _record() as (settings, session):
        rows = metrics.workers(session, utcnow(), settings.worker_timeout, seen=None if args.all else metrics.SEEN)
    rows = [w for w in rows if args.pool in (None, w.pool)]
    if args.json:
        print(json.dumps([asdict(w) for w in rows], indent=2))
    elif not rows:
        print("no workers" + ("" if args.all else f" seen in the last {metrics.SEEN / 3600:g} h (--all: every one)"))
    else:
        _table(
            [("ID", "POOL", "HOST", "GPU", "HEARTBEAT", "TAKE", "STATE")]
            + [(w.id, w.pool, w.host, w.gpu, _ago(w.heartbeat_age), w.current_take_id or "-", w.state) for w in rows]
        )
    return 0


def _drain(worker_id: str, drain: bool) -> int:
    """Drain sets the worker's `stopped` flag while it lives: the release loop counts it out,
    and the worker hands back any take delivered to it; resume clears the flag."""
    from datetime import timedelta

    from sqlalchemy import select, update

    from . import metrics
    from .tables import Worker, as_utc, utcnow

    with _record() as (settings, session):
        matches = (
            session.execute(
                select(Worker)
                .where(Worker.id.startswith(worker_id, autoescape=True))
                .order_by(Worker.heartbeat_at.desc())
            )
            .scalars()
            .all()
        )
        exact = [w for w in matches if w.id == worker_id]
        if not matches:
            raise SystemExit(f"error: worker: no worker {worker_id!r}; `farm workers --all` lists them")
        if len(matches) > 1 and not exact:
            raise SystemExit(
                f"error: worker: {worker_id!r} matches {len(matches)} workers "
                f"({', '.join(w.id for w in matches[:3])}{', ...' if len(matches) > 3 else ''}); "
                "give more of the id"
            )
        w = (exact or matches)[0]
        now = utcnow()
        age = max(0.0, (now - as_utc(w.heartbeat_at)).total_seconds())
        state = metrics.worker_state(w.stopped, age, w.current_take_id, settings.worker_timeout)
        if state in ("dead", "stopped"):
            raise SystemExit(
                f"error: worker: {w.id} is {state} (last heartbeat {_ago(age)}); "
                + ("nothing to drain" if drain else "start a new worker with `farm worker`")
            )
        if (state == "draining") == drain:
            print(f"worker {w.id} is already {'draining' if drain else 'taking work'}")
            return 0
        session.execute(
            update(Worker)
            .where(
                Worker.id == w.id,
                Worker.stopped.is_(not drain),
                Worker.heartbeat_at >= now - timedelta(seconds=settings.worker_timeout),
            )
            .values(stopped=drain)
        )
        session.commit()
    if not drain:
        print(f"worker {w.id} resumed: it claims takes again")
    elif w.current_take_id:
        print(f"worker {w.id} draining: it finishes take {w.current_take_id} and claims no new one")
    else:
        print(f"worker {w.id} draining: it claims no new take")
    return 0


def cmd_pools(args) -> int:
    """Per pool: live workers and their slots, draining workers, and the takes waiting and running."""
    from dataclasses import asdict

    from . import metrics
    from .tables import utcnow

    with _record() as (settings, session):
        figures = metrics.pools(session, utcnow(), settings.worker_timeout)
    if args.json:
        print(json.dumps({p.pool: {**asdict(p), "depth": p.depth} for p in figures}, indent=2))
        return 0
    _table(
        [("POOL", "WORKERS", "SLOTS", "DRAINING", "QUEUED", "RELEASED", "RUNNING", "DEPTH")]
        + [(p.pool, p.workers, p.slots, p.draining, p.queued, p.released, p.running, p.depth) for p in figures]
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="farm", description="the HuMo render farm")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the API, the release loop and one explore worker")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--no-worker", action="store_true", help="start no worker in this process group")
    up.add_argument("--no-flower", action="store_true", help="do not start Flower")
    up.set_defaults(fn=cmd_up)
    submit = sub.add_parser("submit", help="submit a batch file (YAML) and wait for its clips")
    submit.add_argument("file")
    submit.add_argument("--api", default=None)
    submit.add_argument("--token", default=None, help="API token (default: $FARM_API_TOKEN)")
    submit.add_argument("--no-wait", action="store_true")
    submit.add_argument("--idempotency-key", default=None, help="default: the file's hash")
    submit.set_defaults(fn=cmd_submit)
    takes = sub.add_parser("takes", help="list takes")
    takes.add_argument("--state", choices=["queued", "released", "running", "done", "failed", "canceled"])
    takes.add_argument("--batch", default=None)
    takes.add_argument("--limit", type=int, default=50)
    takes.add_argument("--api", default=None)
    takes.add_argument("--token", default=None, help="API token (default: $FARM_API_TOKEN)")
    takes.set_defaults(fn=cmd_takes)
    workers = sub.add_parser("workers", help="list workers; `farm workers drain|resume ID` (reads the database)")
    workers.add_argument("--all", action="store_true", help="every worker ever registered, not only the last hour's")
    workers.add_argument("--pool", default=None)
    workers.add_argument("--json", action="store_true")
    workers_sub = workers.add_subparsers(dest="action")
    for action, text in (("drain", "finish the current take, then claim no new one"), ("resume", "claim takes again")):
        workers_sub.add_parser(action, help=text).add_argument("worker", help="worker id (or a unique prefix)")
    workers.set_defaults(fn=cmd_workers)
    pools = sub.add_parser("pools", help="per pool: workers, slots, takes waiting and running (reads the database)")
    pools.add_argument("--json", action="store_true")
    pools.set_defaults(fn=cmd_pools)
    beat = sub.add_parser("beat", help="run the nightly hero-run scheduler (one leads: a lock; others stand by)")
    beat.set_defaults(fn=cmd_beat)
    worker = sub.add_parser("worker", help="run one worker process")
    worker.add_argument("--pool", choices=["explore", "hero"], default="explore")
    worker.set_defaults(fn=cmd_worker)
    user = sub.add_parser("user", help="users and API tokens: create, token, password, disable, list")
    user.add_argument("action", choices=["create", "token", "password", "disable", "list"])
    user.add_argument("name", nargs="?")
    user.add_argument("--role", choices=["viewer", "producer", "operator"])
    user.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    user.add_argument("--no-password", action="store_true", help="API tokens only, no dashboard sign-in")
    user.add_argument("--token", action="store_true", help="with create: also print an API token")
    user.add_argument("--token-name", default="cli", help="with token: what the token is for")
    user.set_defaults(fn=cmd_user)
    flower = sub.add_parser("flower", help="run Flower on loopback for the dispatcher's /flower (farm up does)")
    flower.set_defaults(fn=cmd_flower)
    db = sub.add_parser("db", help="schema migrations")
    db.add_argument("action", choices=["upgrade", "downgrade"])
    db.add_argument("revision", nargs="?", default=None)
    db.set_defaults(fn=cmd_db)
    args = parser.parse_args(argv)
    if args.command == "db" and args.revision is None:
        args.revision = "head" if args.action == "upgrade" else "-1"
    try:
        return args.fn(args)
    except FarmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except httpx.TransportError as exc:
        print(
            f"error: cannot reach the farm at {api_url(args)} ({exc}); start it with `farm up` or pass --api",
            file=sys.stderr,
        )
        return 2
    except httpx.HTTPStatusError as exc:
        print(f"error: the farm answered {exc.response.status_code}: {exc.response.text[:500]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
