"""`farm batch ACTION ID`: act on every take of a batch over the API."""

from __future__ import annotations

from .client import api_client, refuse


def cmd_batch(args) -> int:
    json = None
    if args.action == "priority":
        if args.value is None:
            raise SystemExit("error: priority: give the new priority, e.g. `farm batch priority ID 5`")
        json = {"priority": args.value}
    elif args.action in ("select", "unselect"):
        json = {"selected": args.action == "select"}
    path = "select" if args.action == "unselect" else args.action
    with api_client(args, timeout=60) as client:
        r = client.post(f"/batches/{args.batch}/{path}", json=json)
        refuse(r)
    out = r.json()
    print(f"batch {out['batch']['id']} ({out['batch']['name']}): {out['message']}")
    return 0
