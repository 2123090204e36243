"""API load for the dispatch benchmark, in a process of its own: GETs the take list, the
pools and /healthz from the standby replicas, round robin, at RATE requests a second (what a
few dozen open dashboards ask), until SIGTERM; then prints one JSON line with how many
answers came and their latency (p50, p99, max in ms) and statuses.

Usage: python benchmarks/dispatch_load.py RATE TOKEN URL [URL ...]"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time

import httpx


def main() -> None:
    rate, token, urls = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    clients = [httpx.Client(base_url=u, headers={"Authorization": f"Bearer {token}"}, timeout=30) for u in urls]
    seconds: list[float] = []
    statuses: dict[str, int] = {}
    paths = ["/takes", "/pools", "/healthz"]
    i, begin = 0, time.perf_counter()
    while not stop.wait(max(0.0, begin + i / rate - time.perf_counter())):  # paced: the i-th at i/rate s
        client, path = clients[i % len(clients)], paths[i % len(paths)]
        i += 1
        start = time.perf_counter()
        try:
            status = str(client.get(path).status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        seconds.append(time.perf_counter() - start)
        statuses[status] = statuses.get(status, 0) + 1
    seconds.sort()
    at = lambda q: round(seconds[min(len(seconds) - 1, int(q * (len(seconds) - 1)))] * 1e3, 1) if seconds else None
    print(json.dumps({"requests": len(seconds), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0),
                      "statuses": statuses}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
