"""The dispatcher never imports torch: its image needs none, and it starts in a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("torch", "diffusers", "transformers")
PROBE = """
import json, sys
from farm.api.app import create_app
import farm.cli, farm.nightly, farm.release
create_app()
print(json.dumps([m for m in {heavy!r} if m in sys.modules]))
"""


def test_the_api_app_the_release_loop_and_the_cli_leave_torch_out(tmp_path):
    env = {**os.environ, "FARM_DATA_DIR": str(tmp_path)}
    for key in ("FARM_DATABASE_URL", "FARM_BROKER_URL", "FARM_STORAGE_URL"):
        env.pop(key, None)  # the embedded defaults
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
