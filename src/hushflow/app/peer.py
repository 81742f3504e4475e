"""Hubble's Peer service (`peer.Peer/Notify`), so that Cilium's own Hubble Relay aggregates the
hushflow instances of the per-node deployment (issue 14, deployment (b)).

How Relay finds and dials Hubble servers, as this module relies on it (cilium/cilium):

- Relay opens one `Notify` stream on its `peer-service` address (the `peer-service` key of
  /etc/hubble-relay/config.yaml, flag `--peer-service`; Helm writes
  `hubble-peer.kube-system.svc.cluster.local.:443`, or `:80` without TLS) and re-opens it after
  `retry-timeout` when it breaks (pkg/hubble/relay/pool/manager.go, watchNotifications).
- The agent's side answers with every node it knows as PEER_ADDED, then each change
  (api/v1/peer/peer.proto, the Notify comment; pkg/hubble/peer/service.go, Notify subscribes a
  handler to the node manager, which replays the current nodes first). A node whose address
  changed is PEER_UPDATED; one whose name changed is PEER_DELETED then PEER_ADDED
  (pkg/hubble/peer/handler.go, NodeUpdate).
- `name` is the node's Fullname: the node name, or `<cluster>/<node>` when the cluster name
  is not "default" (pkg/node/types/node.go, Fullname). `tls.server_name`, when TLS is on, is
  `<node>.<cluster>.hubble-grpc.cilium.io` with dots in both replaced by `-` (handler.go,
  TLSServerName); no `tls` means the peer serves in clear.
- `address` is what Relay dials: the agent sends the node IP alone and Relay adds Hubble's
  port 4244; `host:port` is dialled as given (pkg/hubble/peer/types/peer.go,
  FromChangeNotification). Relay keys its peers by name: ADDED puts, DELETED drops and
  disconnects, UPDATED replaces and reconnects (pool/manager.go add/remove/update).
- Microsoft Retina (pkg/hubble/internal/peersvc.go, handler.go) serves the same Notify from its
  own agent DaemonSet, and its chart points Relay's `peer-service` at a `hubble-peer` Service
  selecting the agent pods, with `internalTrafficPolicy: Local` and `disable-client-tls: true`
  without TLS (deploy/hubble/.../hubble-relay/configmap.yaml, hubble/peer-service.yaml).

hushflow's peers are the hushflow pods of the DaemonSet, not the nodes: every instance lists and
watches them (`--serve-peers-selector`, `--serve-peers-namespace`) through the pod watch of
`hushflow.app.pod_watch` (resume, 410 → list again, backoff, hostile objects counted), so any
instance can answer Relay. A pod is a peer while it is Running, scheduled (`spec.nodeName`),
has a pod IP and is not being deleted; the peer is named after its node as Cilium names nodes
(`--cluster-name`), at `<pod IP>:<the --serve port>`. When two pods share a node (a rolling
update), the newest one is the peer. `--serve-peer NAME=ADDRESS` gives a fixed list instead
(tests, development). Every pod object is hostile: one of the wrong shape, or with a node name
that is not a DNS subdomain, is counted (`PeerWatch.stats.bad_objects`), reported and skipped.

A Notify stream that falls more than `MAX_BACKLOG` changes behind ends with UNAVAILABLE (Cilium's
service ends a stream whose buffer fills, ErrStreamSendBlocked); Relay re-opens it and gets the
full list again.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from hushflow.app.pod_watch import PodWatch
from hushflow.engine.pods import PodIndex, PodSpec
from hushflow.proto import peer_pb2

PEER_SERVICE = "peer.Peer"
#: Cilium's default cluster name: peers of this cluster are named by the node alone.
DEFAULT_CLUSTER = "default"
#: Hubble's server port (pkg/hubble/defaults ServerPort): Relay's port for a bare IP address.
HUBBLE_PORT = 4244
#: Changes a Notify stream may fall behind before it is ended (Relay re-opens it).
MAX_BACKLOG = 1024
#: Streams notice a cancel or the server's stop within this many seconds.
_POLL_SECONDS = 0.2
# A Kubernetes node name: a DNS subdomain (RFC 1123), at most 253 characters.
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_LABEL_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


class PeerError(Exception):
    """A reason the Peer service cannot be served, worded for the user."""


@dataclass(frozen=True, slots=True)
class Peer:
    """One Hubble server Relay should dial."""

    name: str
    address: str
    tls_server_name: str = ""  # "": the peer serves without TLS (no `tls` in the notification)

    def notification(self, kind: peer_pb2.ChangeNotificationType) -> peer_pb2.ChangeNotification:
        note = peer_pb2.ChangeNotification(name=self.name, address=self.address, type=kind)
        if self.tls_server_name:
            note.tls.server_name = self.tls_server_name
        return note


def peer_name(node: str, cluster: str = DEFAULT_CLUSTER) -> str:
    """Cilium's Fullname of a node: the node name, prefixed `<cluster>/` off the default cluster."""
    return node if cluster in (DEFAULT_CLUSTER, "") else f"{cluster}/{node}"


