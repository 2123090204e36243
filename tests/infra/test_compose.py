"""infra/compose.yaml: the one-host stack parses, and every service runs something real
(`docker compose config` is not available here: the structure is checked directly)."""

from __future__ import annotations

import re

import pytest
import yaml

from .real import ROOT, check_command, setting_names

COMPOSE = ROOT / "infra" / "compose.yaml"
FARM_SERVICES = {"migrate", "dispatcher", "flower", "beat", "explore", "hero"}


@pytest.fixture(scope="module")
def stack() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # YAML merge keys (<<) resolved as compose does


@pytest.fixture(scope="module")
def services(stack) -> dict:
    return stack["services"]


def test_the_stack_has_every_part(services):
    assert set(services) == {"postgres", "redis", "s3"} | FARM_SERVICES
    for name in ("postgres", "redis", "s3", "dispatcher"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    assert services["hero"]["profiles"] == ["hero"]  # opt-in: it needs the host's other GPUs


def test_images_are_built_from_the_repository(services):
    built = {}
    for name in FARM_SERVICES:
        service = services[name]
        dockerfile = ROOT / "infra" / service["build"]["context"] / service["build"]["dockerfile"]
        assert (ROOT / "infra" / service["build"]["context"]).resolve() == ROOT and dockerfile.is_file(), name
        built.setdefault(service["image"], set()).add(dockerfile.name)
    assert built == {"humo-farm/dispatcher:${FARM_TAG:-dev}": {"dispatcher.Dockerfile"},
                     "humo-farm/explore:${FARM_TAG:-dev}": {"explore.Dockerfile"},
                     "humo-farm/hero:${FARM_TAG:-dev}": {"hero.Dockerfile"}}


def test_commands_and_settings_are_real(services):
    known = setting_names()
    for name in sorted(FARM_SERVICES):
        check_command(services[name]["command"])
        assert {k for k in services[name]["environment"] if k.startswith("FARM_")} <= known, name


def test_order_migration_first_and_one_shot(services):
    assert services["migrate"]["restart"] == "no" and services["migrate"]["command"] == ["farm", "db", "upgrade"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("dispatcher", "beat", "explore", "hero"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, (name, needed)


def test_gpus_and_flower(services):
    [gpu] = services["explore"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"] and len(gpu["device_ids"]) == 1
    [gpus] = services["hero"]["deploy"]["resources"]["reservations"]["devices"]
    assert not set(gpus["device_ids"]) & {"0", "${EXPLORE_GPU:-0}"} and services["hero"]["shm_size"]
    # the group has one rank per GPU, and the rank count divides HuMo-17B's 40 attention heads
    assert len(set(gpus["device_ids"])) == len(gpus["device_ids"]) in (4, 8)
    for name in ("hero", "beat", "dispatcher"):  # the workers and the nightly budget estimate agree
        assert services[name]["environment"]["FARM_HERO_GPUS"] == str(len(gpus["device_ids"])), name
    assert services["explore"]["environment"]["FARM_WEIGHTS_DIR"] == "/weights"
    assert any(v.endswith(":/weights:ro") for v in services["explore"]["volumes"])
    flower = services["flower"]  # on the dispatcher's loopback: reachable only through its /flower
    assert flower["network_mode"] == "service:dispatcher" and "ports" not in flower
    assert "--no-flower" in services["dispatcher"]["command"]


def test_secrets_have_no_default(services):
    """The session key (and Flower's password, derived from it) must be set, never defaulted."""
    for name in ("dispatcher", "flower"):
        assert re.fullmatch(r"\$\{FARM_SECRET_KEY:\?[^}]+\}", services[name]["environment"]["FARM_SECRET_KEY"])
    shared = services["dispatcher"]["environment"]
    for name in ("migrate", "beat", "explore", "hero"):
        env = services[name]["environment"]
        assert "FARM_SECRET_KEY" not in env
        assert {k: env[k] for k in ("FARM_DATABASE_URL", "FARM_BROKER_URL", "FARM_STORAGE_URL")} == {
            k: shared[k] for k in ("FARM_DATABASE_URL", "FARM_BROKER_URL", "FARM_STORAGE_URL")}
    assert shared["FARM_BROKER_URL"] == services["flower"]["environment"]["FARM_BROKER_URL"]


def test_presigned_urls_name_the_s3_endpoint_browsers_reach(services):
    """The farm reaches MinIO by its service name; clip URLs are signed for
    FARM_S3_PUBLIC_ENDPOINT_URL (an address browsers reach), not by pointing the farm at it."""
    assert "S3_PUBLIC_URL" not in COMPOSE.read_text().replace("FARM_S3_PUBLIC_ENDPOINT_URL", "")
    for name in ("migrate", "dispatcher", "beat", "explore", "hero"):
        env = services[name]["environment"]
        assert env["FARM_S3_ENDPOINT_URL"] == "http://s3:9000", name
        assert re.fullmatch(r"\$\{FARM_S3_PUBLIC_ENDPOINT_URL:-http://localhost:9000\}",
                            env["FARM_S3_PUBLIC_ENDPOINT_URL"]), name
    assert "9000" in services["s3"]["ports"][0]  # published, so browsers reach it
