"""Hubble's Peer service (`peer.Peer/Notify`) of the per-node deployment, with real grpcio servers
and clients on loopback and the Kubernetes API server double for the DaemonSet's pods.

Waiting below is for a condition (with a generous cap), never an assertion on time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from kubernetes.client import ApiClient, Configuration

from hushflow.app.peer import (
    PEER_SERVICE,
    Peer,
    PeerError,
    PeerService,
    PeerSet,
    parse_selector,
    parse_static_peer,
    peer_name,
    peer_service,
    tls_server_name,
)
from hushflow.app.serve import EventRing, ObserverServer, serve_observer
from hushflow.proto import observer_pb2, observer_pb2_grpc, peer_pb2, peer_pb2_grpc
from tests.doubles.fake_apiserver import FakeApiServer

SELECTOR = "app.kubernetes.io/name=hushflow"
ADDED, DELETED, UPDATED = peer_pb2.PEER_ADDED, peer_pb2.PEER_DELETED, peer_pb2.PEER_UPDATED


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for: {what}")
        time.sleep(0.01)


def hushflow_pod(name: str, node: str | None, ip: str | None, *, phase: str = "Running", namespace: str = "hushflow",
                 labels: dict[str, Any] | None = None, created: str = "2026-12-01T10:00:00Z",
                 **metadata: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "creationTimestamp": created,
                         "labels": {"app.kubernetes.io/name": "hushflow"} if labels is None else labels, **metadata},
            "spec": {"containers": [{"name": "hushflow"}], **({"nodeName": node} if node is not None else {})},
            "status": {"phase": phase, **({"podIP": ip} if ip is not None else {})}}


class Notifications:
    """A Notify stream read in a thread: the notifications as (type, name, address)."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.call = peer_pb2_grpc.PeerStub(self.channel).Notify(peer_pb2.NotifyRequest())
        self.got: list[tuple[int, str, str]] = []
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for note in self.call:
                self.got.append((note.type, note.name, note.address))
        except grpc.RpcError as exc:
            self.error = exc

    def wait_for(self, count: int) -> list[tuple[int, str, str]]:
        until(lambda: len(self.got) >= count, f"{count} notifications (got {self.got})")
        return self.got[:count]

    def close(self) -> None:
        self.call.cancel()
        self.channel.close()


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    with FakeApiServer() as fake:
        yield fake


@pytest.fixture
def served_peers() -> Iterator[Callable[[PeerService], ObserverServer]]:
    started: list[tuple[ObserverServer, PeerService]] = []

    def serve(service: PeerService) -> ObserverServer:
        server = serve_observer(EventRing(4), "127.0.0.1:0", node_name="node-a",
                                services=((PEER_SERVICE, service.handler()),))
        service.start()
        started.append((server, service))
        return server

    yield serve
    for server, service in started:
        service.stop()
        server.stop(0)


def stop_watch(apiserver: FakeApiServer, service: PeerService) -> None:
    service.stop()
    assert service.watch is not None

    def ended() -> bool:
        apiserver.end_pod_watches()  # again and again: a watch may open after the first call
        return not any(t.name == "hushflow-peer-watch" and t.is_alive() for t in threading.enumerate())

    until(ended, "the peer watch to end")


# -- the wire contract and Cilium's names -------------------------------------------------------


def test_the_wire_format_is_ciliums():
    """api/v1/peer/peer.proto: name 1, address 2, type 3 (PEER_ADDED 1), tls 4 { server_name 1 }."""
    note = peer_pb2.ChangeNotification(name="n", address="a", type=peer_pb2.PEER_ADDED)
    note.tls.server_name = "s"
    assert note.SerializeToString() == b"\x0a\x01n\x12\x01a\x18\x01\x22\x03\x0a\x01s"
    assert [peer_pb2.UNKNOWN, ADDED, DELETED, UPDATED] == [0, 1, 2, 3]
    method = peer_pb2.DESCRIPTOR.services_by_name["Peer"].methods_by_name["Notify"]
    assert (method.full_name, method.server_streaming, method.client_streaming) == ("peer.Peer.Notify", True, False)
    assert (method.input_type.full_name, method.output_type.full_name) == ("peer.NotifyRequest",
                                                                           "peer.ChangeNotification")


