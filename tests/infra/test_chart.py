"""The Helm chart, rendered offline by Helm's own Go SDK (helm-python-sdk, no helm binary, no
cluster) with the default and the production values, every manifest checked against the
Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields are errors) and KEDA's and
the Prometheus Operator's kinds against schemas/, then what the schemas cannot see: names that
must match, real commands, real settings, GPUs, hooks, secrets, the metrics token's wiring."""

from __future__ import annotations

import json
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from farm.queue import POOLS

from .real import ROOT, check_command, setting_names

CHART = ROOT / "helm" / "humo-farm"
SCHEMAS = Path(__file__).parent / "schemas"
#: the chart's kubeVersion floor and the newest Kubernetes kubernetes-validate knows
KUBE_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
PRODUCTION = helm.values_from_yaml((CHART / "values-production.yaml").read_text())
#: custom resources: (apiVersion, kind) -> its schema in schemas/
CUSTOM = {("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
          ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication-keda-v1alpha1.json",
          ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json"}
#: the Secret key holding the viewer's API token KEDA and Prometheus send
METRICS_TOKEN_KEY = "metrics-token"
CREATE_TOKEN = "farm user create metrics --role viewer --no-password --token"


def render_files(values: dict | None = None, upgrade: bool = False) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values or {}, name="farm", namespace="render", is_install=not upgrade, is_upgrade=upgrade)


def render(values: dict | None = None, upgrade: bool = False) -> list[dict]:
    docs = []
    for path, text in render_files(values, upgrade).items():
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def notes(values: dict | None = None) -> str:
    [text] = [t for p, t in render_files(values).items() if p.endswith("NOTES.txt")]
    return text


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def one(docs: list[dict], kind: str, component: str) -> dict:
    [doc] = [d for d in docs if d["kind"] == kind
             and d["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    return doc


def pod(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def containers(doc: dict) -> list[dict]:
    return pod(doc).get("initContainers", []) + pod(doc)["containers"]


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]


VARIANTS = {
    "default": {},
    "production": PRODUCTION,
    "redis-trigger": {"autoscaling": {"trigger": "redis", "redis": {"address": "redis.internal:6380", "enableTLS": True,
                                                                   "passwordKey": "redis-password"}},
                      "secrets": {"existingSecret": "farm-credentials"}, "weights": {"hostPath": "/srv/humo-weights"},
                      "postgresql": {"enabled": False}, "redis": {"enabled": False}},
    "no-autoscaling": {"explore": {"autoscaling": {"enabled": False}, "replicas": 3},
                       "hero": {"autoscaling": {"enabled": False}, "replicas": 1}, "flower": {"enabled": False},
                       "ingress": {"enabled": False}},
    "metrics-token": {"secrets": {"metricsToken": "farm_metrics-viewer-token"},
                      "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
                      "storage": {"publicEndpointUrl": "https://s3.farm.example.com"}},
}


def secret_value(docs: list[dict], values: dict, ref: dict) -> str | None:
    """What a {name, key} reference resolves to: the chart's Secret's value, or None for the
    operator's existingSecret (which must then be the Secret referred to)."""
    existing = values.get("secrets", {}).get("existingSecret")
    if existing:
        assert ref["name"] == existing, ref
        return None
    return by_kind(docs, "Secret")[ref["name"]]["stringData"][ref["key"]]


def autoscaled(values: dict) -> bool:
    """KEDA scales the pools: autoscaling on, and a trigger that can authenticate."""
    if values is VARIANTS["no-autoscaling"]:
        return False
    secrets = values.get("secrets", {})
    trigger = values.get("autoscaling", {}).get("trigger", "demand")
    return trigger == "redis" or bool(secrets.get("existingSecret") or secrets.get("metricsToken"))


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request) -> tuple[str, dict, list[dict]]:
    return request.param, VARIANTS[request.param], render(VARIANTS[request.param])


def test_lint_is_clean_with_both_values_files():
    for values in ({}, PRODUCTION):
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSIONS[0]}.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, problems


def test_every_manifest_is_valid_kubernetes(variant):
    _, _, docs = variant
    custom = {kind: json.loads((SCHEMAS / name).read_text()) for kind, name in CUSTOM.items()}
    for doc in docs:
        if "/" in doc["apiVersion"] and doc["apiVersion"].split("/")[0].endswith((".sh", ".coreos.com")):
            jsonschema.Draft202012Validator(custom[doc["apiVersion"], doc["kind"]]).validate(doc)
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): "
                                     f"{'.'.join(map(str, exc.path))}: {exc.message}") from None


