"""deploy/kubernetes: every object validates strictly against the Kubernetes OpenAPI schemas
(kubernetes-validate), the ServiceMonitor against the small schema of the fields we use (its CRD
is not in kubernetes-validate), and the properties that matter hold: least-privilege RBAC,
probes, limits and a non-root, read-only container everywhere, both modes wired as documented."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cel_expr_python import cel
from kubernetes_validate import utils as kubernetes_validate

from hushflow.sinks.metric_names import LIVENESS_PATH, METRICS_PORT, READINESS_PATH

KUBERNETES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
MODES = ("relay", "per-node")
IMAGE = "ghcr.io/hushflow/hushflow:0.1.0"
# The oldest Kubernetes the manifests support (ValidatingAdmissionPolicy is GA in 1.30) and the
# newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SERVICEMONITOR_SCHEMA = json.loads((Path(__file__).parent / "servicemonitor.schema.json").read_text())
POLICY_RESOURCES = {"ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies"}
READ_VERBS = {"get", "list", "watch"}
MANAGED_BY = ("app.kubernetes.io/managed-by", "hushflow")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _manifest_files() -> list[Path]:
    return sorted(path for path in KUBERNETES_DIR.rglob("*.yaml") if path.name != "kustomization.yaml")


def _all_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(str(path.relative_to(KUBERNETES_DIR)), document)
            for path in _manifest_files() for document in _documents(path)]


def _kustomize(directory: Path) -> Iterator[dict[str, Any]]:
    """The objects `kubectl apply -k directory` applies (resources only: we use no patches)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "resources"}, "update _kustomize for the new fields"
    for resource in kustomization["resources"]:
        path = directory / resource
        if path.is_dir():
            yield from _kustomize(path)
        else:
            yield from _documents(path)


def _mode(mode: str) -> list[dict[str, Any]]:
    return list(_kustomize(KUBERNETES_DIR / mode))


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [item for item in objects if item["kind"] == kind]
    return found


def _workload(mode: str) -> dict[str, Any]:
    return _one(_mode(mode), {"relay": "Deployment", "per-node": "DaemonSet"}[mode])


def _containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _object_id(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[0]}:{item[1]['kind']}/{item[1]['metadata']['name']}"


# --- schemas ----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("item", _all_objects(), ids=_object_id)
def test_objects_validate_strictly(item: tuple[str, dict[str, Any]], version: str) -> None:
    path, document = item
    if document["apiVersion"] == "monitoring.coreos.com/v1":
        jsonschema.Draft202012Validator(SERVICEMONITOR_SCHEMA).validate(document)
        return
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        location = ".".join(str(part) for part in error.path)
        pytest.fail(f"{path}: {document['kind']} {location}: {error.message}", pytrace=False)
    except kubernetes_validate.SchemaNotFoundError as error:
        pytest.fail(f"{path}: {error.message}: add a schema for it (like servicemonitor.schema.json)", pytrace=False)


def test_servicemonitor_schema_rejects_what_the_crd_rejects() -> None:
    monitor = _one(_mode("relay"), "ServiceMonitor")
    validator = jsonschema.Draft202012Validator(SERVICEMONITOR_SCHEMA)
    for broken in (
        {**monitor, "spec": {**monitor["spec"], "endpoints": [{"port": "metrics", "interval": "30 seconds"}]}},
        {**monitor, "spec": {**monitor["spec"], "endpoint": monitor["spec"]["endpoints"]}},
    ):
        assert not validator.is_valid(broken)


# --- kustomizations ---------------------------------------------------------------------------

@pytest.mark.parametrize("directory", sorted(path.parent for path in KUBERNETES_DIR.rglob("kustomization.yaml")),
                         ids=lambda path: path.name)
def test_kustomization_lists_every_file_of_its_directory(directory: Path) -> None:
    listed = yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"]
    for resource in listed:
        assert (directory / resource).exists(), f"{directory.name}/kustomization.yaml: {resource} does not exist"
    files = {path.name for path in directory.glob("*.yaml")} - {"kustomization.yaml"}
    assert files <= set(listed), f"{directory.name}: not in kustomization.yaml: {sorted(files - set(listed))}"


@pytest.mark.parametrize("mode", MODES)
def test_mode_has_everything_once(mode: str) -> None:
    kinds = sorted(item["kind"] for item in _mode(mode))
    workload = {"relay": "Deployment", "per-node": "DaemonSet"}[mode]
    assert kinds == sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
                            "Service", "ServiceMonitor", workload])
    namespaced = [item for item in _mode(mode) if item["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding"}]
    assert {item["metadata"]["namespace"] for item in namespaced} == {"hushflow"}


