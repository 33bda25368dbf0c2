"""Deployment files: docker-compose.yml and deploy/k8s/, checked without Docker or a cluster.

- docker-compose.yml against the Compose Specification JSON schema (vendored from the
  compose-spec repository: tests/deploy/compose-spec.json, see tests/deploy/README.md), plus
  the project's rules: only the gateway publishes ports, every long-running service has a
  healthcheck and a restart policy, secrets come from ${VAR} listed in .env.example, named
  volumes are declared, internal services are only on the internal network.
- deploy/k8s/*.yaml against the Kubernetes v1.30 *strict* JSON schemas (unknown fields are
  errors; vendored from the kubernetes-validate package: tests/deploy/k8s-schemas-…json), plus
  references between the manifests (Secret and ConfigMap keys, Service selectors, network
  policies, replicas, the purge CronJob).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Tuple

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_TESTS = Path(__file__).resolve().parent / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"

#: ${VAR}, ${VAR:-default}, ${VAR:?error}, ${VAR-x} …; "$$" is an escaped dollar sign.
VAR_RE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(?::?[-?+])[^}]*)?\}")
SECRET_NAME_RE = re.compile(r"PASSWORD|TOKEN|SECRET|HMAC_KEY")


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> Dict[str, dict]:
    return load_compose()["services"]


def is_job(service: dict) -> bool:
    """One-off jobs run with ``docker compose --profile jobs run --rm NAME``."""
    return "jobs" in service.get("profiles", [])


# -- Compose ---------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification_schema():
    schema = json.loads((DEPLOY_TESTS / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(load_compose())]
    assert errors == []


def test_the_schema_check_catches_mistakes():
    """The vendored schema is strict enough to be worth running (guards against a stub)."""
    schema = json.loads((DEPLOY_TESTS / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    broken = load_compose()
    broken["services"]["rasa"]["helthcheck"] = broken["services"]["rasa"].pop("healthcheck")
    broken["services"]["gateway"]["restart"] = ["always"]
    broken["volumes"]["pgdata"] = "not-a-mapping"
    messages = [e.message for e in validator.iter_errors(broken)]
    assert len(messages) >= 3, messages


def test_only_the_gateway_publishes_ports():
    published = {name for name, s in services().items() if s.get("ports")}
    assert published == {"gateway"}


def test_internal_services_are_only_on_the_internal_network():
    compose = load_compose()
    assert compose["networks"]["internal"].get("internal") is True
    for name, s in services().items():
        networks = s.get("networks", [])
        assert networks, f"{name}: no network (would join the default, non-internal one)"
        if name != "gateway":
            assert list(networks) == ["internal"], (name, networks)


def test_every_service_has_a_healthcheck_and_a_restart_policy_except_one_off_jobs():
    jobs = []
    for name, s in services().items():
        if is_job(s):
            jobs.append(name)
            assert s.get("restart", "no") == "no", name
            assert not s.get("ports"), name
            continue
        check = s.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert s.get("restart") in ("always", "unless-stopped", "on-failure"), name
    assert jobs == ["backup"]
    long_running = {n for n, s in services().items() if not is_job(s)}
    assert long_running == {"gateway", "rasa", "actions", "purge", "postgres", "redis"}


def test_depends_on_waits_for_healthy_services_that_exist():
    all_services = services()
    for name, s in all_services.items():
        for dep, cond in (s.get("depends_on") or {}).items():
            assert dep in all_services, (name, dep)
            assert cond.get("condition") == "service_healthy", (name, dep)
            assert "healthcheck" in all_services[dep], (name, dep)


def _strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif node is not None:
        yield str(node)


def compose_variables() -> List[str]:
    """Variables interpolated anywhere in the compose file (comments excluded)."""
    return sorted({v for text in _strings(load_compose()) for v in VAR_RE.findall(text)})


def env_example() -> Dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_every_variable_of_the_compose_file_is_listed_in_env_example():
    variables = compose_variables()
    assert {"POSTGRES_PASSWORD", "SIGNPOST_HMAC_KEY", "RASA_TOKEN"} <= set(variables)
    missing = [v for v in variables if v not in env_example()]
    assert missing == []


def test_env_example_holds_no_real_secret():
    for key, value in env_example().items():
        if SECRET_NAME_RE.search(key):
            assert value == "" or "change-me" in value.lower(), key


def _secret_values(service: dict) -> List[Tuple[str, str]]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return [(k, str(v)) for k, v in env.items()]


def test_secrets_come_from_variables_never_literals():
    for name, s in services().items():
        for key, value in _secret_values(s):
            if SECRET_NAME_RE.search(key):
                assert VAR_RE.fullmatch(value), f"{name}.{key} must be a ${{VAR}} reference"
            for url in re.findall(r"[a-z+]+://[^\s\"']+", value):
                creds = re.match(r"[a-z+]+://([^@/]*)@", url)
                if creds and ":" in creds.group(1):
                    password = creds.group(1).split(":", 1)[1]
                    assert VAR_RE.fullmatch(password), f"{name}.{key}: literal password in URL"
    # the Rasa token on the command line is the container's variable, not a literal
    assert '--auth-token "$$RASA_TOKEN"' in " ".join(services()["rasa"]["command"])


def test_named_volumes_are_declared_and_used():
    compose = load_compose()
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, s in services().items():
        for volume in s.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith((".", "/", "~")):
                used.add(source)
                assert source in declared, f"{name}: volume {source} is not declared"
    assert "pgdata" in used and declared == used
    assert "pgdata:/var/lib/postgresql/data" in services()["postgres"]["volumes"]


def test_build_targets_exist_in_the_dockerfile():
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", (ROOT / "Dockerfile").read_text(),
                            flags=re.M | re.I))
    for name, s in services().items():
        build = s.get("build")
        if isinstance(build, dict) and "target" in build:
            assert build["target"] in stages, (name, build["target"], stages)
    assert {"gateway", "rasa", "actions"} <= stages


def test_rasa_uses_the_shared_stores_and_the_atomic_lock_store():
    rasa = services()["rasa"]
    command = " ".join(rasa["command"]) if isinstance(rasa["command"], list) else rasa["command"]
    assert command.startswith("python -m bot.preflight &&")
    mounted = {v.split(":")[1] for v in rasa["volumes"]}
    endpoints_path = re.search(r"--endpoints (\S+)", command).group(1)
    assert endpoints_path in mounted
    endpoints = yaml.safe_load((ROOT / "deploy" / "endpoints.compose.yml").read_text())
    lock = endpoints["lock_store"]
    assert lock["type"] == "bot.lock_store.AtomicRedisLockStore"
    assert lock["url"] in services() and str(lock["key_prefix"]).isalnum()
    assert endpoints["tracker_store"]["url"] == "${TRACKER_STORE_URL}"
    assert endpoints["action_endpoint"]["url"].startswith("http://actions:5055/")
    assert rasa["environment"]["REDIS_URL"] == f"redis://{lock['url']}:{lock['port']}/{lock['db']}"


# -- Kubernetes ------------------------------------------------------------------------------

K8S_SCHEMAS = json.loads(next(DEPLOY_TESTS.glob("k8s-schemas-*-strict.json")).read_text())


def manifests() -> List[Tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def of_kind(kind: str) -> List[dict]:
    return [d for _, d in manifests() if d["kind"] == kind]


def named(kind: str, name: str) -> dict:
    found = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def k8s_errors(doc: dict) -> List[str]:
    key = f"{doc.get('apiVersion')} {doc.get('kind')}"
    if key not in K8S_SCHEMAS["kinds"]:
        return [f"no schema for {key} (add it to tests/deploy/vendor_k8s_schemas.py)"]
    schema = {"$ref": f"#/$defs/{K8S_SCHEMAS['kinds'][key]}", "$defs": K8S_SCHEMAS["$defs"]}
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("source,doc", manifests(),
                         ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in manifests()])
def test_k8s_manifest_matches_the_kubernetes_schema(source, doc):
    assert k8s_errors(doc) == []


def test_the_k8s_schema_check_catches_mistakes():
    deployment = json.loads(json.dumps(named("Deployment", "rasa")))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["ports"][0]["containerPort"] = "http"     # a string where a number is needed
    container["resources"]["limit"] = container["resources"].pop("limits")  # misspelt field
    deployment["spec"]["replicas"] = "two"              # wrong type
    errors = k8s_errors(deployment)
    assert len(errors) >= 3, errors


def test_kustomization_lists_every_manifest_but_the_secret_template():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files - {"secret.example.yaml"}
    assert kustomization["namespace"] == named("Namespace", "signpost")["metadata"]["name"]
    images = {i["name"] for i in kustomization["images"]}
    used = {c["image"] for d in of_kind("Deployment") + of_kind("StatefulSet")
            for c in d["spec"]["template"]["spec"]["containers"]}
    assert {i for i in used if i.startswith("signpost/")} == images


def test_deployments_replicas_and_probes():
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in of_kind("Deployment")}
    assert replicas["gateway"] == 2 and replicas["rasa"] == 2 and replicas["actions"] >= 1
    assert {s["metadata"]["name"] for s in of_kind("StatefulSet")} == {"postgres", "redis"}
    for d in of_kind("Deployment") + of_kind("StatefulSet"):
        spec = d["spec"]
        assert spec["selector"]["matchLabels"].items() <= \
            spec["template"]["metadata"]["labels"].items(), d["metadata"]["name"]
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod.get("automountServiceAccountToken") is False
        for c in pod["containers"]:
            assert "readinessProbe" in c and "livenessProbe" in c, (d["metadata"]["name"], c["name"])
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
            assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_rasa_waits_for_its_stores_and_uses_the_atomic_lock_store():
    pod = named("Deployment", "rasa")["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["command"] == ["python", "-m", "bot.preflight"]
    endpoints = yaml.safe_load(named("ConfigMap", "signpost-rasa-endpoints")["data"]["endpoints.yml"])
    assert endpoints["lock_store"]["type"] == "bot.lock_store.AtomicRedisLockStore"
    assert endpoints["tracker_store"]["url"] == "${TRACKER_STORE_URL}"
    args = pod["containers"][0]["args"]
    assert args[args.index("--auth-token") + 1] == "$(RASA_TOKEN)"
    mount = pod["containers"][0]["volumeMounts"][0]["mountPath"]
    assert args[args.index("--endpoints") + 1] == f"{mount}/endpoints.yml"
    config = named("ConfigMap", "signpost-config")["data"]
    assert config["REDIS_URL"] == f"redis://{endpoints['lock_store']['url']}:6379/1"


def _pod_specs():
    for d in of_kind("Deployment") + of_kind("StatefulSet"):
        yield d["metadata"]["name"], d["spec"]["template"]["spec"]
    for c in of_kind("CronJob"):
        yield c["metadata"]["name"], c["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_secret_and_configmap_references_exist():
    secret = named("Secret", "signpost-secrets")
    secret_keys = set(secret["stringData"])
    configmaps = {c["metadata"]["name"]: set(c["data"]) for c in of_kind("ConfigMap")}
    for name, pod in _pod_specs():
        for c in pod.get("initContainers", []) + pod["containers"]:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    assert ref["secretKeyRef"]["name"] == "signpost-secrets", name
                    assert ref["secretKeyRef"]["key"] in secret_keys, (name, env["name"])
                if "configMapKeyRef" in ref:
                    cm = ref["configMapKeyRef"]
                    assert cm["key"] in configmaps[cm["name"]], (name, env["name"])
                if SECRET_NAME_RE.search(env["name"]) or env["name"] == "TRACKER_STORE_URL":
                    assert "secretKeyRef" in ref, f"{name}: {env['name']} must come from the Secret"
            for src in c.get("envFrom", []):
                assert src["configMapRef"]["name"] in configmaps, name
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, name
    # the template holds placeholders only
    for key, value in secret["stringData"].items():
        assert value == "" or "CHANGE-ME" in value, key


def test_services_select_existing_pods():
    pods = {}
    for d in of_kind("Deployment") + of_kind("StatefulSet"):
        labels = d["spec"]["template"]["metadata"]["labels"]
        ports = {p["name"] for c in d["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports", [])}
        pods[d["metadata"]["name"]] = (labels, ports)
    for svc in of_kind("Service"):
        selector = svc["spec"]["selector"].items()
        matches = [n for n, (labels, _) in pods.items() if selector <= labels.items()]
        assert matches == [svc["metadata"]["name"]], (svc["metadata"]["name"], matches)
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in pods[matches[0]][1]
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", "expose through the Ingress"
    for s in of_kind("StatefulSet"):
        assert named("Service", s["spec"]["serviceName"])
    for ingress in of_kind("Ingress"):
        backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"]
                    for p in r["http"]["paths"]}
        assert backends == {"gateway"}


def test_network_policies_let_only_the_gateway_in_from_outside():
    policies = of_kind("NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert len(deny) == 1 and "ingress" not in deny[0]["spec"]
    assert deny[0]["spec"]["policyTypes"] == ["Ingress"]
    open_to_all = []
    allowed: Dict[str, set] = {}
    for p in policies:
        if p in deny:
            continue
        target = p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for rule in p["spec"].get("ingress", []):
            sources = rule.get("from")
            if not sources:
                open_to_all.append(target)
                continue
            for source in sources:
                assert set(source) == {"podSelector"}, (p["metadata"]["name"], source)
                allowed.setdefault(target, set()).add(
                    source["podSelector"]["matchLabels"]["app.kubernetes.io/component"])
    assert open_to_all == ["gateway"]
    assert allowed == {
        "rasa": {"gateway"},
        "actions": {"rasa"},
        "postgres": {"rasa", "gateway", "purge"},
        "redis": {"rasa"},
    }


def test_purge_cronjob_runs_the_retention_command():
    cron = named("CronJob", "purge")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cron["spec"]["schedule"].split()) == 5
    template = cron["spec"]["jobTemplate"]["spec"]["template"]
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "purge"
    container = template["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "bot", "purge"]
    env = {e["name"] for e in container["env"]}
    assert {"TRACKER_STORE_URL", "RETENTION_DAYS"} <= env
