"""infra/*.Dockerfile: bases, PyTorch builds, what they copy (and .dockerignore lets through),
the commands they run, and the Grafana dashboard's queries naming real metrics."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from .real import ROOT, check_command, metric_names, setting_names

IMAGES = ("dispatcher", "explore", "hero")


def instructions(name: str) -> list[tuple[str, str]]:
    text = (ROOT / "infra" / f"{name}.Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    parts = [line.split(None, 1) for line in joined.splitlines() if line.strip()]
    return [(op.upper(), rest.strip()) for op, rest in parts]


def args(name: str) -> dict[str, str]:
    out = {}
    for op, rest in instructions(name):
        if op == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            out[key] = value.strip('"')
    return out


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], value)


@pytest.mark.parametrize("name", IMAGES)
def test_base_and_pytorch_build(name):
    variables = args(name)
    bases = [expand(rest.split()[0], variables) for op, rest in instructions(name) if op == "FROM"]
    if name == "dispatcher":
        assert all(b.startswith("python:3.11") for b in bases)
        assert variables["TORCH_INDEX_URL"].endswith("/whl/cpu")  # it never renders
    else:
        assert all(re.fullmatch(r"nvidia/cuda:[\d.]+-cudnn-runtime-ubuntu[\d.]+", b) for b in bases), bases
        cuda = re.match(r"nvidia/cuda:(\d+)\.(\d+)", bases[-1]).groups()
        assert variables["TORCH_INDEX_URL"].endswith(f"/whl/cu{''.join(cuda)}")  # torch built for that CUDA
    run = " ".join(rest for op, rest in instructions(name) if op == "RUN")
    assert ("deepspeed" in run) == (name == "hero")
    # the GPU images install the hopper extra (FlashAttention-4), read from pyproject
    assert ("['optional-dependencies']['hopper']" in run) == (name != "dispatcher")


@pytest.mark.parametrize("name", IMAGES)
def test_copies_only_what_the_build_context_holds(name):
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert ignore[0] == "**"  # an allowlist: nothing enters the context unless named
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for op, rest in instructions(name):
        if op == "COPY" and not rest.startswith("--from"):
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert source in allowed and (ROOT / source).exists(), source
    assert {"farm", "workers", "models", "migrations", "pyproject.toml"} <= allowed


@pytest.mark.parametrize("name", IMAGES)
def test_runs_a_real_command_as_a_user(name):
    ops = instructions(name)
    [cmd] = [json.loads(rest) for op, rest in ops if op == "CMD"]
    check_command(cmd)
    users = [rest for op, rest in ops if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    env = " ".join(rest for op, rest in ops if op == "ENV")
    assert set(re.findall(r"\b(FARM_\w+)=", env)) <= setting_names()


def test_grafana_dashboard_queries_real_metrics():
    dashboard = json.loads((ROOT / "infra" / "grafana-dashboard.json").read_text())
    exported = metric_names()
    panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
    used = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bfarm_\w+", target["expr"]))
            assert names and names <= exported, (panel["title"], names - exported)
            used |= names
    families = {n for n in exported if not n.endswith(("_bucket", "_count", "_sum", "_gcount", "_gsum"))} - {
        "farm_release_latency_seconds", "farm_render_seconds"}
    assert families <= used  # every gauge and counter is on the dashboard
    assert {"farm_release_latency_seconds_bucket", "farm_render_seconds_bucket"} <= used