@pytest.mark.parametrize(("node", "cluster", "name", "server_name"), [
    ("kind-worker", "default", "kind-worker", "kind-worker.default.hubble-grpc.cilium.io"),
    ("moseisley", "tatooine", "tatooine/moseisley", "moseisley.tatooine.hubble-grpc.cilium.io"),
    ("ip-10-0-0-7.ec2.internal", "eu.prod", "eu.prod/ip-10-0-0-7.ec2.internal",
     "ip-10-0-0-7-ec2-internal.eu-prod.hubble-grpc.cilium.io"),
])
def test_peers_are_named_as_cilium_names_nodes(node, cluster, name, server_name):
    assert peer_name(node, cluster) == name
    assert tls_server_name(node, cluster) == server_name


@pytest.mark.parametrize(("text", "peer"), [
    ("node-1=10.0.0.7:4244", Peer("node-1", "10.0.0.7:4244")),
    ("node-1=10.0.0.7", Peer("node-1", "10.0.0.7")),  # Relay dials a bare IP on 4244
    ("prod/node-2=[fd00::7]:4245", Peer("prod/node-2", "[fd00::7]:4245")),
    ("node-3=hushflow-0.hushflow-peer:4244", Peer("node-3", "hushflow-0.hushflow-peer:4244")),
    ("dev=unix:///run/hushflow.sock", Peer("dev", "unix:///run/hushflow.sock")),
])
def test_static_peers(text, peer):
    assert parse_static_peer(text) == peer


@pytest.mark.parametrize("text", ["node-1", "=10.0.0.7:4244", "node-1=", "node 1=10.0.0.7:1",
                                  "node-1=10.0.0.7:0", "node-1=10.0.0.7:65536", "node-1=host", "node-1=unix://",
                                  "node-1=:4244", "node-1=a b:4244"])
def test_static_peers_that_are_refused(text):
    with pytest.raises(PeerError, match="--serve-peer"):
        parse_static_peer(text)


def test_label_selectors():
    assert parse_selector("app.kubernetes.io/name=hushflow, component==node-reader") == (
        ("app.kubernetes.io/name", "hushflow"), ("component", "node-reader"))
    for bad in ("app", "app!=x", "app in (a,b)", "=x", "app=a b", "-app=x", "app=x,", "Bad_Prefix/app=x"):
        with pytest.raises(PeerError, match="--serve-peers-selector"):
            parse_selector(bad)


# -- Notify -------------------------------------------------------------------------------------


def test_notify_sends_the_current_peers_then_each_change(served_peers):
    service = peer_service(serve="127.0.0.1:0", static=("node-b=10.0.0.8:4244", "node-a=10.0.0.7:4244"))
    server = served_peers(service)
    stream = Notifications(f"127.0.0.1:{server.port}")
    try:
        assert stream.wait_for(2) == [(ADDED, "node-a", "10.0.0.7:4244"), (ADDED, "node-b", "10.0.0.8:4244")]
        service.peers.replace([Peer("node-b", "10.0.0.9:4244"), Peer("node-c", "10.0.0.10:4244")])
        # Deletions first, then by name (Relay keys its peers by name: the order within one change is free).
        assert stream.wait_for(5)[2:] == [(DELETED, "node-a", "10.0.0.7:4244"), (UPDATED, "node-b", "10.0.0.9:4244"),
                                          (ADDED, "node-c", "10.0.0.10:4244")]
        later = Notifications(f"127.0.0.1:{server.port}")  # a second Relay: the list as it is now
        try:
            assert later.wait_for(2) == [(ADDED, "node-b", "10.0.0.9:4244"), (ADDED, "node-c", "10.0.0.10:4244")]
        finally:
            later.close()
        assert stream.error is None and service.streams == 2
    finally:
        stream.close()