@pytest.mark.parametrize("mode", MODES)
def test_kubectl_kustomize_builds_the_same_objects(mode: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the kustomizations are checked by the tests above")
    result = subprocess.run([kubectl, "kustomize", str(KUBERNETES_DIR / mode)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    built = [document for document in yaml.safe_load_all(result.stdout) if document]

    def key(item: dict[str, Any]) -> tuple[str, str]:
        return item["kind"], item["metadata"]["name"]

    assert sorted(built, key=key) == sorted(_mode(mode), key=key)


# --- RBAC ---------------------------------------------------------------------------------------

def test_cluster_role_is_least_privilege() -> None:
    role = _one(_mode("relay"), "ClusterRole")
    granted: dict[str, set[str]] = {}
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["cilium.io"], rule
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for resource in rule["resources"]:
            granted.setdefault(resource, set()).update(rule["verbs"])
    assert "*" not in {verb for verbs in granted.values() for verb in verbs}
    for resource in POLICY_RESOURCES:
        assert granted.pop(resource) == READ_VERBS, f"{resource}: hushflow must never write policies"
    assert granted == {"ciliumcidrgroups": READ_VERBS | {"create", "update", "patch", "delete"}}


def test_rbac_says_it_cannot_restrict_by_label() -> None:
    text = (KUBERNETES_DIR / "common" / "rbac.yaml").read_text()
    assert "RBAC cannot restrict by label" in text and "app.kubernetes.io/managed-by=hushflow" in text


def test_binding_is_for_hushflows_service_account() -> None:
    objects = _mode("relay")
    binding = _one(objects, "ClusterRoleBinding")
    account = _one(objects, "ServiceAccount")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "hushflow"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]


# --- workloads ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_every_container_has_probes_limits_and_runs_locked_down(mode: str) -> None:
    workload = _workload(mode)
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == "hushflow"
    for container in _containers(workload):
        name = container["name"]
        assert container["image"] == IMAGE
        probes = {kind: container[kind]["httpGet"] for kind in ("livenessProbe", "readinessProbe")}
        assert probes["livenessProbe"] == {"path": LIVENESS_PATH, "port": "metrics"}, name
        assert probes["readinessProbe"] == {"path": READINESS_PATH, "port": "metrics"}, name
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name}: resources.{bound}"
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"] == {"drop": ["ALL"]}, name
        assert "privileged" not in security and "add" not in security["capabilities"], name
        assert container["ports"] == [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}], name


@pytest.mark.parametrize(("mode", "server"), [
    ("relay", "hubble-relay.kube-system.svc:80"),
    ("per-node", "unix:///var/run/cilium/hubble.sock"),
])
def test_mode_reads_its_hubble_and_the_policies(mode: str, server: str) -> None:
    workload = _workload(mode)
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "run"
    assert args[args.index("--hubble-server") + 1] == server
    policies = args[args.index("--policies") + 1]
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in workload["spec"]["template"]["spec"]["volumes"]}
    assert mounts["policies"]["mountPath"] == policies and mounts["policies"]["readOnly"] is True
    assert volumes["policies"]["configMap"]["name"] == _one(_mode(mode), "ConfigMap")["metadata"]["name"]
    host_paths = {name: volume["hostPath"] for name, volume in volumes.items() if "hostPath" in volume}
    if mode == "per-node":
        assert host_paths == {"cilium-run": {"path": "/var/run/cilium", "type": "Directory"}}
        assert mounts["cilium-run"] == {"name": "cilium-run", "mountPath": "/var/run/cilium", "readOnly": True}
    else:
        assert host_paths == {}


