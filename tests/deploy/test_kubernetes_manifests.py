"""deploy/kubernetes: every object validates strictly against the Kubernetes OpenAPI schemas
(kubernetes-validate), the Cilium objects against hushflow's bundled Cilium CRD schemas, the
ServiceMonitor against the small schema of the fields we use; the kustomizations build (rendered
by tests/deploy/manifests.py, no kubectl needed); and the properties that matter hold: probes
that work on any IP family, limits, and a non-root, read-only, capability-less container
everywhere, both modes wired as documented. RBAC, the admission policy and hushflow's own
network policy have test files of their own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

from hushflow.app.http import parse_listen_address
from hushflow.policy.schema import validate_object
from hushflow.sinks.metric_names import LIVENESS_PATH, METRICS_PORT, READINESS_PATH
from tests.deploy.manifests import (
    KUBERNETES_DIR,
    MODES,
    WORKLOAD_KIND,
    KustomizeError,
    containers,
    documents,
    manifest_files,
    mode,
    named,
    one,
    render,
    workload,
    workloads,
)

IMAGE = "ghcr.io/hushflow/hushflow:0.1.0"
# The oldest Kubernetes the manifests support (ValidatingAdmissionPolicy is GA in 1.30) and the
# newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SERVICEMONITOR_SCHEMA = json.loads((Path(__file__).parent / "servicemonitor.schema.json").read_text())
NONROOT_UID = 65532
STATE_PATH = "/var/lib/hushflow/state.json"


def _all_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(str(path.relative_to(KUBERNETES_DIR)), document)
            for path in manifest_files() for document in documents(path)]


def _object_id(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[0]}:{item[1]['kind']}/{item[1]['metadata']['name']}"


def _pod(item: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = item["spec"]["template"]["spec"]
    return spec


def _workload_id(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[0]}:{item[1]['kind']}"


# --- schemas ----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("item", _all_objects(), ids=_object_id)
def test_objects_validate_strictly(item: tuple[str, dict[str, Any]], version: str) -> None:
    path, document = item
    if document["apiVersion"] == "monitoring.coreos.com/v1":
        jsonschema.Draft202012Validator(SERVICEMONITOR_SCHEMA).validate(document)
        return
    if document["apiVersion"].startswith("cilium.io/"):
        # Cilium's CRD schemas are not Kubernetes' own: hushflow bundles them (with unknown
        # fields refused, as `kubectl apply --validate=strict` refuses them).
        problems = validate_object(document, document["apiVersion"], document["kind"])
        assert problems == [], f"{path}: {problems}"
        return
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        location = ".".join(str(part) for part in error.path)
        pytest.fail(f"{path}: {document['kind']} {location}: {error.message}", pytrace=False)
    except kubernetes_validate.SchemaNotFoundError as error:
        pytest.fail(f"{path}: {error.message}: add a schema for it (like servicemonitor.schema.json)", pytrace=False)


def test_cilium_objects_have_a_bundled_schema() -> None:
    from hushflow.policy.schema import validator_for

    for path, document in _all_objects():
        if document["apiVersion"].startswith("cilium.io/"):
            assert validator_for(document["apiVersion"], document["kind"]) is not None, path


def test_servicemonitor_schema_rejects_what_the_crd_rejects() -> None:
    monitor = one(mode("relay"), "ServiceMonitor")
    validator = jsonschema.Draft202012Validator(SERVICEMONITOR_SCHEMA)
    for broken in (
        {**monitor, "spec": {**monitor["spec"], "endpoints": [{"port": "metrics", "interval": "30 seconds"}]}},
        {**monitor, "spec": {**monitor["spec"], "endpoint": monitor["spec"]["endpoints"]}},
    ):
        assert not validator.is_valid(broken)


# --- kustomizations ---------------------------------------------------------------------------

KUSTOMIZATIONS = sorted(path.parent for path in KUBERNETES_DIR.rglob("kustomization.yaml"))


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda path: path.name)
def test_kustomization_builds_and_lists_every_file_of_its_directory(directory: Path) -> None:
    assert render(directory), f"{directory.name}: builds nothing"
    listed = yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"]
    files = {path.name for path in directory.glob("*.yaml")} - {"kustomization.yaml"}
    assert files <= set(listed), f"{directory.name}: not in kustomization.yaml: {sorted(files - set(listed))}"


def _write_kustomization(directory: Path, resources: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources}))


CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: hushflow}\n"


@pytest.mark.parametrize(("case", "problem"), [
    ("missing file", "does not exist"),
    ("same object twice", "is already in"),
    ("file outside the directory", "is outside"),
    ("directory without kustomization", "needs a kustomization.yaml"),
    ("listed twice", "listed twice"),
    ("a field not rendered", "are not rendered here"),
])
def test_rendering_refuses_what_kustomize_refuses(tmp_path: Path, case: str, problem: str) -> None:
    # What makes the rendering stand in for `kubectl kustomize`: it builds only what kustomize
    # builds the same way, and fails where kustomize fails.
    root = tmp_path / "root"
    _write_kustomization(root, [])
    (root / "a.yaml").write_text(CONFIG_MAP)
    (tmp_path / "outside.yaml").write_text(CONFIG_MAP)
    (root / "plain").mkdir()
    (root / "plain" / "a.yaml").write_text(CONFIG_MAP)
    _write_kustomization(root / "sub", ["a.yaml"])
    (root / "sub" / "a.yaml").write_text(CONFIG_MAP)
    resources = {
        "missing file": ["b.yaml"],
        "same object twice": ["a.yaml", "sub"],
        "file outside the directory": ["../outside.yaml"],
        "directory without kustomization": ["plain"],
        "listed twice": ["a.yaml", "a.yaml"],
        "a field not rendered": ["a.yaml"],
    }[case]
    _write_kustomization(root, resources)
    if case == "a field not rendered":
        text = (root / "kustomization.yaml").read_text()
        (root / "kustomization.yaml").write_text(text + "namePrefix: x-\n")
    with pytest.raises(KustomizeError, match=problem):
        render(root)
    _write_kustomization(root, ["a.yaml"])
    assert [item["metadata"]["name"] for item in render(root)] == ["a"]


def _scalars(node: yaml.Node) -> list[yaml.ScalarNode]:
    if isinstance(node, yaml.ScalarNode):
        return [node]
    if isinstance(node, yaml.SequenceNode):
        return [scalar for item in node.value for scalar in _scalars(item)]
    if isinstance(node, yaml.MappingNode):
        return [scalar for key, value in node.value for scalar in (*_scalars(key), *_scalars(value))]
    return []


@pytest.mark.parametrize("path", manifest_files(), ids=lambda path: str(path.relative_to(KUBERNETES_DIR)))
def test_no_folded_scalar_keeps_a_line_break(path: Path) -> None:
    # PyYAML and Go's YAML (kubectl) fold a `>` block with more-indented lines differently, so
    # the rendering here would not be what the API server gets: write such text as a `|` block.
    for document in yaml.compose_all(path.read_text()):
        for scalar in _scalars(document) if document is not None else []:
            if scalar.style == ">":
                assert "\n" not in scalar.value.rstrip("\n"), f"{path.name}:{scalar.start_mark.line + 1}"


@pytest.mark.parametrize("mode_name", MODES)
def test_mode_has_everything_once(mode_name: str) -> None:
    objects = mode(mode_name)
    kinds = sorted(item["kind"] for item in objects)
    policies = {"relay": ["CiliumNetworkPolicy"] * 3, "per-node": ["CiliumNetworkPolicy"] * 2}[mode_name]
    # What serves the enriched flows (tests/deploy/test_serve_deployments.py): relay mode's
    # hushflow-observer Service; per-node mode's hushflow-peer Service and Cilium's Relay over them.
    served = {"relay": ["Service"], "per-node": ["Service", "ConfigMap", "Deployment", "Service"]}[mode_name]
    assert kinds == sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
                            "Service", "ServiceMonitor", WORKLOAD_KIND[mode_name], *policies, *served])
    namespaced = [item for item in objects if item["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding"}]
    assert {item["metadata"]["namespace"] for item in namespaced} == {"hushflow"}


# --- workloads: locked down -----------------------------------------------------------------

def test_the_workloads_are_the_two_modes() -> None:
    # The properties below are checked on every object with a pod template in deploy/kubernetes;
    # nothing else may run a pod (a CronJob or bare Pod would escape them). The second Deployment
    # is per-node mode's Hubble Relay (Cilium's image) over the hushflow instances.
    assert sorted((path, item["kind"]) for path, item in workloads()) == [
        ("per-node/daemonset.yaml", "DaemonSet"), ("per-node/relay-deployment.yaml", "Deployment"),
        ("relay/deployment.yaml", "Deployment")]
    kinds = {item["kind"] for _, item in _all_objects()}
    assert not kinds & {"Pod", "CronJob"}


def _effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A security setting as the kubelet applies it: the container's, else the pod's."""
    return container.get("securityContext", {}).get(key, pod.get("securityContext", {}).get(key))