def test_the_peer_service_is_listed_by_reflection_beside_the_observer(served_peers):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    server = served_peers(peer_service(serve="127.0.0.1:0", static=("node-a=10.0.0.7",)))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {service.name for service in next(answers).list_services_response.service}
    assert {"peer.Peer", "observer.Observer"} <= names


class _Aborted(Exception):
    pass


class _Context:
    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def is_active(self) -> bool:
        return True

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise _Aborted


def test_a_stream_too_far_behind_ends_unavailable_and_relay_starts_again():
    """Cilium ends a Notify whose send buffer fills (ErrStreamSendBlocked); Relay calls again."""
    peers = PeerSet(backlog=2)
    peers.replace([Peer("node-a", "10.0.0.7")])
    service = PeerService(peers)
    context = _Context()
    stream = service.notify(peer_pb2.NotifyRequest(), context)  # type: ignore[arg-type]
    assert next(stream).name == "node-a"
    for number in range(3):  # three changes before the reader reads again: one left the log
        peers.replace([Peer("node-a", f"10.0.0.{10 + number}")])
    with pytest.raises(_Aborted):
        next(stream)
    assert context.aborted is not None and context.aborted[0] == grpc.StatusCode.UNAVAILABLE
    assert service.too_slow == 1
    again = service.notify(peer_pb2.NotifyRequest(), _Context())  # type: ignore[arg-type]
    assert next(again).address == "10.0.0.12"


# -- the DaemonSet's pods as peers --------------------------------------------------------------


def pod_peers(apiserver: FakeApiServer, reports: list[str] | None = None, **kwargs: Any) -> PeerService:
    return peer_service(serve="[::]:4244", selector=SELECTOR, namespace="hushflow",
                        api=ApiClient(Configuration(host=apiserver.url)),
                        report=(reports if reports is not None else []).append, **kwargs)


def test_the_daemonsets_pods_are_the_peers_and_follow_the_pods(apiserver, served_peers):
    apiserver.put_pod(hushflow_pod("hushflow-b", "node-b", "10.0.1.8"))
    apiserver.put_pod(hushflow_pod("hushflow-a", "node-a", "10.0.1.7"))
    # The API server filters by the selectors; hushflow checks again what it is given.
    apiserver.put_pod(hushflow_pod("other", "node-a", "10.0.1.9", labels={"app": "other"}))
    apiserver.put_pod(hushflow_pod("hushflow-x", "node-a", "10.0.1.10", namespace="elsewhere"))
    service = pod_peers(apiserver)
    server = served_peers(service)
    stream = Notifications(f"127.0.0.1:{server.port}")
    try:
        assert stream.wait_for(2) == [(ADDED, "node-a", "10.0.1.7:4244"), (ADDED, "node-b", "10.0.1.8:4244")]
        apiserver.put_pod(hushflow_pod("hushflow-c", "node-c", None, phase="Pending"))  # no IP yet: no peer
        apiserver.put_pod(hushflow_pod("hushflow-c", "node-c", "fd00::c"))
        assert stream.wait_for(3)[2] == (ADDED, "node-c", "[fd00::c]:4244")
        apiserver.delete_pod("hushflow", "hushflow-a")
        assert stream.wait_for(4)[3] == (DELETED, "node-a", "10.0.1.7:4244")
        # A rolling update: the new pod of node-b starts before the old one is gone.
        apiserver.put_pod(hushflow_pod("hushflow-b2", "node-b", "10.0.1.20", created="2026-12-01T11:00:00Z"))
        assert stream.wait_for(5)[4] == (UPDATED, "node-b", "10.0.1.20:4244")
        apiserver.put_pod(hushflow_pod("hushflow-b", "node-b", "10.0.1.8", deletionTimestamp="2026-12-01T11:00:05Z"))
        apiserver.put_pod(hushflow_pod("hushflow-c", "node-c", "fd00::c", deletionTimestamp="2026-12-01T11:00:06Z"))
        assert stream.wait_for(6)[5] == (DELETED, "node-c", "[fd00::c]:4244")  # terminating: gone at once
        assert service.peers.peers() == [Peer("node-b", "10.0.1.20:4244")]
        lists = [r for r in apiserver.requests if r.path == "/api/v1/pods"]
        assert lists and all(r.param("labelSelector") == SELECTOR
                             and r.param("fieldSelector") == "metadata.namespace=hushflow" for r in lists)
        assert stream.error is None
    finally:
        stream.close()
        stop_watch(apiserver, service)


