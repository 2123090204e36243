"""`farm`: run the farm (`up`), a worker, migrations, users; submit batches and list takes.

One module per family of commands; this one builds the parser and reports errors.
"""

from __future__ import annotations

import argparse
import sys

import httpx

from ..errors import FarmError
from ..tables import TakeState
from . import consent
from .batches import cmd_batch
from .client import api_url, cmd_submit, cmd_takes
from .pools import cmd_pools, cmd_workers
from .serve import cmd_beat, cmd_db, cmd_flower, cmd_up, cmd_worker
from .users import cmd_user

__all__ = [
    "cmd_batch",
    "cmd_beat",
    "cmd_db",
    "cmd_flower",
    "cmd_pools",
    "cmd_submit",
    "cmd_takes",
    "cmd_up",
    "cmd_user",
    "cmd_worker",
    "cmd_workers",
    "main",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="farm", description="the HuMo render farm")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the API, the release loop, Flower and one explore worker until Ctrl-C")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--no-worker", action="store_true", help="start no explore worker")
    up.add_argument("--no-flower", action="store_true", help="do not start Flower")
    up.set_defaults(fn=cmd_up)
    submit = sub.add_parser("submit", help="submit a batch file (YAML) and wait for its clips")
    submit.add_argument("file")
    submit.add_argument("--api", default=None)
    submit.add_argument("--token", default=None, help="API token (default: $FARM_API_TOKEN)")
    submit.add_argument("--no-wait", action="store_true")
    submit.add_argument("--idempotency-key", default=None, help="default: the file's hash")
    submit.add_argument("--yes", action="store_true", help="submit a big batch without asking (its cost is shown)")
    submit.set_defaults(fn=cmd_submit)
    takes = sub.add_parser("takes", help="list takes")
    takes.add_argument("--state", choices=[s.value for s in TakeState])
    takes.add_argument("--batch", default=None)
    takes.add_argument("--limit", type=int, default=50)
    takes.add_argument("--api", default=None)
    takes.add_argument("--token", default=None, help="API token (default: $FARM_API_TOKEN)")
    takes.set_defaults(fn=cmd_takes)
    batch = sub.add_parser("batch", help="act on every take of a batch: cancel, retry, priority, pause, resume, select")
    batch.add_argument("action", choices=["cancel", "retry", "priority", "pause", "resume", "select", "unselect"])
    batch.add_argument("batch", help="batch id")
    batch.add_argument("value", nargs="?", type=int, help="with priority: the new priority (-1000 to 1000)")
    batch.add_argument("--api", default=None)
    batch.add_argument("--token", default=None, help="API token (default: $FARM_API_TOKEN)")
    batch.set_defaults(fn=cmd_batch)
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
    consent.add_parsers(sub)  # `farm consent ...`, `farm verify CLIP.mp4`
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
