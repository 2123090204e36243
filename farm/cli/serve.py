"""Running the farm's processes: `farm up`, `worker`, `beat`, `flower` and `db`."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import subprocess
import sys
import threading


def cmd_db(args) -> int:
    from ..migrate import downgrade, upgrade
    from ..settings import get_settings

    url = get_settings().database
    upgrade(url, args.revision) if args.action == "upgrade" else downgrade(url, args.revision)
    print(f"database {args.action}d to {args.revision}")
    return 0


def cmd_flower(args) -> int:
    """Flower on loopback with the dispatcher's basic-auth password (see farm.api.flower)."""
    from ..api.flower import flower_basic_auth
    from ..queue import make_celery
    from ..settings import get_settings

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
    from ..nightly import serve
    from ..settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(get_settings())


def cmd_worker(args) -> int:
    """Become the worker (exec, same pid): no child is left behind when `farm worker` is
    killed, and a deploy's SIGTERM reaches the worker itself (a warm shutdown)."""
    argv = [sys.executable, "-m", "workers", "--pool", args.pool]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # returns only by raising


def cmd_up(args) -> int:
    """Dashboard + API, release loop, nightly scheduler, Flower and one explore worker, until Ctrl-C."""
    import uvicorn

    from ..api.app import create_app
    from ..db import session_factory
    from ..migrate import upgrade
    from ..queue import make_celery
    from ..release import Releaser
    from ..settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database)
    stop = threading.Event()
    releaser = Releaser(session_factory(settings.database), make_celery(settings), settings)
    loop = threading.Thread(target=releaser.run, args=(stop,), name="release-loop", daemon=True)
    loop.start()
    # the nightly hero scheduler; a second `farm up` or `farm beat` on the same record stands by
    from ..nightly import Scheduler, scheduler_lock

    beat = Scheduler(session_factory(settings.database), settings, scheduler_lock(settings))
    threading.Thread(target=beat.run, args=(stop,), name="nightly-beat", daemon=True).start()
    with contextlib.suppress(OSError):
        _libc()  # loaded before any fork: the children only call prctl
    ends_with_us = functools.partial(_end_with_parent, os.getpid())
    workers = (
        []
        if args.no_worker
        else [subprocess.Popen([sys.executable, "-m", "workers", "--pool", "explore"], preexec_fn=ends_with_us)]
    )
    if not args.no_flower:
        workers.append(subprocess.Popen([sys.executable, "-m", "farm.cli", "flower"], preexec_fn=ends_with_us))
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


def _end_with_parent(parent: int | None = None) -> None:
    """In `farm up`'s children (Linux), before exec: SIGTERM when `farm up` dies, however it
    dies, so no orphaned worker keeps consuming the queue; SIGTERM lets a worker finish its
    take. `parent`: `farm up`'s pid; if it died before the signal was armed, the child is
    already an orphan and exits before it starts."""
    try:
        _libc().prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if parent is not None and os.getppid() != parent:
        os._exit(1)


@functools.cache
def _libc():
    """libc, loaded once in `farm up` itself: a forked child only calls into it (no dlopen
    between fork and exec while other threads run)."""
    import ctypes

    return ctypes.CDLL("libc.so.6", use_errno=True)


def _has_users(settings) -> bool:
    from sqlalchemy import select

    from ..db import session_factory
    from ..tables import User

    with session_factory(settings.database)() as session:
        return session.execute(select(User.id).limit(1)).first() is not None
