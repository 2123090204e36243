"""Two farms on one host, each on the embedded defaults in its own data folder: both serve
/flower to their operators, each from its OWN Flower (the second `farm up` finds the
configured port taken and starts its Flower on a free one); a Flower that refuses the
farm's password is another farm's and is never served; Ctrl-C ends `farm up` quietly
(exit 0, "farm up: stopped") with its worker and Flower."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ..services import ROOT, free_port, wait_for


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, session id) of a process; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[3])


def running(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def children_of(pid: int) -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit() and (s := _stat(int(p))) and s[1] == pid}


def in_session(sid: int) -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit() and (s := _stat(int(p))) and s[2] == sid}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


class Farm:
    """One `farm up` in a session of its own (as from a terminal: Ctrl-C reaches its group)."""

    def __init__(self, tmp_path: Path, name: str, weights: Path, flower_port: int):
        self.data = tmp_path / name
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("FARM_", "AWS_"))}
        self.env.update(FARM_DATA_DIR=str(self.data), FARM_WEIGHTS_DIR=str(weights), FARM_FLOWER_PORT=str(flower_port))
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        made = self.farm("user", "create", "olga", "--role", "operator", "--no-password", "--token")
        self.token = made.stdout.split()[-1]
        self.log_path = tmp_path / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def farm(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "farm.cli", *argv],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )

    def up(self) -> Farm:
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "farm.cli", "up", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self.flower_shows_its_worker, 240, f"{self.data.name}'s farm up, its worker and its Flower")
        return self

    def log(self) -> str:
        return self.log_path.read_text()

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.api}{path}", headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def workers_in_flower(self) -> dict:
        """Flower's own view (through this farm's /flower): the Celery workers on its broker."""
        return self.get("/flower/api/workers?refresh=1").json()

    def flower_shows_its_worker(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()[-3000:]
        try:
            return self.get("/flower/").status_code == 200 and bool(self.workers_in_flower())
        except httpx.HTTPError:
            return False

    def flower_port(self) -> int:
        """The loopback port `farm up` says its Flower listens on."""
        found = re.search(r"Flower at /flower for operators, on 127\.0\.0\.1:(\d+)", self.log())
        assert found, self.log()[-3000:]
        return int(found.group(1))

    def stop(self) -> None:
        """The belt to `farm up`'s braces: whatever is left of its session."""
        if self.proc is None:
            return
        for pid in in_session(self.proc.pid) | {self.proc.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@pytest.fixture
def farms(tmp_path, weights):
    configured = free_port()  # both farms are told the same Flower port: the second finds it taken
    made = [Farm(tmp_path, name, weights, configured) for name in ("first", "second")]
    try:
        yield made, configured
    finally:
        for farm in made:
            farm.stop()


def test_two_farms_each_serve_their_own_flower_and_ctrl_c_ends_one_quietly(farms, clean, storage, tokens):
    (first, second), configured = farms
    first.up()  # its Flower listens before the second starts, as when a second farm is started later
    second.up()

    # each farm's /flower is its own Flower: the one its `farm up` started, on its own broker
    assert first.flower_port() == configured
    assert second.flower_port() != configured
    for farm in (first, second):
        page = farm.get("/flower/")
        assert page.status_code == 200 and "Flower" in page.text
        (name, worker), *others = farm.workers_in_flower().items()
        assert not others, name
        folder = worker["stats"]["broker"]["transport_options"]["data_folder_in"]
        assert Path(folder).is_relative_to(farm.data), (name, folder)  # this farm's broker, not the other's
        assert _stat(worker["stats"]["pid"])[1] == farm.proc.pid  # the worker this `farm up` started
        assert "Traceback" not in farm.log()

    # the other farm's Flower refuses this farm's password: a clear 503, never its page
    from fastapi.testclient import TestClient

    from farm.api.app import create_app

    pointed_elsewhere = clean.model_copy(update={"flower_port": second.flower_port()})
    with TestClient(create_app(pointed_elsewhere, storage), headers={"Authorization": f"Bearer {tokens['olga']}"}) as c:
        wrong = c.get("/flower/")
    assert wrong.status_code == 503, wrong.text
    assert f"Flower at http://127.0.0.1:{second.flower_port()} is another farm's" in wrong.json()["detail"]

    # `farm flower` on a port that is taken: one line, no traceback
    taken = subprocess.run(
        [sys.executable, "-m", "farm.cli", "flower"],
        cwd=ROOT,
        env=first.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert taken.returncode == 2 and "Traceback" not in taken.stderr, taken.stderr
    assert taken.stderr.strip().splitlines()[-1].startswith(f"error: Flower cannot listen on 127.0.0.1:{configured}")

    # Ctrl-C on the first (a terminal sends SIGINT to its foreground process group): it stops
    # its worker and Flower, says so in one line and exits 0
    assert first.proc is not None
    started = children_of(first.proc.pid)
    assert any("-m workers" in cmdline(p) for p in started) and any("farm.cli flower" in cmdline(p) for p in started)
    os.killpg(first.proc.pid, signal.SIGINT)
    assert first.proc.wait(180) == 0, first.log()[-3000:]
    log = first.log()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log[-3000:]
    assert log.rstrip().splitlines()[-1] == "farm up: stopped"
    wait_for(lambda: not [p for p in started if running(p)], 60, "the first farm's worker and Flower to end")

    # the second farm is untouched: still its own Flower
    assert second.flower_shows_its_worker()
    assert second.proc is not None
    second.proc.send_signal(signal.SIGTERM)  # a service manager's stop: the same quiet end
    assert second.proc.wait(180) == 0, second.log()[-3000:]
    assert "Traceback" not in second.log() and second.log().rstrip().endswith("farm up: stopped")
