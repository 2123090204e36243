"""How much memory a dispatcher reaches at the farm's request limits, measured.

Starts `farm up --no-worker --no-flower` on a throwaway Postgres database, then sends, one
after another: nothing (the baseline), the largest batch the farm accepts (a 20,000-take
sweep), a sweep a million times over the cap, a JSON body over FARM_MAX_BODY_BYTES sent
chunked, a YAML batch file at the size cap, an alias bomb, and the largest reference image
accepted (decoded whole at upload). After each it reads the dispatcher's peak resident
memory (VmHWM); the peak only grows, so each row is the peak so far.
Prints a table and writes JSON. Usage: python benchmarks/limits.py [--out limits.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402
from PIL import Image  # noqa: E402
from services import temp_database  # noqa: E402

from farm.batches import MAX_TAKES  # noqa: E402


def peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chunks(total: int, size: int = 1 << 16):
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def cases(max_body: int) -> list[tuple[str, dict]]:
    """(name, httpx request arguments), in the order they are sent."""
    words = "a presenter speaks to the camera in a bright studio, warm light, shallow depth of field, slow push in"
    yaml_file = "takes:\n" + "".join(
        f"  - {{prompt: '{i} {words} {words[:40]}', seed: {i}}}\n" for i in range(MAX_TAKES)
    )
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)
    )
    image = io.BytesIO()
    Image.new("RGB", (6000, 6600), (90, 120, 170)).save(image, format="PNG")  # 39.6 megapixels
    sweep = {"sweep": {"prompts": [f"prompt {i}" for i in range(20)], "seed_count": MAX_TAKES // 20}}
    return [
        ("idle (baseline)", {"method": "GET", "url": "/livez"}),
        (f"sweep of {MAX_TAKES} takes (the cap)", {"method": "POST", "url": "/batches", "json": sweep}),
        (
            "sweep of 10,000 x 10,000 takes (refused)",
            {"method": "POST", "url": "/batches", "json": {"sweep": {"prompts": ["p"] * 10_000, "seed_count": 10_000}}},
        ),
        (
            f"JSON body of {2 * max_body >> 20} MiB, chunked (refused)",
            {
                "method": "POST",
                "url": "/batches",
                "content": chunks(2 * max_body),
                "headers": {"Content-Type": "application/json"},
            },
        ),
        (
            f"YAML batch file of {len(yaml_file) / 2**20:.1f} MiB, {MAX_TAKES} takes",
            {"method": "POST", "url": "/batches/file", "files": {"file": ("big.yaml", yaml_file.encode())}},
        ),
        ("YAML alias bomb (refused)", {"method": "POST", "url": "/batches/file", "files": {"file": ("b.yaml", bomb)}}),
        (
            "reference image of 39.6 megapixels",
            {"method": "POST", "url": "/assets", "files": {"file": ("big.png", image.getvalue())}},
        ),
    ]


def run() -> dict:
    with temp_database("farm_limits") as url, tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
        env.update(FARM_DATA_DIR=tmp, FARM_DATABASE_URL=url, FARM_SECRET_KEY="limits-benchmark-secret-0123456789")
        token = subprocess.run(
            [sys.executable, "-m", "farm.cli", "user", "create", "bench", "--role", "operator", "--no-password",
             "--token"],
            env=env, cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "farm.cli", "up", "--no-worker", "--no-flower", "--port", str(port)],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        rows = []
        try:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300, headers=headers) as client:
                for _ in range(300):
                    try:
                        if client.get("/livez").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                from farm.settings import Settings

                for name, request in cases(Settings().max_body_bytes):
                    start = time.perf_counter()
                    try:
                        status = client.request(**request).status_code
                    except httpx.HTTPError as exc:  # the server answered before the body ended
                        status = type(exc).__name__
                    rows.append({"case": name, "status": status, "seconds": round(time.perf_counter() - start, 2),
                                 "peak_mib": round(peak_mib(server.pid), 1)})  # fmt: skip
        finally:
            server.terminate()
            server.wait(60)
    return {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores", "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="out/limits.json")
    args = parser.parse_args()
    result = run()
    base = result["rows"][0]["peak_mib"]
    print(f"{'request':48s} {'status':>8s} {'seconds':>8s} {'peak MiB':>9s} {'over idle':>10s}")
    for r in result["rows"]:
        print(
            f"{r['case']:48s} {r['status']!s:>8s} {r['seconds']:8.2f} {r['peak_mib']:9.1f} {r['peak_mib'] - base:10.1f}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