@pytest.mark.parametrize("item", workloads(), ids=_workload_id)
def test_every_container_runs_locked_down(item: tuple[str, dict[str, Any]]) -> None:
    path, found = item
    pod = _pod(found)
    for key in ("hostNetwork", "hostPID", "hostIPC", "hostUsers", "shareProcessNamespace"):
        assert key not in pod, f"{path}: {key}"
    for container in containers(found):
        name = f"{path}:{container['name']}"
        assert _effective(pod, container, "runAsNonRoot") is True, name
        # A numeric UID: runAsNonRoot alone lets the kubelet refuse an image whose user is a name.
        uid = _effective(pod, container, "runAsUser")
        assert isinstance(uid, int) and uid == NONROOT_UID, name
        gid = _effective(pod, container, "runAsGroup")
        assert isinstance(gid, int) and gid != 0, name
        assert _effective(pod, container, "seccompProfile") == {"type": "RuntimeDefault"}, name
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"] == {"drop": ["ALL"]}, name
        assert not security.get("privileged") and "procMount" not in security, name
        assert all("hostPort" not in port for port in container.get("ports", [])), name


@pytest.mark.parametrize(("mode_name", "groups"), [("relay", None), ("per-node", [0])])
def test_only_per_node_mode_joins_group_root(mode_name: str, groups: list[int] | None) -> None:
    # Per-node mode connects to the node's hubble.sock, which cilium-agent creates as root:root
    # mode 0660 (docs/operations.md, "Per-node mode"): a non-root process can connect only as a
    # member of the socket's group, GID 0. It is a supplementary group only: files hushflow
    # creates stay group 65532, and relay mode, which reads no socket, does not get it.
    security = _pod(workload(mode_name))["securityContext"]
    assert security.get("supplementalGroups") == groups
    assert security["runAsGroup"] == NONROOT_UID and "fsGroup" not in security