def tls_server_name(node: str, cluster: str = DEFAULT_CLUSTER) -> str:
    """Cilium's TLSServerName: `<node>.<cluster>.hubble-grpc.cilium.io`, dots made dashes."""
    if not node:
        return ""
    return ".".join((node.replace(".", "-"), (cluster or DEFAULT_CLUSTER).replace(".", "-"),
                     "hubble-grpc", "cilium.io"))


def join_address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def parse_static_peer(text: str) -> Peer:
    """`NAME=ADDRESS` (`--serve-peer`): ADDRESS is `host:port`, `[v6]:port`, an IP (Relay adds
    4244) or `unix:///path`. Raises PeerError."""
    name, sep, address = text.partition("=")
    if not sep or not name or any(c.isspace() for c in name) or not address:
        raise PeerError(f"--serve-peer {text!r}: give NAME=ADDRESS (e.g. node-1=10.0.0.7:4244)")
    if address.startswith("unix://"):
        if address == "unix://":
            raise PeerError(f"--serve-peer {text!r}: a unix socket needs a path")
        return Peer(name, address)
    try:
        ipaddress.ip_address(address)
        return Peer(name, address)  # Relay dials it on Hubble's port
    except ValueError:
        pass
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535 or any(c.isspace() for c in host):
        raise PeerError(f"--serve-peer {text!r}: the address is not host:port, [IPv6]:port, an IP or unix:///PATH")
    return Peer(name, address)


def _static_server_name(name: str, cluster: str) -> str:
    """The TLS server name of a `--serve-peer` NAME, a node's Fullname: `<cluster>/<node>`, or the
    node name in `cluster`."""
    peer_cluster, sep, node = name.partition("/")
    return tls_server_name(node, peer_cluster) if sep else tls_server_name(name, cluster)


def parse_selector(text: str) -> tuple[tuple[str, str], ...]:
    """An equality-based label selector, `key=value[,key=value...]` (`==` too). The API server
    filters with it; hushflow checks it again on every pod it is given. Raises PeerError."""
    pairs: list[tuple[str, str]] = []
    for term in text.split(","):
        key, sep, value = term.strip().partition("=")
        value = value[1:] if value.startswith("=") else value
        key, value = key.strip(), value.strip()
        prefix, _slash, name = key.rpartition("/")
        good_key = bool(name) and _LABEL_PART.match(name) is not None and len(name) <= 63 and (
            not prefix or _NODE_NAME.match(prefix) is not None)
        good_value = not value or (_LABEL_PART.match(value) is not None and len(value) <= 63)
        if not sep or not good_key or not good_value:
            raise PeerError(f"--serve-peers-selector {text!r}: give key=value pairs separated by commas "
                            "(e.g. app.kubernetes.io/name=hushflow); only equality is supported")
        pairs.append((key, value))
    return tuple(pairs)


# -- the peers and their changes ----------------------------------------------------------------


class PeerSet:
    """The current peers and a bounded log of their changes, read by every Notify stream."""

    def __init__(self, backlog: int = MAX_BACKLOG) -> None:
        self._peers: dict[str, Peer] = {}
        self._log: deque[tuple[int, Peer, peer_pb2.ChangeNotificationType]] = deque(maxlen=backlog)
        self._seq = 0  # changes ever logged; the newest has this number
        self._changed = threading.Condition(threading.Lock())

    def peers(self) -> list[Peer]:
        with self._changed:
            return [self._peers[name] for name in sorted(self._peers)]

    def replace(self, peers: Iterable[Peer]) -> None:
        """The set becomes `peers`: the differences are logged as Cilium's handler sends them."""
        new: dict[str, Peer] = {}
        for peer in peers:
            new[peer.name] = peer
        with self._changed:
            old = self._peers
            changes: list[tuple[Peer, peer_pb2.ChangeNotificationType]] = [
                (old[name], peer_pb2.PEER_DELETED) for name in sorted(old.keys() - new.keys())]
            for name in sorted(new):
                if name not in old:
                    changes.append((new[name], peer_pb2.PEER_ADDED))
                elif old[name] != new[name]:
                    changes.append((new[name], peer_pb2.PEER_UPDATED))
            self._peers = new
            for peer, kind in changes:
                self._seq += 1
                self._log.append((self._seq, peer, kind))
            if changes:
                self._changed.notify_all()

    def start(self) -> tuple[list[Peer], int]:
        """The current peers and the number of the last change they include."""
        with self._changed:
            return [self._peers[name] for name in sorted(self._peers)], self._seq

    def changes_after(self, seq: int, timeout: float) -> list[tuple[int, Peer, peer_pb2.ChangeNotificationType]] | None:
        """The changes numbered above `seq` (waiting up to `timeout` for one); None when the
        oldest of them has already left the log (the reader fell too far behind)."""
        with self._changed:
            if self._seq == seq:
                self._changed.wait(timeout)
            if self._seq - seq > len(self._log):
                return None
            return [entry for entry in self._log if entry[0] > seq]