def test_hostile_pods_are_counted_and_skipped(apiserver, served_peers):
    reports: list[str] = []
    apiserver.put_pod(hushflow_pod("hushflow-a", "node-a", "10.0.1.7"))
    apiserver.put_pod(hushflow_pod("hushflow-bad-node", 42, "10.0.1.8"))  # type: ignore[arg-type]
    apiserver.put_pod(hushflow_pod("hushflow-evil-node", "node-b\n--evil", "10.0.1.9"))
    apiserver.put_pod(hushflow_pod("hushflow-bad-labels", "node-c", "10.0.1.10", labels={"a": 1}))  # type: ignore[dict-item]
    apiserver.put_pod(hushflow_pod("hushflow-bad-ip", "node-d", "not-an-ip"))
    service = pod_peers(apiserver, reports, cluster="prod")
    server = served_peers(service)
    stream = Notifications(f"127.0.0.1:{server.port}")
    try:
        assert stream.wait_for(1) == [(ADDED, "prod/node-a", "10.0.1.7:4244")]
        apiserver.push_pod_watch_line(b"{not json")
        apiserver.push_pod_watch_line(b'{"type": "ADDED", "object": ["a pod?"]}')
        # A good pod that turns bad leaves: its old address would be stale.
        apiserver.put_pod(hushflow_pod("hushflow-a", ["node-a"], "10.0.1.7"))  # type: ignore[arg-type]
        assert stream.wait_for(2)[1] == (DELETED, "prod/node-a", "10.0.1.7:4244")
        apiserver.put_pod(hushflow_pod("hushflow-e", "node-e", "10.0.1.11"))
        assert stream.wait_for(3)[2] == (ADDED, "prod/node-e", "10.0.1.11:4244")
        assert service.watch is not None
        assert service.watch.stats.bad_objects >= 6
        assert any("spec.nodeName 42 " in line for line in reports)
        assert any("node-b\\n--evil" in line for line in reports)
        assert all(line.startswith("peer watch: ") for line in reports)
        assert stream.error is None
    finally:
        stream.close()
        stop_watch(apiserver, service)


def test_options_that_cannot_serve_peers_are_refused():
    with pytest.raises(PeerError, match="not both"):
        peer_service(serve="[::]:4244", static=("a=10.0.0.1",), selector=SELECTOR)
    with pytest.raises(PeerError, match="TCP port"):
        peer_service(serve="unix:///run/hushflow.sock", selector=SELECTOR, api=object())
    with pytest.raises(PeerError, match="namespace"):
        peer_service(serve="[::]:4244", selector=SELECTOR, namespace="Bad_NS", api=object())
    with pytest.raises(PeerError, match="given twice"):
        peer_service(serve="[::]:4244", static=("a=10.0.0.1", "a=10.0.0.2"))


# -- a Relay over two hushflow instances --------------------------------------------------------


def flow_event(second: int, node: str, pod: str) -> dict[str, Any]:
    time_text = f"2026-12-01T10:00:{second:02d}Z"
    return {"flow": {"time": time_text, "node_name": node, "verdict": "DROPPED",
                     "source": {"namespace": "shop", "pod_name": pod},
                     "destination": {"namespace": "db", "pod_name": "postgres-0"},
                     "policy_log": ["app-explicit-traffic-blocked"]},
            "node_name": node, "time": time_text}


