"""The two deployments that serve the enriched flows (docs/serve.md, "Two deployments: which to
pick"), wired as documented: the ports agree between hushflow's --serve, the container ports, the
Services and Relay's config; per-node mode's Peer selector picks exactly the DaemonSet's pods; the
Relay config is what Cilium's Relay reads; and the pod watch of the Peer service asks the API
server only for what the ClusterRole grants."""

from __future__ import annotations

import threading
import time
from typing import Any

import yaml
from kubernetes.client import ApiClient, Configuration

from hushflow.app.peer import parse_selector, peer_service
from hushflow.app.serve import parse_serve_address
from hushflow.cli.run import run
from tests.deploy.manifests import mode, named, one, workload
from tests.deploy.test_rbac import _allows, checks_of
from tests.doubles.fake_apiserver import FakeApiServer

RELAY_IMAGE = "quay.io/cilium/hubble-relay:"


def _params(container: dict[str, Any]) -> dict[str, Any]:
    assert container["command"] == ["hushflow"] and container["args"][0] == "run"
    params: dict[str, Any] = run.make_context("hushflow run", list(container["args"][1:])).params
    return params


def _port(container: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


def _serve_port(params: dict[str, Any]) -> int:
    return int(parse_serve_address(params["serve"]).rpartition(":")[2])


def _relay_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(named(objects, "ConfigMap", "hushflow-relay-config")["data"]["config.yaml"])
    return config


# -- (a) relay mode: hushflow in front of Cilium's Relay ---------------------------------------

def test_relay_mode_serves_on_relays_port_behind_a_port_80_service():
    objects = mode("relay")
    (container,) = workload("relay")["spec"]["template"]["spec"]["containers"]
    params = _params(container)
    assert _serve_port(params) == _port(container, "grpc") == 4245
    assert not params["serve_peers_selector"] and not params["serve_peers"]  # it is the one instance
    service = named(objects, "Service", "hushflow-observer")
    assert service["spec"]["ports"] == [{"name": "grpc", "port": 80, "targetPort": "grpc", "protocol": "TCP"}]
    assert service["spec"]["selector"].items() <= workload("relay")["spec"]["template"]["metadata"]["labels"].items()


# -- (b) per node: Cilium's Relay over the hushflow instances ----------------------------------

def test_per_node_instances_serve_observer_and_peer_on_hubbles_port():
    objects = mode("per-node")
    daemonset = workload("per-node")
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    params = _params(container)
    assert _serve_port(params) == _port(container, "hubble-grpc") == 4244
    # The selector picks the DaemonSet's pods (and not Relay's), in the DaemonSet's namespace.
    selector = dict(parse_selector(params["serve_peers_selector"]))
    pod_labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    relay_labels = named(objects, "Deployment", "hushflow-relay")["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= relay_labels.items()
    (namespace,) = [e for e in container["env"] if e["name"] == "HUSHFLOW_NAMESPACE"]
    assert namespace["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    peer = named(objects, "Service", "hushflow-peer")
    assert peer["spec"]["selector"].items() <= pod_labels.items()
    assert peer["spec"]["ports"] == [{"name": "peer-service", "port": 80, "targetPort": "hubble-grpc",
                                      "protocol": "TCP"}]


def test_per_node_relay_is_ciliums_relay_reading_hushflows_peer_service():
    objects = mode("per-node")
    relay = named(objects, "Deployment", "hushflow-relay")
    pod = relay["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].startswith(RELAY_IMAGE)
    assert (container["command"], container["args"]) == (["hubble-relay"], ["serve"])
    config = _relay_config(objects)
    assert set(config) == {"cluster-name", "peer-service", "listen-address", "disable-client-tls",
                           "disable-server-tls"}
    # peer-service: the hushflow-peer Service by its cluster DNS name and port.
    peer = named(objects, "Service", "hushflow-peer")
    host, _, port = config["peer-service"].rpartition(":")
    assert host == f"{peer['metadata']['name']}.{peer['metadata']['namespace']}.svc.cluster.local."
    assert int(port) == peer["spec"]["ports"][0]["port"]
    # hushflow serves in clear here (no --serve-tls-*): Relay must dial without TLS.
    (hushflow,) = workload("per-node")["spec"]["template"]["spec"]["containers"]
    assert not _params(hushflow)["serve_tls_cert_file"] and config["disable-client-tls"] is True
    # Relay listens where its port, probes and Service say.
    assert int(config["listen-address"].rpartition(":")[2]) == _port(container, "grpc") == 4245
    assert container["readinessProbe"]["tcpSocket"] == {"port": "grpc"}
    assert container["livenessProbe"]["tcpSocket"] == {"port": "grpc"}
    service = named(objects, "Service", "hushflow-relay")
    assert service["spec"]["ports"] == [{"name": "grpc", "port": 80, "targetPort": "grpc", "protocol": "TCP"}]
    assert service["spec"]["selector"].items() <= relay["spec"]["template"]["metadata"]["labels"].items()
    # Where Relay reads its config.
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["config"] == {"name": "config", "mountPath": "/etc/hubble-relay", "readOnly": True}
    assert volumes["config"]["configMap"] == {"name": "hushflow-relay-config",
                                              "items": [{"key": "config.yaml", "path": "config.yaml"}]}
    assert pod["automountServiceAccountToken"] is False


def test_the_peer_watch_asks_only_for_what_the_role_grants():
    role = one(mode("per-node"), "ClusterRole")
    (container,) = workload("per-node")["spec"]["template"]["spec"]["containers"]
    params = _params(container)
    with FakeApiServer() as server:
        server.put_pod({"metadata": {"name": "hushflow-a", "namespace": "hushflow",
                                     "labels": {"app.kubernetes.io/name": "hushflow"}},
                        "spec": {"nodeName": "node-a"}, "status": {"phase": "Running", "podIP": "10.0.1.7"}})
        service = peer_service(serve=params["serve"], selector=params["serve_peers_selector"], namespace="hushflow",
                               api=ApiClient(Configuration(host=server.url)))
        service.start()
        try:
            deadline = time.monotonic() + 20
            while not service.peers.peers() or not any(r.param("watch") == "true" for r in server.requests):
                assert time.monotonic() < deadline, "the peer watch did not list and watch"
                time.sleep(0.01)
        finally:
            service.stop()
            deadline = time.monotonic() + 20
            while any(t.name == "hushflow-peer-watch" and t.is_alive() for t in threading.enumerate()):
                assert time.monotonic() < deadline, "the peer watch did not end"
                server.end_pod_watches()  # again and again: a watch may open after the first call
                time.sleep(0.01)
        checks = checks_of(list(server.requests))
    assert checks and [check for check in checks if not _allows(role, check)] == []