class PeerService:
    """`peer.Peer/Notify` over a `PeerSet`; register `handler()` on the Observer's server."""

    def __init__(self, peers: PeerSet) -> None:
        self.peers = peers
        self.stopping = threading.Event()
        self.watch: PeerWatch | None = None  # the pod watch that fills `peers`, if any
        self.streams = 0  # Notify calls answered
        self.too_slow = 0  # streams ended for falling MAX_BACKLOG changes behind

    def notify(self, _request: peer_pb2.NotifyRequest,
               context: grpc.ServicerContext) -> Iterator[peer_pb2.ChangeNotification]:
        self.streams += 1
        current, seq = self.peers.start()
        for peer in current:
            yield peer.notification(peer_pb2.PEER_ADDED)
        while context.is_active() and not self.stopping.is_set():
            changes = self.peers.changes_after(seq, _POLL_SECONDS)
            if changes is None:
                self.too_slow += 1
                context.abort(grpc.StatusCode.UNAVAILABLE,
                              f"more than {MAX_BACKLOG} peer changes were not read in time; call Notify again")
            for number, peer, kind in changes or ():
                yield peer.notification(kind)
                seq = number

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(PEER_SERVICE, {
            "Notify": grpc.unary_stream_rpc_method_handler(
                self.notify, request_deserializer=peer_pb2.NotifyRequest.FromString,
                response_serializer=peer_pb2.ChangeNotification.SerializeToString),
        })

    def start(self) -> None:
        if self.watch is not None:
            threading.Thread(target=self.watch.run, name="hushflow-peer-watch", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()


# -- the DaemonSet's pods as peers --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerPod(PodSpec):
    """A pod spec with what makes it a peer: its node, phase and whether it is going away."""

    node_name: str = ""
    running: bool = False
    deleting: bool = False
    created: str = ""  # metadata.creationTimestamp (RFC 3339: sorts in time order)


class PeerPods(PodIndex):
    """The pod index the pod watch fills; every change turns the selected pods into peers."""

    def __init__(self, peers: PeerSet, *, namespace: str, selector: tuple[tuple[str, str], ...], port: int,
                 cluster: str = DEFAULT_CLUSTER, tls: bool = False) -> None:
        super().__init__()
        self.peer_set = peers
        self.namespace = namespace
        self.selector = selector
        self.port = port
        self.cluster = cluster
        self.tls = tls
        self._batch = False

    def upsert(self, pod: PodSpec) -> None:
        super().upsert(pod)
        self._publish()

    def remove(self, namespace: str, name: str) -> None:
        super().remove(namespace, name)
        self._publish()

    def replace_all(self, pods: Iterable[PodSpec]) -> None:
        self._batch = True  # one publication for the whole list, not one per pod
        try:
            super().replace_all(pods)
        finally:
            self._batch = False
        self._publish()

    def _publish(self) -> None:
        if not self._batch:
            self.peer_set.replace(self.current_peers())

    def current_peers(self) -> list[Peer]:
        chosen: dict[str, PeerPod] = {}
        for pod in self.pods():
            if not isinstance(pod, PeerPod) or not self._is_peer(pod):
                continue
            held = chosen.get(pod.node_name)
            if held is None or (pod.created, pod.name) > (held.created, held.name):
                chosen[pod.node_name] = pod  # a rolling update: the newest pod of the node
        return [Peer(peer_name(node, self.cluster), join_address(pod.ips[0], self.port),
                     tls_server_name(node, self.cluster) if self.tls else "")
                for node, pod in sorted(chosen.items())]

    def _is_peer(self, pod: PeerPod) -> bool:
        labels = dict(pod.labels)
        return (pod.namespace == self.namespace and all(labels.get(k) == v for k, v in self.selector)
                and pod.running and not pod.deleting and bool(pod.node_name) and bool(pod.ips))


class PeerWatch(PodWatch):
    """The pod watch of `hushflow.app.pod_watch`, narrowed to the DaemonSet's pods (label and
    field selectors on every list and watch) and reading what makes a pod a peer."""

    def __init__(self, api: Any, index: PeerPods, stopping: threading.Event, *,
                 report: Callable[[str], None] = lambda _line: None, **kwargs: Any) -> None:
        def peer_report(line: str) -> None:
            # The pod watch's retry line speaks of named ports: here the peers are what is kept.
            report(line.replace("pod watch:", "peer watch:", 1)
                   .replace("(named ports use the pods known so far)", "(the peers known so far are kept)"))

        super().__init__(api, index, threading.Lock(), stopping, report=peer_report, **kwargs)
        self.peer_pods = index

    def _open(self, query: list[tuple[str, str]], *, read_timeout: float) -> Any:
        selector = ",".join(f"{key}={value}" for key, value in self.peer_pods.selector)
        query = [*query, ("labelSelector", selector),
                 ("fieldSelector", f"metadata.namespace={self.peer_pods.namespace}")]
        return super()._open(query, read_timeout=read_timeout)

    def _pod(self, item: Any) -> PodSpec | None:
        spec = super()._pod(item)
        if spec is None:
            return None
        metadata, pod_spec, status = item["metadata"], item.get("spec") or {}, item.get("status") or {}
        node = pod_spec.get("nodeName")
        if node is not None and (not isinstance(node, str) or len(node) > 253 or not _NODE_NAME.match(node)):
            self._bad(f"{spec.where}: spec.nodeName {repr(node)[:80]} is not a node name")
            return None
        created = metadata.get("creationTimestamp")
        fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(PodSpec)}
        return PeerPod(**fields, node_name=node or "", running=status.get("phase") == "Running",
                       deleting=metadata.get("deletionTimestamp") is not None,
                       created=created if isinstance(created, str) else "")


