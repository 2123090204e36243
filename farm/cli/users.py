"""`farm user`: accounts and API tokens, straight in the database (works before anyone can sign in)."""

from __future__ import annotations

import sys


def cmd_user(args) -> int:
    """Users and API tokens, straight in the database (works before anyone can sign in)."""
    import getpass

    from .. import accounts
    from ..db import session_factory, transaction
    from ..migrate import upgrade
    from ..settings import get_settings

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
            for u in accounts.users(session):
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
