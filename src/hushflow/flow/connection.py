"""The connection a policy verdict is about, seen from the endpoint that enforces it.

Cilium enforces egress at the source endpoint and ingress at the destination (reference §E.0):
for an EGRESS verdict the *local* endpoint is the source and the *peer* the destination; for
INGRESS it is the other way round. Policy verdicts and policy drops are emitted for the packet
that opens a connection, so the destination port is the port the policy is about.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hushflow.flow.identities import RESERVED_IDENTITY_LABELS
from hushflow.flow.times import flow_time

Direction = Literal["ingress", "egress"]

POLICY_DROP_REASONS = {"POLICY_DENY": 181, "POLICY_DENIED": 133}
_POLICY_DROP_CODES = {181: "POLICY_DENY", 133: "POLICY_DENIED"}


@dataclass(frozen=True, slots=True)
class Connection:
    direction: Direction
    local: Mapping[str, Any]  # the Hubble Endpoint that enforces the policy
    peer: Mapping[str, Any]
    local_ip: str
    peer_ip: str
    protocol: str  # TCP, UDP, SCTP, ICMPv4, ICMPv6, or "" when the flow has no L4
    port: int  # destination port, or the ICMP type
    peer_labels: tuple[str, ...]
    peer_names: tuple[str, ...]  # names Hubble attached to the peer IP (destination_names on egress)
    service: tuple[str, str] | None  # (namespace, name) of destination_service
    node_name: str
    node_labels: tuple[str, ...]
    time: float


def policy_drop_reason(flow: Mapping[str, Any]) -> str | None:
    """POLICY_DENY / POLICY_DENIED when the flow is a policy drop, else None."""
    if flow.get("verdict") != "DROPPED":
        return None
    desc = flow.get("drop_reason_desc")
    if desc in POLICY_DROP_REASONS:
        return str(desc)
    return _POLICY_DROP_CODES.get(flow.get("drop_reason", 0))


def is_policy_outcome(flow: Mapping[str, Any]) -> bool:
    """Policy-verdict events (type 5), and drop notifications (type 1) with a policy drop reason."""
    event_type = (flow.get("event_type") or {}).get("type")
    if event_type == 5:
        return True
    return event_type == 1 and policy_drop_reason(flow) is not None


def _l4(flow: Mapping[str, Any]) -> tuple[str, int]:
    l4 = flow.get("l4") or {}
    for protocol in ("TCP", "UDP", "SCTP"):
        if protocol in l4:
            return protocol, int(l4[protocol].get("destination_port", 0))
    for protocol in ("ICMPv4", "ICMPv6"):
        if protocol in l4:
            return protocol, int(l4[protocol].get("type", 0))
    return "", 0


#: Cilium's namespace label of a pod identity (pkg/k8s/apis/cilium.io/const.go, PodNamespaceLabel):
#: a CiliumNetworkPolicy selects the endpoints of its own namespace through it.
_NAMESPACE_LABEL = "k8s:io.kubernetes.pod.namespace="
_NAMESPACE_KEY = "io.kubernetes.pod.namespace="


def endpoint_labels(endpoint: Mapping[str, Any]) -> tuple[str, ...]:
    """The labels policies select ``endpoint`` by.

    Hubble fills ``namespace`` from the endpoint's Kubernetes metadata and ``labels`` from its
    identity, separately (pkg/hubble/parser/common/endpoint.go): a field-masked export or a
    trimmed flow can keep the one without the other. A pod is in its namespace whatever its
    labels say, so a missing namespace label is added from ``namespace``; one Cilium wrote
    stands (never replaced), and an endpoint with neither gets its reserved identity's label.
    """
    labels = endpoint.get("labels")
    namespace = endpoint.get("namespace")
    if labels:
        labels = tuple(labels)
        if not namespace or type(namespace) is not str or _NAMESPACE_LABEL + namespace in labels:
            return labels
        if any(_NAMESPACE_KEY in label for label in labels):
            return labels  # Cilium's own namespace label (from another source, or another value)
        return tuple(sorted((*labels, _NAMESPACE_LABEL + namespace)))
    if namespace and type(namespace) is str:
        return (_NAMESPACE_LABEL + namespace,)
    reserved = RESERVED_IDENTITY_LABELS.get(endpoint.get("identity", 0))
    return (reserved,) if reserved else ()


def connection_of(flow: Mapping[str, Any], now: float | None = None) -> Connection | None:
    """The enforced connection of a policy outcome flow, or None when direction is unknown."""
    direction = flow.get("traffic_direction")
    if direction == "EGRESS":
        local_key, peer_key, local_ip_key, peer_ip_key, names_key = (
            "source", "destination", "source", "destination", "destination_names"
        )
    elif direction == "INGRESS":
        local_key, peer_key, local_ip_key, peer_ip_key, names_key = (
            "destination", "source", "destination", "source", "source_names"
        )
    else:
        return None
    ip = flow.get("IP") or {}
    protocol, port = _l4(flow)
    peer = flow.get(peer_key) or {}
    service = flow.get("destination_service") if direction == "EGRESS" else None
    return Connection(
        direction="egress" if direction == "EGRESS" else "ingress",
        local=flow.get(local_key) or {},
        peer=peer,
        local_ip=ip.get(local_ip_key, ""),
        peer_ip=ip.get(peer_ip_key, ""),
        protocol=protocol,
        port=port,
        peer_labels=endpoint_labels(peer),
        peer_names=tuple(flow.get(names_key) or ()),
        service=(service.get("namespace", ""), service.get("name", "")) if service else None,
        node_name=flow.get("node_name", ""),
        node_labels=tuple(flow.get("node_labels") or ()),
        time=flow_time(flow) if now is None else now,
    )


#: What a peer outside the cluster is called where a flow names no DNS name for it.
WORLD = "world"


def workload_of(endpoint: Mapping[str, Any]) -> str:
    """The endpoint's workload name (its first Hubble workload), else its pod name."""
    workloads = endpoint.get("workloads") or ()
    if workloads:
        return str(workloads[0].get("name", ""))
    return str(endpoint.get("pod_name", ""))


