"""Live previews of a running take, uploaded off the render thread.

The render thread makes the JPEG (a 16x3 map on the prediction, models/preview.py) when the
preview interval has passed; one uploader thread stores it under the attempt's preview key,
overwriting the last. A preview that arrives while the previous one is still uploading is
dropped: previews are a view, and the GPU never waits on the store.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from farm.storage import Storage

log = logging.getLogger(__name__)


class Previews:
    def __init__(self, storage: Storage, interval: float):
        self.storage, self.interval = storage, interval
        self._uploads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preview")
        self._pending: Future | None = None
        self._lock = threading.Lock()

    def offer(self, key: str, last: float, make: Callable[[], bytes]) -> float:
        """Upload make()'s JPEG to `key` when `interval` seconds passed since `last` (monotonic)
        and no upload is under way; returns the time of the preview taken (or `last`)."""
        now = time.monotonic()
        if not self.interval or now - last < self.interval:
            return last
        with self._lock:
            if self._pending is not None and not self._pending.done():
                return last  # the store is slow: skip this one, never queue behind it
            jpeg = make()
            self._pending = self._uploads.submit(self._upload, key, jpeg)
        return now

    def _upload(self, key: str, jpeg: bytes) -> None:
        try:
            self.storage.put_stream(key, io.BytesIO(jpeg), "image/jpeg")
        except Exception as exc:  # a view, not an output: the render goes on
            log.warning("preview %s not stored (%s)", key, exc)

    def close(self) -> None:
        self._uploads.shutdown(wait=True)
