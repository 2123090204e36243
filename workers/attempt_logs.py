"""The worker's log lines of each attempt, kept with it: takes/<id>/<n>/log.txt.

One logging handler on the root logger hands each record to the attempt its thread works on:
the render thread's take while it claims and renders, the finisher thread's while it encodes
and uploads (the two can be different takes). When the attempt ends (done, failed, canceled)
its lines are stored under its log key. A worker killed mid-attempt stores none: the API says so.
Each attempt keeps its last MAX_LINES lines, each cut at MAX_LINE characters: bounded however
chatty a take is.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from farm.storage import Storage, log_key

log = logging.getLogger(__name__)
MAX_LINES = 2000  #: lines kept per attempt (the last ones)
MAX_LINE = 4000  #: characters of one line (a traceback is many lines)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class AttemptLog:
    """One attempt's lines, newest last."""

    def __init__(self, take_id: str, number: int):
        self.take_id, self.number = take_id, number
        self.lines: deque[str] = deque(maxlen=MAX_LINES)
        self.dropped = 0  #: lines pushed out by newer ones

    def add(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            if len(self.lines) == MAX_LINES:
                self.dropped += 1
            self.lines.append(line if len(line) <= MAX_LINE else line[:MAX_LINE] + " [cut]")

    def text(self) -> str:
        head = [f"[{self.dropped} earlier lines dropped]"] if self.dropped else []
        return "\n".join([*head, *self.lines]) + "\n"


class AttemptLogs(logging.Handler):
    """Routes records to the attempt of the thread that logs them; stores an attempt's lines."""

    def __init__(self, storage: Storage):
        super().__init__(logging.INFO)
        self.storage = storage
        self.setFormatter(logging.Formatter(FORMAT))
        self._by_thread: dict[int, AttemptLog] = {}
        self._guard = threading.Lock()
        logging.getLogger().addHandler(self)

    def close(self) -> None:
        logging.getLogger().removeHandler(self)
        super().close()

    @contextmanager
    def capturing(self, attempt: AttemptLog) -> Iterator[AttemptLog]:
        """Records this thread logs meanwhile go to `attempt` (as well as wherever they went)."""
        me = threading.get_ident()
        with self._guard:
            self._by_thread[me] = attempt
        try:
            yield attempt
        finally:
            with self._guard:
                self._by_thread.pop(me, None)

    def emit(self, record: logging.LogRecord) -> None:
        attempt = self._by_thread.get(record.thread or 0)
        if attempt is None:
            return
        try:
            attempt.add(self.format(record))
        except Exception:
            self.handleError(record)

    def store(self, attempt: AttemptLog) -> None:
        """Store the attempt's lines; a store that refuses loses the log, never the take."""
        data = attempt.text().encode("utf-8", "replace")
        try:
            self.storage.put_stream(log_key(attempt.take_id, attempt.number), io.BytesIO(data), "text/plain")
        except Exception as exc:
            log.warning("take %s attempt %d: log not stored (%s)", attempt.take_id, attempt.number, exc)