def relay_address(note: peer_pb2.ChangeNotification) -> str:
    """Relay's reading of `address` (pkg/hubble/peer/types FromChangeNotification): host:port as
    given, a bare IP on Hubble's port 4244."""
    address = note.address
    host, sep, port = address.rpartition(":")
    return address if sep and port.isdigit() and not address.endswith("]") and host else f"{address}:4244"


def test_a_relay_shaped_client_aggregates_two_hushflow_instances(served_peers):
    """A client written from Hubble Relay's source, not Relay: pool/manager.go watchNotifications
    (Notify on the peer service; PEER_ADDED puts the peer by name, PEER_DELETED drops it), connect
    (one gRPC connection per peer's address), then observer.go/server.go GetFlows (the same request
    to every connected peer, the answers merged by time as the sort buffer orders them)."""
    nodes: list[ObserverServer] = []
    try:
        for node, seconds in (("node-a", (1, 3, 5)), ("node-b", (2, 4, 6))):
            ring = EventRing(8)
            for second in seconds:
                ring.append(flow_event(second, node, f"api-{node[-1]}-{second}"))
            nodes.append(serve_observer(ring, "127.0.0.1:0", node_name=node, announce_nodes=False))
        service = peer_service(serve="127.0.0.1:0", static=tuple(
            f"{node.service.node_name}=127.0.0.1:{node.port}" for node in nodes))
        peer_server = served_peers(service)  # the peer service as one instance of the DaemonSet serves it

        peers: dict[str, str] = {}
        with grpc.insecure_channel(f"127.0.0.1:{peer_server.port}") as channel:
            call = peer_pb2_grpc.PeerStub(channel).Notify(peer_pb2.NotifyRequest())
            for note in call:
                if note.type in (ADDED, UPDATED):
                    peers[note.name] = relay_address(note)
                elif note.type == DELETED:
                    peers.pop(note.name, None)
                if len(peers) == 2:
                    break
            call.cancel()

        merged: list[observer_pb2.GetFlowsResponse] = []
        request = observer_pb2.GetFlowsRequest(number=10)
        for _name, address in sorted(peers.items()):
            with grpc.insecure_channel(address) as channel:
                merged += [r for r in observer_pb2_grpc.ObserverStub(channel).GetFlows(request, timeout=20)
                           if r.HasField("flow")]
        merged.sort(key=lambda r: (r.time.seconds, r.time.nanos))
        assert sorted(peers) == ["node-a", "node-b"]
        assert [(r.node_name, r.time.seconds % 60) for r in merged] == [
            ("node-a", 1), ("node-b", 2), ("node-a", 3), ("node-b", 4), ("node-a", 5), ("node-b", 6)]
        assert all(list(r.flow.policy_log) == ["app-explicit-traffic-blocked"] for r in merged)
    finally:
        for node in nodes:
            node.stop(0)


# -- hushflow run --serve ... --serve-peer / --serve-peers-selector -----------------------------