@pytest.mark.parametrize("mode", MODES)
def test_arguments_are_hushflow_runs_own(mode: str) -> None:
    from hushflow.cli.run import run

    (container,) = _workload(mode)["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["hushflow"] and container["args"][0] == "run"
    context = run.make_context("hushflow run", list(container["args"][1:]))
    assert context.params["metrics_address"].endswith(f":{METRICS_PORT}")


def test_relay_mode_is_the_single_writer() -> None:
    workload = _workload("relay")
    spec = workload["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert "--apply" in args and pod["automountServiceAccountToken"] is True
    # The state file must be on a writable volume: the root filesystem is read-only.
    state_dir = str(Path(args[args.index("--state") + 1]).parent)
    (mount,) = [mount for mount in container["volumeMounts"] if mount["mountPath"] == state_dir]
    assert not mount.get("readOnly")
    assert "emptyDir" in next(volume for volume in pod["volumes"] if volume["name"] == mount["name"])


def test_per_node_instances_write_only_their_own_cidr_groups() -> None:
    # Each instance names and prunes its groups by HUSHFLOW_INSTANCE (the node): several writers
    # never touch each other's IPs, and the policies select all of them by the deny label.
    pod = _workload("per-node")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "--apply" in container["args"] and "--state" in container["args"]
    (env,) = [e for e in container["env"] if e["name"] == "HUSHFLOW_INSTANCE"]
    assert env["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert pod["automountServiceAccountToken"] is True


@pytest.mark.parametrize(("mode", "level"), [("relay", "restricted"), ("per-node", "privileged")])
def test_namespace_pod_security(mode: str, level: str) -> None:
    labels = _one(_mode(mode), "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == level
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


def test_policies_configmap_holds_policy_files() -> None:
    data = _one(_mode("relay"), "ConfigMap")["data"]
    assert data
    for key, text in data.items():
        assert key.endswith((".yaml", ".yml")), key
        for policy in yaml.safe_load_all(text):
            assert policy["kind"] in {"CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"}, key


# --- metrics wiring -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_service_and_servicemonitor_reach_the_pods(mode: str) -> None:
    objects = _mode(mode)
    service = _one(objects, "Service")
    monitor = _one(objects, "ServiceMonitor")
    pod_labels = _workload(mode)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    # Not ready = disconnected from Hubble: exactly when the metrics must still be scraped.
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"] == [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics",
                                         "protocol": "TCP"}]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    assert [endpoint["port"] for endpoint in monitor["spec"]["endpoints"]] == ["metrics"]
    # The alert rules select job="hushflow": the job comes from this Service label.
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "hushflow"


# --- the optional admission policy --------------------------------------------------------------

def _admission_policy() -> dict[str, Any]:
    return _one(list(_kustomize(KUBERNETES_DIR / "hardening")), "ValidatingAdmissionPolicy")


def _labelled(owner: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "hushflow-telemetry"}
    if owner is not None:
        metadata["labels"] = {MANAGED_BY[0]: owner, "team": "x"}
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumCIDRGroup", "metadata": metadata}


ADMISSION_CASES = [
    ("create a labelled group", "CREATE", None, _labelled("hushflow"), True),
    ("create an unlabelled group", "CREATE", None, _labelled(None), False),
    ("create a group labelled for another manager", "CREATE", None, _labelled("argocd"), False),
    ("update its own group", "UPDATE", _labelled("hushflow"), _labelled("hushflow"), True),
    ("take over another group", "UPDATE", _labelled(None), _labelled("hushflow"), False),
    ("release its own group", "UPDATE", _labelled("hushflow"), _labelled(None), False),
    ("delete its own group", "DELETE", _labelled("hushflow"), None, True),
    ("delete another group", "DELETE", _labelled("argocd"), None, False),
]


@pytest.mark.parametrize(("operation", "old", "new", "allowed"), [case[1:] for case in ADMISSION_CASES],
                         ids=[case[0] for case in ADMISSION_CASES])
def test_admission_policy_lets_hushflow_touch_only_its_groups(
    operation: str, old: dict[str, Any] | None, new: dict[str, Any] | None, allowed: bool
) -> None:
    dyn = cel.Type("dyn")
    env = cel.NewEnv(variables={"object": dyn, "oldObject": dyn, "request": dyn})
    data = {"object": new, "oldObject": old,
            "request": {"operation": operation, "userInfo": {"username": "system:serviceaccount:hushflow:hushflow"}}}
    spec = _admission_policy()["spec"]
    (condition,) = spec["matchConditions"]
    assert env.compile(condition["expression"]).eval(data=data).value() is True
    results = [env.compile(rule["expression"]).eval(data=data).value() for rule in spec["validations"]]
    assert all(results) is allowed, results


def test_admission_policy_matches_only_hushflow_and_cidr_groups() -> None:
    policy = _admission_policy()
    account = _one(_mode("relay"), "ServiceAccount")["metadata"]
    expected_user = f"system:serviceaccount:{account['namespace']}:{account['name']}"
    (condition,) = policy["spec"]["matchConditions"]
    assert condition["expression"] == f'request.userInfo.username == "{expected_user}"'
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["ciliumcidrgroups"] and rule["apiGroups"] == ["cilium.io"]
    binding = _one(list(_kustomize(KUBERNETES_DIR / "hardening")), "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