def test_names_the_manifests_refer_to_exist(variant):
    name, values, docs = variant
    secrets, configmaps = by_kind(docs, "Secret"), by_kind(docs, "ConfigMap")
    existing = values.get("secrets", {}).get("existingSecret")
    assert bool(secrets) != bool(existing)  # the chart's Secret, or the operator's: never both
    services = by_kind(docs, "Service")
    pods = {(d["kind"], d["metadata"]["name"]): d["spec"]["template"]["metadata"]["labels"] for d in workloads(docs)}
    for svc in services.values():  # every Service selects some pod template
        assert any(svc["spec"]["selector"].items() <= labels.items() for labels in pods.values()), svc["metadata"]
    for doc in workloads(docs):
        for c in containers(doc):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and not existing:
                    assert ref["key"] in secrets[ref["name"]]["stringData"] or ref.get("optional"), (c["name"], ref)
                elif ref:
                    assert ref["name"] == existing
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in configmaps
        for volume in pod(doc).get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] == values["weights"]["existingClaim"]
    for ingress in by_kind(docs, "Ingress").values():
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        ports = {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
        assert backend["port"]["name"] in ports
    for so in by_kind(docs, "ScaledObject").values():
        target = so["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) in pods and "replicas" not in next(
            d for d in docs if d["metadata"]["name"] == target["name"] and d["kind"] == target["kind"])["spec"]
        for trigger in so["spec"]["triggers"]:
            if "authenticationRef" in trigger:
                auth = by_kind(docs, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
                for ref in auth["spec"]["secretTargetRef"]:
                    assert secret_value(docs, values, ref) != ""  # the key is in the Secret referred to
    for monitor in by_kind(docs, "ServiceMonitor").values():
        [svc] = [s for s in services.values()
                 if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
            assert secret_value(docs, values, endpoint["authorization"]["credentials"]) != ""


def test_commands_and_settings_are_real(variant):
    _, _, docs = variant
    known = setting_names()
    for doc in workloads(docs):
        for c in containers(doc):
            if c["image"].split(":")[0].endswith(("/dispatcher", "/explore", "/hero")):
                check_command(c["command"])
                assert {e["name"] for e in c.get("env", []) if e["name"].startswith("FARM_")} <= known, c["name"]
    for cm in by_kind(docs, "ConfigMap").values():
        assert set(cm["data"]) <= known


def test_pools_get_their_gpus_and_autoscale_on_their_queue(variant):
    name, values, docs = variant
    explore, hero = one(docs, "Deployment", "explore"), one(docs, "StatefulSet", "hero")
    [worker] = containers(explore)
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == worker["resources"]["requests"]["nvidia.com/gpu"] == 1
    expected = values.get("explore", {})
    assert pod(explore).get("nodeSelector", {}) == expected.get("nodeSelector", {})
    assert pod(explore)["tolerations"] == expected.get("tolerations", [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    [group] = containers(hero)
    gpus = values.get("hero", {}).get("gpusPerPod", 8)
    assert group["resources"]["limits"]["nvidia.com/gpu"] == gpus
    shm = next(v for v in pod(hero)["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory" and {"name": "shm", "mountPath": "/dev/shm"} in group["volumeMounts"]
    assert hero["spec"]["serviceName"] in by_kind(docs, "Service")
    weights = values.get("weights", {})
    mounted = any(m["mountPath"] == "/weights" for m in worker["volumeMounts"])
    assert mounted == bool(weights.get("existingClaim") or weights.get("hostPath"))
    assert ({"name": "FARM_WEIGHTS_DIR", "value": "/weights"} in worker["env"]) == mounted

    scaled = by_kind(docs, "ScaledObject")
    if not autoscaled(values):  # off, or the demand trigger without a metrics token: fixed sizes
        assert not scaled and not by_kind(docs, "TriggerAuthentication")
        assert explore["spec"]["replicas"] == expected.get("replicas", 1)
        assert hero["spec"]["replicas"] == values.get("hero", {}).get("replicas", 0)
        return
    assert "replicas" not in explore["spec"] and "replicas" not in hero["spec"]  # KEDA's to set
    pools = {so["spec"]["scaleTargetRef"]["name"].rsplit("-", 1)[1]: so for so in scaled.values()}
    assert set(pools) == set(POOLS)  # one per Celery queue
    for pool, so in pools.items():
        [trigger] = so["spec"]["triggers"]
        if trigger["type"] == "redis":
            assert trigger["metadata"]["listName"] == pool
        else:
            from farm.api.routes.metrics import router

            service = by_kind(docs, "Service")[one(docs, "Deployment", "dispatcher")["metadata"]["name"]]
            host = f"{service['metadata']['name']}.render.svc.cluster.local:{service['spec']['ports'][0]['port']}"
            assert trigger["metadata"]["url"] == f"http://{host}/metrics/demand"
            assert "/metrics/demand" in {r.path for r in router.routes}
            assert trigger["metadata"]["valueLocation"] == f"{pool}.demand"
            assert trigger["metadata"]["authMode"] == "bearer" and "authenticationRef" in trigger


@pytest.mark.parametrize("name", ["production", "metrics-token"])
def test_keda_and_prometheus_send_the_metrics_token(name):
    """/metrics/demand and /metrics need a viewer: the demand trigger authenticates through a
    TriggerAuthentication whose `token` is the Secret's metrics-token, and the ServiceMonitor
    sends the same key."""
    from farm.api.routes.metrics import router

    for route in router.routes:  # both routes need a viewer (tests/farm/test_metrics.py: 401 without)
        assert "require_viewer" in {d.call.__name__ for d in route.dependant.dependencies}, route.path

    values = VARIANTS[name]
    docs = render(values)
    existing = values.get("secrets", {}).get("existingSecret")
    secret = existing or next(iter(by_kind(docs, "Secret")))
    auths = by_kind(docs, "TriggerAuthentication")
    for so in by_kind(docs, "ScaledObject").values():
        [trigger] = so["spec"]["triggers"]
        assert trigger["type"] == "metrics-api" and trigger["metadata"]["authMode"] == "bearer"
        ref = trigger["authenticationRef"]
        assert ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
        assert auths[ref["name"]]["spec"]["secretTargetRef"] == [
            {"parameter": "token", "name": secret, "key": METRICS_TOKEN_KEY}]
    assert len(auths) == 1
    if not existing:
        assert by_kind(docs, "Secret")[secret]["stringData"][METRICS_TOKEN_KEY] == values["secrets"]["metricsToken"]
        monitor = by_kind(docs, "ServiceMonitor")["farm-humo-farm-dispatcher"]
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics" and endpoint["authorization"] == {
            "type": "Bearer", "credentials": {"name": secret, "key": METRICS_TOKEN_KEY}}
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert "AUTOSCALING IS OFF" not in notes(values)
    else:
        assert not by_kind(docs, "ServiceMonitor")  # off by default
        assert f"key {METRICS_TOKEN_KEY} of Secret {existing}" in notes(values)
    documented = (CHART / "values.yaml").read_text()
    assert f"{METRICS_TOKEN_KEY} (an API token of a viewer account" in documented and CREATE_TOKEN in documented


def test_without_a_metrics_token_the_pools_keep_their_size_and_the_notes_say_how():
    """A first install has no token (the viewer lives in the farm's database): no ScaledObjects,
    no TriggerAuthentication, no metrics-token key; the notes give the two commands."""
    docs = render()
    assert not by_kind(docs, "ScaledObject") and not by_kind(docs, "TriggerAuthentication")
    assert METRICS_TOKEN_KEY not in next(iter(by_kind(docs, "Secret").values()))["stringData"]
    text = notes()
    assert "AUTOSCALING IS OFF" in text and CREATE_TOKEN in text and "--set secrets.metricsToken=" in text
    with pytest.raises(helm.HelmError, match="metrics.serviceMonitor.enabled"):
        render({"metrics": {"serviceMonitor": {"enabled": True}}})
    redis = render(VARIANTS["redis-trigger"])  # the redis trigger needs no token
    assert len(by_kind(redis, "ScaledObject")) == len(POOLS)


def test_presigned_urls_name_the_public_s3_endpoint():
    config = next(iter(by_kind(render(VARIANTS["metrics-token"]), "ConfigMap").values()))["data"]
    assert config["FARM_S3_PUBLIC_ENDPOINT_URL"] == "https://s3.farm.example.com"
    assert config["FARM_S3_ENDPOINT_URL"] == "http://farm-humo-farm-minio:9000"  # the farm's own stays in-cluster
    for values in ({}, PRODUCTION):
        config = next(iter(by_kind(render(values), "ConfigMap").values()))["data"]
        assert "FARM_S3_PUBLIC_ENDPOINT_URL" not in config  # default: the farm's endpoint


def test_every_process_knows_the_hero_group_size(variant):
    """FARM_HERO_GPUS = hero.gpusPerPod in the ConfigMap every farm process reads: the hero
    workers start that many ranks, beat and the dispatcher estimate the nightly budget with it."""
    _, values, docs = variant
    [config] = by_kind(docs, "ConfigMap").values()
    gpus = values.get("hero", {}).get("gpusPerPod", 8)
    assert config["data"]["FARM_HERO_GPUS"] == str(gpus)
    for doc in (one(docs, "StatefulSet", "hero"), one(docs, "Deployment", "beat"), one(docs, "Deployment", "dispatcher")):
        c = containers(doc)[0]
        assert {"configMapRef": {"name": config["metadata"]["name"]}} in c["envFrom"]
        assert "FARM_HERO_GPUS" not in {e["name"] for e in c.get("env", [])}  # nothing overrides it
    [group] = containers(one(docs, "StatefulSet", "hero"))
    assert group["resources"]["limits"]["nvidia.com/gpu"] == gpus
    for ok in (1, 2, 4, 5):
        data = next(iter(by_kind(render({"hero": {"gpusPerPod": ok}}), "ConfigMap").values()))["data"]
        assert data["FARM_HERO_GPUS"] == str(ok)


def test_liveness_does_not_need_the_database(tmp_path):
    """A Postgres failover makes the dispatcher unready (/healthz runs SELECT 1), not dead:
    the liveness probe asks /livez, which answers without the database."""
    from fastapi.testclient import TestClient

    from farm.api.app import create_app
    from farm.settings import Settings

    for values in ({}, PRODUCTION):
        [dispatcher] = [c for c in containers(one(render(values), "Deployment", "dispatcher"))
                        if c["name"] == "dispatcher"]
        assert dispatcher["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert dispatcher["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/missing/farm.db",
                        storage_url=f"file://{tmp_path}/clips")
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    assert client.get("/healthz").status_code >= 500  # no database: not ready
    live = client.get("/livez")
    assert live.status_code == 200 and live.json() == {"ok": True}


def test_forwarded_headers_are_trusted_only_from_the_configured_peers():
    """uvicorn believes X-Forwarded-For only from FORWARDED_ALLOW_IPS; "*" would let any client
    pick its own address and walk around the login rate limit."""
    def forwarded(values):
        [dispatcher] = [c for c in containers(one(render(values), "Deployment", "dispatcher"))
                        if c["name"] == "dispatcher"]
        return [e.get("value") for e in dispatcher["env"] if e["name"] == "FORWARDED_ALLOW_IPS"]

    assert forwarded({}) == forwarded(PRODUCTION) == []  # uvicorn's default: 127.0.0.1 only
    assert forwarded({"dispatcher": {"forwardedAllowIps": "10.244.0.0/16"}}) == ["10.244.0.0/16"]
    with pytest.raises(helm.HelmValuesError):
        render({"dispatcher": {"forwardedAllowIps": "*"}})
    assert "pod CIDR" in (CHART / "values.yaml").read_text()


def test_beat_is_one_and_migrations_run_first(variant):
    name, values, docs = variant
    beat = one(docs, "Deployment", "beat")
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"] == {"type": "Recreate"}
    [migrate] = by_kind(docs, "Job").values()
    hooks = migrate["metadata"]["annotations"]["helm.sh/hook"].split(",")
    internal_db = values.get("postgresql", {}).get("enabled", True)
    assert hooks == (["post-install", "pre-upgrade"] if internal_db else ["pre-install", "pre-upgrade"])
    assert containers(migrate)[0]["command"] == ["farm", "db", "upgrade"]
    for secret in by_kind(docs, "Secret").values():  # the Job's Secret exists before the Job runs
        annotations = secret["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert int(annotations["helm.sh/hook-weight"]) < int(migrate["metadata"]["annotations"]["helm.sh/hook-weight"])


def test_flower_sits_beside_the_dispatcher_behind_its_sign_in(variant):
    name, _, docs = variant
    dispatcher = one(docs, "Deployment", "dispatcher")
    names = {c["name"]: c for c in containers(dispatcher)}
    command = names["dispatcher"]["command"]
    assert command[:3] == ["farm", "up", "--no-worker"] and "--no-flower" in command
    if name == "no-autoscaling":
        assert "flower" not in names
        return
    flower = names["flower"]
    assert flower["command"] == ["farm", "flower"] and "ports" not in flower  # loopback only: no Service, no Ingress
    shared = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in names["dispatcher"]["env"] if "valueFrom" in e}
    assert {e["name"]: e["valueFrom"]["secretKeyRef"] for e in flower["env"] if "valueFrom" in e}["FARM_SECRET_KEY"] \
        == shared["FARM_SECRET_KEY"]  # the dispatcher derives Flower's password from the same key


def test_production_uses_external_services_and_the_operators_secret():
    docs = render(PRODUCTION)
    kinds = {(d["kind"], d["metadata"]["labels"]["app.kubernetes.io/component"]) for d in docs}
    assert not {c for _, c in kinds} & {"postgresql", "redis", "minio"} and not by_kind(docs, "Secret")
    config = next(iter(by_kind(docs, "ConfigMap").values()))["data"]
    assert config["FARM_STORAGE_URL"].startswith("s3://") and "FARM_S3_ENDPOINT_URL" not in config  # AWS itself
    worker = containers(one(docs, "Deployment", "explore"))[0]
    assert {"name": "FARM_EXPLORE_CHECKPOINT", "value": "humo-1.7b"} in worker["env"]
    assert all(c["image"].startswith("registry.example.com/humo-farm/") for d in workloads(docs) for c in containers(d))
    ingress = next(iter(by_kind(docs, "Ingress").values()))
    assert ingress["spec"]["tls"][0]["hosts"] == ["farm.example.com"]


def test_defaults_run_the_development_services_with_generated_credentials_kept_on_upgrade():
    docs = render()
    [secret] = by_kind(docs, "Secret").values()
    data = secret["stringData"]
    password = data["postgres-password"]
    assert data["database-url"] == f"postgresql+psycopg://farm:{password}@farm-humo-farm-postgresql:5432/farm"
    assert data["broker-url"] == "redis://farm-humo-farm-redis:6379/0" and len(data["secret-key"]) >= 32
    config = next(iter(by_kind(docs, "ConfigMap").values()))["data"]
    assert config["FARM_S3_ENDPOINT_URL"] == "http://farm-humo-farm-minio:9000"
    worker = containers(one(docs, "Deployment", "explore"))[0]
    assert {"name": "FARM_EXPLORE_CHECKPOINT", "value": "tiny"} in worker["env"]
    template = (CHART / "templates" / "secret.yaml").read_text()
    assert 'lookup "v1" "Secret"' in template  # an upgrade reads the generated values back
    # ... which `helm template` and Argo CD cannot: values.yaml sends GitOps to existingSecret
    documented = (CHART / "values.yaml").read_text()
    gitops = documented[documented.index("# GitOps"):documented.index("secrets:\n  existingSecret:")]
    assert "existingSecret" in gitops and "helm template" in gitops and "Argo CD" in gitops


def test_values_are_checked_against_the_schema():
    with helm.Chart.load(CHART) as chart:
        for bad in ({"explor": {}}, {"explore": {"gpusPerPod": 2}}, {"hero": {"gpusPerPod": 0}},
                    {"hero": {"gpusPerPod": 3}}, {"hero": {"gpusPerPod": 6}}, {"hero": {"gpusPerPod": 7}},
                    {"hero": {"gpusPerPod": 16}}, {"config": {"FARM_HERO_GPUS": "4"}},
                    {"hero": {"env": {"FARM_HERO_GPUS": "4"}}},
                    {"config": {"WORKER_TIMEOUT": "60"}}, {"autoscaling": {"trigger": "cpu"}},
                    {"metrics": {"serviceMonitor": {"enabled": "yes"}}},
                    {"metrics": {"serviceMonitor": {"interval": "30"}}}, {"secrets": {"metricsToken": 1}},
                    {"storage": {"url": "s3://b", "publicEndpointUrl": "s3.example.com"}}):
            with pytest.raises(helm.HelmValuesError):
                chart.render(bad, name="farm", namespace="render")
    with pytest.raises(helm.HelmError, match="secrets.databaseUrl"):
        render({"postgresql": {"enabled": False}})
    with pytest.raises(helm.HelmError, match="autoscaling.redis.passwordKey"):
        render({"autoscaling": {"trigger": "redis", "redis": {"passwordKey": "redis-password"}}})


def test_production_runs_two_dispatchers_with_a_disruption_budget_and_rolling_updates():
    """Several replicas are safe (one leads the release loop by a Postgres lock,
    tests/farm/test_leader.py): production runs 2 behind one Service, spread over nodes, a
    PodDisruptionBudget keeps one through drains, and a rollout starts the new pod first."""
    docs = render(PRODUCTION)
    dispatcher = one(docs, "Deployment", "dispatcher")
    assert dispatcher["spec"]["replicas"] == 2
    assert dispatcher["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    [budget] = by_kind(docs, "PodDisruptionBudget").values()
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == dispatcher["spec"]["selector"]["matchLabels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels(dispatcher).items()
    spread = pod(dispatcher)["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert spread[0]["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod_labels(dispatcher).items()
    assert not by_kind(render(), "PodDisruptionBudget")  # one replica (the default): a budget would block drains
    with pytest.raises(helm.HelmValuesError):
        render({"dispatcher": {"minAvailable": 0}})


def pod_labels(doc: dict) -> dict:
    return doc["spec"]["template"]["metadata"]["labels"]