def destination_of(flow: Mapping[str, Any], direction: str) -> str:
    """The peer of a verdict as people name it: its DNS name, else namespace/workload, else world."""
    if direction == "egress":
        names = flow.get("destination_names")
        peer = flow.get("destination") or {}
    else:
        names = flow.get("source_names")
        peer = flow.get("source") or {}
    if names:
        return str(names[0])
    if peer.get("namespace"):
        return f"{peer['namespace']}/{workload_of(peer)}"
    return WORLD



# -- what a packet says about its connection ---------------------------------------------------
# Linux's default ip_local_port_range starts here; clients' source ports are above it.
EPHEMERAL_PORTS_FROM = 32768
WELL_KNOWN_PORTS_BELOW = 1024


def is_udp_server_answer(udp: Mapping[str, Any]) -> bool:
    """UDP from a port below 1024 to an ephemeral one: a server answering a client."""
    source, destination = udp.get("source_port"), udp.get("destination_port")
    return (isinstance(source, int) and isinstance(destination, int)
            and 0 < source < WELL_KNOWN_PORTS_BELOW and destination >= EPHEMERAL_PORTS_FROM)


def looks_like_reply(flow: Mapping[str, Any]) -> bool:
    """Whether the packet continues a connection instead of opening one: `is_reply` (which
    Hubble leaves out of drops, cilium#41045), a TCP segment with ACK, RST or FIN (a connection
    opens with a lone SYN), or a UDP server's answer. Anything hushflow cannot tell (no flags,
    ICMP) is no reply."""
    if flow.get("is_reply") is True:
        return True
    l4 = flow.get("l4")
    if not isinstance(l4, Mapping):
        return False
    tcp = l4.get("TCP")
    if isinstance(tcp, Mapping):
        flags = tcp.get("flags")
        if not isinstance(flags, Mapping):
            return False
        return any(flags.get(name) is True for name in ("ACK", "RST", "FIN"))
    udp = l4.get("UDP")
    return isinstance(udp, Mapping) and is_udp_server_answer(udp)