def hushflow_run(*args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from hushflow.app.example import example_dir
    from hushflow.cli.run import run

    example = example_dir()
    assert example is not None
    result = CliRunner().invoke(run, ["--policies", str(example / "policies"), "--input-file",
                                      str(example / "flows.jsonl"), "--no-resolve", "--clock", "flows",
                                      "--metrics-address", "127.0.0.1:0", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--serve-peer", "node-a=10.0.0.7"], "--serve-peers-selector and --serve-peer need --serve ADDRESS"),
    (["--serve", "127.0.0.1:0", "--serve-peer", "node-a"], "--serve-peer 'node-a': give NAME=ADDRESS"),
    (["--serve", "unix:///tmp/hushflow-peer-test.sock", "--serve-peers-selector", SELECTOR],
     "--serve-peers-selector needs --serve on a TCP port"),
    (["--serve", "127.0.0.1:0", "--serve-peers-selector", "app in (a)"], "--serve-peers-selector 'app in (a)'"),
    (["--serve", "127.0.0.1:0", "--serve-peers-selector", SELECTOR, "--serve-peer", "a=10.0.0.1"], "give either"),
], ids=["without-serve", "not-name-address", "unix-socket", "set-based-selector", "both"])
def test_a_peer_option_mistake_is_one_error_line_and_exit_2(args, message):
    code, output = hushflow_run(*args)
    assert code == 2, output
    assert output.startswith("error: " + message), output
    assert len(output.splitlines()) == 1 and "Traceback" not in output, output


def test_run_serves_the_peer_service_beside_the_observer():
    code, output = hushflow_run("--serve", "127.0.0.1:0", "--serve-peer", "node-a=10.0.0.7:4244")
    assert code == 0, output
    assert "serving Hubble's Peer service beside it: 1 fixed peer(s)\n" in output


def test_run_s_observer_serves_notify_and_answers_as_a_node_s_hubble():
    """What run wires: the Peer service on the Observer's port, and GetFlows without the
    node_status Relay itself sends first (Relay adds its own; a node's Hubble sends none)."""
    from hushflow.app.daemon import Daemon, RunOptions
    from hushflow.app.example import example_dir
    from hushflow.app.observer_api import start_observer_api
    from hushflow.app.serve_tls import ServeTLSOptions

    example = example_dir()
    assert example is not None
    options = RunOptions(policies=(str(example / "policies"),), input_files=(str(example / "flows.jsonl"),),
                         resolve=False, clock="flows", serve="127.0.0.1:0", instance="node-a",
                         serve_peers=("node-a=10.0.0.7:4244",))
    daemon = Daemon(options)
    peers = peer_service(serve="127.0.0.1:0", static=options.serve_peers)
    served = start_observer_api(daemon, options, ServeTLSOptions(), peers, say=lambda _line: None)
    assert served is not None and daemon.ring is not None
    observer = served.observer
    daemon.ring.append(flow_event(1, "node-a", "api-0"))
    try:
        stream = Notifications(f"127.0.0.1:{observer.port}")
        try:
            assert stream.wait_for(1) == [(ADDED, "node-a", "10.0.0.7:4244")]
        finally:
            stream.close()
        with grpc.insecure_channel(f"127.0.0.1:{observer.port}") as channel:
            answers = list(observer_pb2_grpc.ObserverStub(channel).GetFlows(
                observer_pb2.GetFlowsRequest(number=5), timeout=20))
        assert [a.WhichOneof("response_types") for a in answers] == ["flow"]
    finally:
        served.stop()


def test_with_tls_each_peer_names_the_server_name_relay_must_verify(apiserver):
    """Under --serve-tls-*, Relay must dial each instance with TLS and check the name Cilium's
    agents use (`<node>.<cluster>.hubble-grpc.cilium.io`); no `tls` would make it dial in clear."""
    service = peer_service(serve="127.0.0.1:0", static=("node-a=10.0.0.7:4244", "mesh-2/node.b=10.0.0.8:4244"),
                           cluster="prod", tls=True)
    stream = service.notify(peer_pb2.NotifyRequest(), _Context())  # type: ignore[arg-type]
    notes = sorted((note.name, note.tls.server_name) for note in (next(stream), next(stream)))
    assert notes == [("mesh-2/node.b", "node-b.mesh-2.hubble-grpc.cilium.io"),
                     ("node-a", "node-a.prod.hubble-grpc.cilium.io")]
    plain = peer_service(serve="127.0.0.1:0", static=("node-a=10.0.0.7:4244",))
    assert not next(plain.notify(peer_pb2.NotifyRequest(), _Context())).HasField("tls")  # type: ignore[arg-type]
    watch = pod_peers(apiserver, tls=True).watch
    assert watch is not None and watch.peer_pods.tls is True