def serve_port(address: str) -> int:
    """The TCP port of a `--serve` address (host:port); raises PeerError for a unix socket."""
    if address.startswith("unix://"):
        raise PeerError("--serve-peers-selector needs --serve on a TCP port (Relay dials the pods' IPs), "
                        f"not {address}")
    return int(address.rpartition(":")[2])


def peer_service(*, serve: str, static: Iterable[str] = (), selector: str | None = None,
                 namespace: str = "hushflow", cluster: str = DEFAULT_CLUSTER, api: Any = None,
                 kubeconfig: str | None = None, report: Callable[[str], None] = lambda _line: None,
                 tls: bool = False) -> PeerService:
    """The Peer service of `hushflow run --serve ... --serve-peer ...` or `--serve-peers-selector`
    (not started: call `start()`). `api` is a kubernetes ApiClient for the selector; without it,
    the cluster of `kubeconfig` (or the service account) is used. `tls`: the instances serve with
    TLS (--serve-tls-*), so each notification names the server name Relay must verify, as
    Cilium's agents announce theirs. Raises PeerError."""
    peers = PeerSet()
    if static and selector:
        raise PeerError("give either --serve-peer NAME=ADDRESS or --serve-peers-selector, not both")
    service = PeerService(peers)
    if static:
        fixed = [parse_static_peer(text) for text in static]
        if tls:
            fixed = [dataclasses.replace(peer, tls_server_name=_static_server_name(peer.name, cluster))
                     for peer in fixed]
        names = [peer.name for peer in fixed]
        if len(set(names)) != len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            raise PeerError(f"--serve-peer: a name is given twice ({', '.join(twice)})")
        peers.replace(fixed)
        return service
    if selector is None:
        raise PeerError("the Peer service needs its peers: --serve-peers-selector or --serve-peer")
    if not namespace or not _NODE_NAME.match(namespace) or len(namespace) > 63:
        raise PeerError(f"--serve-peers-namespace {namespace!r} is not a namespace name")
    index = PeerPods(peers, namespace=namespace, selector=parse_selector(selector), port=serve_port(serve),
                     cluster=cluster, tls=tls)
    if api is None:
        from hushflow.app.cluster import Cluster, ClusterError

        try:
            api = Cluster.connect(kubeconfig).api
        except ClusterError as exc:
            raise PeerError(f"--serve-peers-selector: {exc}") from None
    service.watch = PeerWatch(api, index, service.stopping, report=report)
    return service