@pytest.mark.parametrize("item", workloads(), ids=_workload_id)
def test_writable_paths_are_emptydirs_and_the_token_only_where_used(item: tuple[str, dict[str, Any]]) -> None:
    path, found = item
    pod = _pod(found)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for container in containers(found):
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if not mount.get("readOnly"):
                assert set(volume) == {"name", "emptyDir"}, f"{path}: {mount['mountPath']} is writable"
                assert volume["emptyDir"].get("sizeLimit"), f"{path}: {mount['name']} has no sizeLimit"
        args = container.get("args", [])
        if "--state" in args:
            state_dir = str(Path(args[args.index("--state") + 1]).parent)
            (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == state_dir]
            assert not mount.get("readOnly") and "emptyDir" in volumes[mount["name"]]
        assert any(m["mountPath"] == "/tmp" and not m.get("readOnly") for m in container["volumeMounts"])
    # The account's token is mounted only into pods that call the API (`--apply`).
    calls_api = any("--apply" in container.get("args", []) for container in containers(found))
    assert pod["automountServiceAccountToken"] is calls_api, path


def test_the_service_account_mounts_no_token_by_default() -> None:
    assert one(mode("relay"), "ServiceAccount")["automountServiceAccountToken"] is False


# --- workloads: probes and the metrics port on every IP family --------------------------------

