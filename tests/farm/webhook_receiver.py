"""A webhook receiver for the tests, run as a process of its own:

    python webhook_receiver.py LOG [--fail-first N] [--hold-first SECONDS]

It listens on a free loopback port (printed on its first line of stdout) and appends one
JSON line per request to LOG: {"event": "received", id, headers, body} when a request
arrives, then {"event": "answered", id, status} once it answers. The first N requests of
each webhook-id are answered 500, later ones 200; with --hold-first the very first request
is held that long before its answer (a delivery in flight when its sender is killed)."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = argparse.Namespace()
seen: Counter[str] = Counter()
lock = threading.Lock()
first = threading.Event()


def log(entry: dict) -> None:
    with lock, open(args.log, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
        msg_id = self.headers.get("webhook-id", "")
        with lock:
            seen[msg_id] += 1
            tries = seen[msg_id]
            hold = args.hold_first if not first.is_set() else 0.0
            first.set()
        log({"event": "received", "id": msg_id, "headers": dict(self.headers.items()), "body": body})
        if hold:
            time.sleep(hold)
        status = 500 if tries <= args.fail_first else 200
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()
        log({"event": "answered", "id": msg_id, "status": status})

    def log_message(self, *_args) -> None:  # quiet: the LOG file is the record
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--hold-first", type=float, default=0.0)
    parser.parse_args(namespace=args)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
