"""hushflow's own pods: a CiliumNetworkPolicy admits only metrics scrapes (and the kubelet's
probes) and lets out only what hushflow calls: the Kubernetes API, kube-dns, and in relay mode
Hubble Relay.

The policies are valid for Cilium (the bundled CRD schemas) and clean for `hushflow lint`; and
what they let through is decided by hushflow's own policy engine (the decision Cilium's datapath
makes, hushflow.engine.decision) on connections to and from a hushflow pod.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from hushflow.cli import main
from hushflow.engine.decision import PolicyEngine
from hushflow.flow.connection import connection_of
from hushflow.policy.diagnostics import Severity
from hushflow.policy.lint import lint_paths
from hushflow.policy.loading import load_policies
from hushflow.sinks.metric_names import METRICS_PORT
from tests.deploy.manifests import KUBERNETES_DIR, MODES, mode, workload

POLICY_FILES = {
    "per-node": [KUBERNETES_DIR / "common" / "network-policy.yaml", KUBERNETES_DIR / "per-node" / "network-policy-peer.yaml"],
    "relay": [KUBERNETES_DIR / "common" / "network-policy.yaml", KUBERNETES_DIR / "relay" / "network-policy-relay.yaml",
              KUBERNETES_DIR / "relay" / "network-policy-observer.yaml"],
}
# Where Prometheus is assumed to run (common/network-policy.yaml says how to change it).
MONITORING_NAMESPACE = "monitoring"


def _policies(mode_name: str) -> list[dict[str, Any]]:
    return [item for item in mode(mode_name) if item["kind"] == "CiliumNetworkPolicy"]


def test_the_policy_files_are_those_of_the_modes() -> None:
    for mode_name in MODES:
        from_files = [doc for path in POLICY_FILES[mode_name] for doc in yaml.safe_load_all(path.read_text()) if doc]
        assert from_files == _policies(mode_name)


@pytest.mark.parametrize("mode_name", MODES)
def test_the_policies_select_the_pods(mode_name: str) -> None:
    template = workload(mode_name)["spec"]["template"]
    for policy in _policies(mode_name):
        assert policy["metadata"]["namespace"] == workload(mode_name)["metadata"]["namespace"]
        assert policy["spec"]["endpointSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()


@pytest.mark.parametrize("mode_name", MODES)
def test_hushflow_lint_reports_no_error_or_warning(mode_name: str) -> None:
    paths = [str(path) for path in POLICY_FILES[mode_name]]
    report = lint_paths(paths)
    assert report.policies == len(paths)
    assert [d for d in report.diagnostics if d.level in (Severity.ERROR, Severity.WARNING)] == []
    result = CliRunner().invoke(main, ["lint", "--strict", *paths])
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output


# --- what gets through ---------------------------------------------------------------------------

HUSHFLOW_POD: dict[str, Any] = {
    "identity": 40001, "namespace": "hushflow", "pod_name": "hushflow-0",
    "labels": ["k8s:app.kubernetes.io/name=hushflow", "k8s:app.kubernetes.io/part-of=hushflow",
               "k8s:io.cilium.k8s.policy.serviceaccount=hushflow", "k8s:io.kubernetes.pod.namespace=hushflow"],
}


def _pod(namespace: str, identity: int, **labels: str) -> dict[str, Any]:
    return {"identity": identity, "namespace": namespace,
            "labels": [*(f"k8s:{key}={value}" for key, value in labels.items()),
                       f"k8s:io.kubernetes.pod.namespace={namespace}"]}


KUBE_DNS = _pod("kube-system", 41001, **{"k8s-app": "kube-dns"})
HUBBLE_RELAY = _pod("kube-system", 41002, **{"k8s-app": "hubble-relay", "app.kubernetes.io/name": "hubble-relay"})
OTHER_KUBE_SYSTEM = _pod("kube-system", 41003, **{"k8s-app": "metrics-server"})
PROMETHEUS = _pod(MONITORING_NAMESPACE, 42001, **{"app.kubernetes.io/name": "prometheus"})
A_WORKLOAD = _pod("payments", 43001, **{"app": "checkout"})
# Per-node mode's Relay (per-node/relay-deployment.yaml), and Hubble UI as Cilium installs it.
HUSHFLOW_RELAY = _pod("hushflow", 40002, **{"app.kubernetes.io/name": "hushflow-relay"})
HUBBLE_UI = _pod("kube-system", 41004, **{"k8s-app": "hubble-ui"})
KUBE_APISERVER = {"identity": 7, "labels": ["reserved:kube-apiserver"]}
HOST = {"identity": 1, "labels": ["reserved:host"]}
REMOTE_NODE = {"identity": 6, "labels": ["reserved:remote-node"]}
WORLD = {"identity": 2, "labels": ["reserved:world"]}


def _flow(direction: str, peer: dict[str, Any], peer_ip: str, protocol: str, port: int) -> dict[str, Any]:
    local_ip = "10.0.1.20"
    if direction == "EGRESS":
        source, destination, ips = HUSHFLOW_POD, peer, {"source": local_ip, "destination": peer_ip}
    else:
        source, destination, ips = peer, HUSHFLOW_POD, {"source": peer_ip, "destination": local_ip}
    return {"verdict": "FORWARDED", "traffic_direction": direction, "IP": ips, "source": source,
            "destination": destination, "l4": {protocol: {"source_port": 40000, "destination_port": port}}}


BOTH = {"relay": True, "per-node": True}
RELAY_ONLY = {"relay": True, "per-node": False}
PER_NODE_ONLY = {"relay": False, "per-node": True}
NEITHER = {"relay": False, "per-node": False}

# (what, direction, peer, peer IP, protocol, port, allowed in which mode)
CONNECTIONS = [
    ("Prometheus scrapes the metrics port", "INGRESS", PROMETHEUS, "10.0.2.5", "TCP", METRICS_PORT, BOTH),
    ("the kubelet probes the metrics port", "INGRESS", HOST, "10.0.1.1", "TCP", METRICS_PORT, BOTH),
    ("Prometheus on another port", "INGRESS", PROMETHEUS, "10.0.2.5", "TCP", 8080, NEITHER),
    ("a workload scrapes the metrics port", "INGRESS", A_WORKLOAD, "10.0.3.7", "TCP", METRICS_PORT, NEITHER),
    ("another node reaches the metrics port", "INGRESS", REMOTE_NODE, "10.0.9.1", "TCP", METRICS_PORT, NEITHER),
    ("the internet reaches the metrics port", "INGRESS", WORLD, "203.0.113.9", "TCP", METRICS_PORT, NEITHER),
    ("per-node: hushflow-relay reaches the served Observer and Peer API", "INGRESS", HUSHFLOW_RELAY, "10.0.2.9",
     "TCP", 4244, PER_NODE_ONLY),
    ("per-node: hushflow-relay on another port", "INGRESS", HUSHFLOW_RELAY, "10.0.2.9", "TCP", 4245, NEITHER),
    ("per-node: a workload reaches the served API", "INGRESS", A_WORKLOAD, "10.0.3.7", "TCP", 4244, NEITHER),
    ("relay: Hubble UI reaches the served Observer", "INGRESS", HUBBLE_UI, "10.0.0.32", "TCP", 4245, RELAY_ONLY),
    ("relay: a workload reaches the served Observer", "INGRESS", A_WORKLOAD, "10.0.3.7", "TCP", 4245, NEITHER),
    ("Cilium's Hubble Relay reaches hushflow", "INGRESS", HUBBLE_RELAY, "10.0.0.30", "TCP", 4244, NEITHER),
    ("the API server on 443", "EGRESS", KUBE_APISERVER, "10.0.0.1", "TCP", 443, BOTH),
    ("the API server on 6443", "EGRESS", KUBE_APISERVER, "192.0.2.10", "TCP", 6443, BOTH),
    ("the API server on another port", "EGRESS", KUBE_APISERVER, "192.0.2.10", "TCP", 10250, NEITHER),
    ("kube-dns over UDP", "EGRESS", KUBE_DNS, "10.0.0.10", "UDP", 53, BOTH),
    ("kube-dns over TCP", "EGRESS", KUBE_DNS, "10.0.0.10", "TCP", 53, BOTH),
    ("kube-dns on another port", "EGRESS", KUBE_DNS, "10.0.0.10", "TCP", 9153, NEITHER),
    ("Hubble Relay", "EGRESS", HUBBLE_RELAY, "10.0.0.30", "TCP", 4245, RELAY_ONLY),
    ("another kube-system pod on Relay's port", "EGRESS", OTHER_KUBE_SYSTEM, "10.0.0.31", "TCP", 4245, NEITHER),
    ("a resolver on the internet", "EGRESS", WORLD, "198.51.100.53", "UDP", 53, NEITHER),
    ("a webhook on the internet", "EGRESS", WORLD, "203.0.113.80", "TCP", 443, NEITHER),
    ("the cloud metadata service", "EGRESS", WORLD, "169.254.169.254", "TCP", 80, NEITHER),
    ("the node's kubelet", "EGRESS", HOST, "10.0.1.1", "TCP", 10250, NEITHER),
    ("a workload", "EGRESS", A_WORKLOAD, "10.0.3.7", "TCP", 8080, NEITHER),
]


@pytest.fixture(scope="module")
def engines() -> dict[str, PolicyEngine]:
    found = {}
    for mode_name in MODES:
        loaded = load_policies([str(path) for path in POLICY_FILES[mode_name]])
        assert [d for d in loaded.diagnostics if d.level == Severity.ERROR] == []
        found[mode_name] = PolicyEngine(loaded.policy_set)
    return found


@pytest.mark.parametrize("mode_name", MODES)
@pytest.mark.parametrize(("direction", "peer", "peer_ip", "protocol", "port", "allowed"),
                         [case[1:] for case in CONNECTIONS], ids=[case[0] for case in CONNECTIONS])
def test_only_what_hushflow_needs_gets_through(
    engines: dict[str, PolicyEngine], mode_name: str, direction: str, peer: dict[str, Any], peer_ip: str,
    protocol: str, port: int, allowed: dict[str, bool],
) -> None:
    conn = connection_of(_flow(direction, peer, peer_ip, protocol, port))
    assert conn is not None
    decision = engines[mode_name].decide(conn, tuple(HUSHFLOW_POD["labels"]))
    # Not allowed must mean dropped by default-deny, never "not enforced".
    assert decision.outcome == ("allowed" if allowed[mode_name] else "default-deny")


def test_both_directions_are_default_deny() -> None:
    for mode_name in MODES:
        (common,) = [p for p in _policies(mode_name) if p["metadata"]["name"] == "hushflow"]
        assert common["spec"]["enableDefaultDeny"] == {"ingress": True, "egress": True}
        assert not any(key in common["spec"] for key in ("ingressDeny", "egressDeny"))


def test_the_assumptions_are_written_down() -> None:
    text = (KUBERNETES_DIR / "common" / "network-policy.yaml").read_text()
    for said in (f"namespace \"{MONITORING_NAMESPACE}\"", "--nameserver", "--events", "toFQDNs", "allow-localhost"):
        assert said in text, said


def test_the_shipped_policies_are_only_cilium_network_policies() -> None:
    # No CiliumClusterwideNetworkPolicy: hushflow's own policy must not select pods elsewhere.
    for mode_name in MODES:
        assert {item["kind"] for item in mode(mode_name) if item["apiVersion"].startswith("cilium.io/")} == {
            "CiliumNetworkPolicy"}