@pytest.mark.parametrize("item", workloads(), ids=_workload_id)
def test_probes_work_on_any_ip_family(item: tuple[str, dict[str, Any]]) -> None:
    path, found = item
    for container in containers(found):
        name = f"{path}:{container['name']}"
        if container["command"] != ["hushflow"]:
            continue  # Cilium's Relay: tests/deploy/test_serve_deployments.py
        probes = {kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
        for kind, probe in probes.items():
            # No host: the kubelet probes the pod IP, whichever family the cluster gives pods.
            assert set(probe["httpGet"]) == {"path", "port"}, f"{name}: {kind}"
            assert probe["httpGet"]["port"] == "metrics", f"{name}: {kind}"
        assert probes["startupProbe"]["httpGet"]["path"] == LIVENESS_PATH, name
        assert probes["livenessProbe"]["httpGet"]["path"] == LIVENESS_PATH, name
        assert probes["readinessProbe"]["httpGet"]["path"] == READINESS_PATH, name
        # The metrics port first; a --serve port beside it is checked in test_serve_deployments.py.
        assert container["ports"][0] == {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}, name
        assert len(container["ports"]) == 1 + ("--serve" in container["args"]), name
        # ...and the server behind the port listens on every IPv6 and IPv4 address, said
        # explicitly rather than left to the default.
        args = container["args"]
        address = parse_listen_address(args[args.index("--metrics-address") + 1])
        assert (address.host, address.port, address.every_address) == ("::", METRICS_PORT, True), name


@pytest.mark.parametrize("mode_name", MODES)
def test_every_container_has_limits_and_the_image(mode_name: str) -> None:
    for container in containers(workload(mode_name)):
        assert container["image"] == IMAGE
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{container['name']}: {bound}"


# --- workloads: wiring ------------------------------------------------------------------------

@pytest.mark.parametrize(("mode_name", "server"), [
    ("relay", "hubble-relay.kube-system.svc:80"),
    ("per-node", "unix:///var/run/cilium/hubble.sock"),
])
def test_mode_reads_its_hubble_and_the_policies(mode_name: str, server: str) -> None:
    found = workload(mode_name)
    pod = _pod(found)
    (container,) = pod["containers"]
    args = container["args"]
    assert args[0] == "run"
    assert args[args.index("--hubble-server") + 1] == server
    policies = args[args.index("--policies") + 1]
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert mounts["policies"]["mountPath"] == policies and mounts["policies"]["readOnly"] is True
    assert volumes["policies"]["configMap"]["name"] == named(mode(mode_name), "ConfigMap", "hushflow-policies")[
        "metadata"]["name"]
    host_paths = {name: volume["hostPath"] for name, volume in volumes.items() if "hostPath" in volume}
    if mode_name == "per-node":
        assert host_paths == {"cilium-run": {"path": "/var/run/cilium", "type": "Directory"}}
        assert mounts["cilium-run"] == {"name": "cilium-run", "mountPath": "/var/run/cilium", "readOnly": True}
    else:
        assert host_paths == {}


@pytest.mark.parametrize("mode_name", MODES)
def test_arguments_are_hushflow_runs_own(mode_name: str) -> None:
    from hushflow.cli.run import run

    (container,) = _pod(workload(mode_name))["containers"]
    assert container["command"] == ["hushflow"] and container["args"][0] == "run"
    context = run.make_context("hushflow run", list(container["args"][1:]))
    assert context.params["metrics_address"] == f"[::]:{METRICS_PORT}"
    assert context.params["state_path"] == STATE_PATH


def test_relay_mode_is_the_single_writer() -> None:
    spec = workload("relay")["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    (container,) = spec["template"]["spec"]["containers"]
    assert "--apply" in container["args"]


def test_per_node_instances_write_only_their_own_cidr_groups() -> None:
    # Each instance names and prunes its groups by HUSHFLOW_INSTANCE (the node): several writers
    # never touch each other's IPs, and the policies select all of them by the deny label.
    (container,) = _pod(workload("per-node"))["containers"]
    assert "--apply" in container["args"] and "--state" in container["args"]
    (env,) = [e for e in container["env"] if e["name"] == "HUSHFLOW_INSTANCE"]
    assert env["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


@pytest.mark.parametrize(("mode_name", "level"), [("relay", "restricted"), ("per-node", "privileged")])
def test_namespace_pod_security(mode_name: str, level: str) -> None:
    labels = one(mode(mode_name), "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == level
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


def test_policies_configmap_holds_policy_files() -> None:
    data = one(mode("relay"), "ConfigMap")["data"]
    assert data
    for key, text in data.items():
        assert key.endswith((".yaml", ".yml")), key
        for policy in yaml.safe_load_all(text):
            assert policy["kind"] in {"CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"}, key


# --- metrics wiring -------------------------------------------------------------------------

@pytest.mark.parametrize("mode_name", MODES)
def test_service_and_servicemonitor_reach_the_pods(mode_name: str) -> None:
    objects = mode(mode_name)
    service = named(objects, "Service", "hushflow")
    monitor = one(objects, "ServiceMonitor")
    pod_labels = workload(mode_name)["spec"]["template"]["metadata"]["labels"]
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
