"""Running the farm's processes: `farm up`, `worker`, `beat`, `flower` and `db`."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import signal
import socket
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
    """Flower on loopback with the dispatcher's basic-auth password (see farm.api.flower); a
    port it cannot listen on is one line, not a traceback."""
    from ..api.flower import flower_basic_auth
    from ..queue import make_celery
    from ..settings import get_settings

    settings = get_settings()
    try:
        make_celery(settings).start(
            [
                "flower",
                "--address=127.0.0.1",
                f"--port={settings.flower_port}",
                "--url_prefix=flower",
                f"--basic-auth={flower_basic_auth(settings)}",
            ]
        )
    except OSError as exc:
        why = "the port is taken (another farm's Flower?)" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
        print(
            f"error: Flower cannot listen on 127.0.0.1:{settings.flower_port}: {why}; set FARM_FLOWER_PORT to a "
            "free port (`farm up` picks one by itself)",
            file=sys.stderr,
            flush=True,
        )
        return 2
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
    """Dashboard + API, release loop (while this replica leads: farm.leader), nightly scheduler,
    Flower and one explore worker, until Ctrl-C or SIGTERM: then it stops its processes in
    order, says "farm up: stopped" and exits 0."""
    stop, children = threading.Event(), _Children(os.getpid())
    try:
        server = _start(args, stop, children)

        def stopping(_sig, _frame) -> None:
            """uvicorn hears Ctrl-C and SIGTERM while it serves, then hands them on here: no
            KeyboardInterrupt, no traceback; a second one while stopping ends the children at once."""
            server.should_exit = True  # one that comes before uvicorn has taken over stops it too
            children.stopping()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stopping)
        server.run()
    except KeyboardInterrupt:  # Ctrl-C while starting, before the handlers above
        pass
    finally:
        stop.set()
        children.stop()
    print("farm up: stopped", flush=True)
    return 0


def _start(args, stop: threading.Event, children: _Children):
    """Everything `farm up` runs but the server, which it returns ready to run."""
    import uvicorn

    from ..api.app import create_app
    from ..db import session_factory
    from ..leader import Leadership, lock_for
    from ..migrate import upgrade
    from ..nightly import Scheduler, scheduler_lock
    from ..queue import make_celery
    from ..release import Releaser
    from ..settings import get_settings, redact
    from ..webhooks import Outbox

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database)
    # any number of `farm up`s share the record: the one holding the release lock runs the
    # release loop, the reconciler and webhook deliveries; the others stand by (farm.leader)
    releaser = Releaser(session_factory(settings.database), make_celery(settings), settings)
    outbox = Outbox(session_factory(settings.database), settings)
    leadership = Leadership(lock_for(settings, "release"), "release")
    leadership.start(
        stop,
        {
            "release-loop": (releaser.tick, settings.release_interval),
            "webhook-delivery": (outbox.deliver_once, settings.webhook_interval),
        },
    )
    # the nightly hero scheduler; a second `farm up` or `farm beat` on the same record stands by
    beat = Scheduler(session_factory(settings.database), settings, scheduler_lock(settings))
    threading.Thread(target=beat.run, args=(stop,), name="nightly-beat", daemon=True).start()
    with contextlib.suppress(OSError):
        _libc()  # loaded before any fork: the children only call prctl
    if not args.no_worker:
        children.start([sys.executable, "-m", "workers", "--pool", "explore"])
    if args.no_flower:
        flower = "Flower at /flower for operators"
    elif settings.flower_url:
        flower = f"Flower at /flower for operators, from {redact(settings.flower)}"
    else:  # this farm's own Flower, on a port no other farm's holds; the dispatcher proxies to it
        settings = settings.model_copy(update={"flower_port": _free_loopback_port(settings.flower_port)})
        children.start([sys.executable, "-m", "farm.cli", "flower"], FARM_FLOWER_PORT=str(settings.flower_port))
        flower = f"Flower at /flower for operators, on 127.0.0.1:{settings.flower_port}"
    app = create_app(settings)
    app.state.leadership = leadership  # /healthz says whether this process leads
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info"))
    print(
        f"farm up: dashboard on http://{args.host}:{args.port} (API docs at /docs, {flower}), "
        f"data in {settings.data_dir}",
        flush=True,
    )
    if not _has_users(settings):
        print("farm up: no users yet; create one with `farm user create NAME --role operator`", flush=True)
    return server


class _Children:
    """`farm up`'s worker and Flower: each in a process group of its own, so Ctrl-C reaches
    `farm up` alone, which stops them in order (SIGTERM: a worker finishes or hands back its
    take); ended with `farm up` however it dies (_end_with_parent)."""

    def __init__(self, parent: int):
        self.procs: list[subprocess.Popen] = []
        self.ends_with_us = functools.partial(_end_with_parent, parent)
        self.signals = 0

    def start(self, argv: list[str], **env: str) -> None:
        self.procs.append(
            subprocess.Popen(
                argv,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                process_group=0,
                preexec_fn=self.ends_with_us,
            )
        )

    def stopping(self) -> None:
        """Ctrl-C or SIGTERM: the first stops them in order (stop), a second at once."""
        self.signals += 1
        if self.signals > 1:
            print("farm up: stopping at once", flush=True)
            for proc in self.procs:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()

    def stop(self, timeout: float = 60) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _free_loopback_port(preferred: int) -> int:
    """`preferred` if nothing listens on it on loopback, else a free port the kernel picks."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Flower (tornado) binds
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise OSError(errno.EADDRNOTAVAIL, "no free port on 127.0.0.1")


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
