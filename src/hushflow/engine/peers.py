"""Does a rule's peer and port part select a connection? Compiled once per rule.

Semantics (reference §A.3, §A.4, §B):
- a rule with no L3 field selects every peer; a written but empty list selects none;
- `to/fromEndpoints` match the peer's labels (implicit namespace already in the selector);
- CIDR rules match only peers without a label identity (world, CIDR and FQDN identities);
- `toEntities` map to reserved labels; `cluster` is the reserved in-cluster identities plus the
  pods labelled `k8s:io.cilium.k8s.policy.cluster=<local cluster>` (pkg/policy/api/entity.go,
  InitEntities): a pod of another mesh cluster is not `cluster`;
- `from/toRequires` of every rule selecting the endpoint narrow each `from/toEndpoints`
  selector of the same kind (allow or deny), nothing else (pkg/policy/rules.go); an entry with
  only requirements selects no peer;
- `toFQDNs` match world peers whose IP the source resolved to a selected name: Hubble's
  `destination_names`, plus every unexpired DNS answer the engine has seen (Cilium's merged
  cache), plus the `fqdn:` selector labels Cilium itself put on the peer identity;
- `toServices` match the flow's destination service by name and namespace;
- ports: `port` "0" = all, `endPort` ranges, ANY = TCP/UDP/SCTP; a named port matches the
  number the destination's pod spec gives it (`hushflow.engine.pods`: the rules, from Cilium);
  one that cannot be resolved matches nothing and is reported to the caller as unresolved
  (`port_matches(unresolved=...)`), so the decision can say "unknown"; `icmps` match the ICMP
  type of the right family.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hushflow.engine.pods import NO_PODS, NamedPortResolver
from hushflow.flow.connection import Connection
from hushflow.policy.fqdn import dns_name
from hushflow.policy.labels import Requirement, Selector
from hushflow.policy.model import CLUSTER_KEY, IPNetwork, PeerRule, PolicySet, PortProtocol

NamesFn = Callable[[], tuple[str, ...]]

_WORLD_LABELS = frozenset({"reserved:world", "reserved:world-ipv4", "reserved:world-ipv6"})
_CLUSTER_RESERVED = frozenset(
    {
        "reserved:host",
        "reserved:remote-node",
        "reserved:init",
        "reserved:ingress",
        "reserved:health",
        "reserved:unmanaged",
        "reserved:kube-apiserver",
    }
)
_ENTITY_LABELS = {
    "world": _WORLD_LABELS,
    "host": frozenset({"reserved:host"}),
    "remote-node": frozenset({"reserved:remote-node"}),
    "kube-apiserver": frozenset({"reserved:kube-apiserver"}),
    "health": frozenset({"reserved:health"}),
    "init": frozenset({"reserved:init"}),
    "ingress": frozenset({"reserved:ingress"}),
    "unmanaged": frozenset({"reserved:unmanaged"}),
}
# ICMP type names Cilium accepts, per family.
ICMP_TYPES = {
    "IPv4": {
        "EchoReply": 0, "DestinationUnreachable": 3, "Redirect": 5, "Echo": 8, "EchoRequest": 8,
        "RouterAdvertisement": 9, "RouterSelection": 10, "TimeExceeded": 11, "ParameterProblem": 12,
        "Timestamp": 13, "TimestampReply": 14, "Photuris": 40, "ExtendedEchoRequest": 42, "ExtendedEchoReply": 43,
    },
    "IPv6": {
        "DestinationUnreachable": 1, "PacketTooBig": 2, "TimeExceeded": 3, "ParameterProblem": 4,
        "EchoRequest": 128, "EchoReply": 129, "MulticastListenerQuery": 130, "MulticastListenerReport": 131,
        "MulticastListenerDone": 132, "RouterSolicitation": 133, "RouterAdvertisement": 134,
        "NeighborSolicitation": 135, "NeighborAdvertisement": 136, "RedirectMessage": 137,
        "RouterRenumbering": 138, "ICMPNodeInformationQuery": 139, "ICMPNodeInformationResponse": 140,
        "InverseNeighborDiscoverySolicitation": 141, "InverseNeighborDiscoveryAdvertisement": 142,
        "HomeAgentAddressDiscoveryRequest": 144, "HomeAgentAddressDiscoveryReply": 145,
        "MobilePrefixSolicitation": 146, "MobilePrefixAdvertisement": 147,
        "DuplicateAddressRequestCodeSuffix": 157, "DuplicateAddressConfirmationCodeSuffix": 158,
    },
}


def is_world_peer(labels: tuple[str, ...], identity: int) -> bool:
    """A peer without a label-based identity: only CIDR rules and toFQDNs can select it."""
    if identity in (2, 9, 10) or identity >= 1 << 24:
        return True
    return any(label in _WORLD_LABELS for label in labels)


def _resolve_groups(peer_cidrs: tuple, policy_set: PolicySet) -> list[tuple[IPNetwork, tuple[IPNetwork, ...]]]:
    nets: list[tuple[IPNetwork, tuple[IPNetwork, ...]]] = []
    for cidr in peer_cidrs:
        if cidr.cidr is not None:
            nets.append((cidr.cidr, cidr.excepts))
            continue
        for group in policy_set.cidr_groups:
            selected = (cidr.group_ref is not None and group.name == cidr.group_ref) or (
                cidr.group_selector is not None
                and cidr.group_selector.matches({f"any:{k}": v for k, v in group.labels.items()}
                                                | {f"k8s:{k}": v for k, v in group.labels.items()})
            )
            if selected:
                nets.extend((net, cidr.excepts) for net in group.cidrs)
    return nets


@dataclass(slots=True)
class CompiledPeer:
    """A PeerRule turned into quick checks."""

    rule: PeerRule
    l3: bool  # the rule names peers (else it is L4-only / all)
    has_ports: bool
    endpoints: tuple[Selector, ...] | None
    entities: frozenset[str] | None
    cidrs: list[tuple[IPNetwork, tuple[IPNetwork, ...]]] | None
    fqdn_labels: frozenset[str] = field(default_factory=frozenset)
    named_ports: bool = False  # some port of the rule is a name: the decision depends on pod specs

    @property
    def match_type(self) -> str:
        """Hubble's policy_match_type words: L3-L4, L3-Only, L4-Only or all."""
        if self.l3 and self.has_ports:
            return "L3-L4"
        if self.l3:
            return "L3-Only"
        if self.has_ports:
            return "L4-Only"
        return "all"

    @property
    def specificity(self) -> int:
        return {"L3-L4": 0, "L3-Only": 1, "L4-Only": 1, "all": 2}[self.match_type]

    # -- peers ---------------------------------------------------------------------------------

    def peer_matches(
        self,
        conn: Connection,
        peer_map: Mapping[str, str],
        names: NamesFn,
        why: list[str] | None = None,
        requires: tuple[Requirement, ...] = (),
    ) -> bool:
        """`requires`: the from/toRequires of the rules selecting the endpoint, folded into every
        endpoint selector of this rule (Cilium <= 1.18)."""
        rule = self.rule
        if rule.grants_nothing:
            return False
        if not self.l3:
            if why is not None:
                why.append("the rule names no peer, so it applies to every peer")
            return True
        identity = int(conn.peer.get("identity", 0))
        if self.endpoints is not None:
            for selector in self.endpoints:
                if selector.matches(peer_map):
                    missed = [r for r in requires if not r.matches(peer_map)]
                    if missed:
                        if why is not None:
                            why.append(
                                f"peer labels match {selector.where.field} ({selector}) but not the required "
                                f"{', '.join(str(r) for r in missed)} (from/toRequires)"
                            )
                        continue
                    if why is not None:
                        why.append(f"peer labels match {selector.where.field} ({selector})")
                    return True
        if self.entities is not None:
            hit = self._entity(conn, peer_map, identity)
            if hit:
                if why is not None:
                    why.append(f"peer is entity {hit}")
                return True
        world = is_world_peer(conn.peer_labels, identity)
        if self.cidrs is not None and world and conn.peer_ip:
            try:
                address = ipaddress.ip_address(conn.peer_ip)
            except ValueError:
                address = None
            if address is not None:
                for net, excepts in self.cidrs:
                    if address.version == net.version and address in net and not any(
                        address in e for e in excepts if e.version == address.version
                    ):
                        if why is not None:
                            why.append(f"peer IP {conn.peer_ip} is in {net}")
                        return True
        if rule.fqdns and world:
            if self.fqdn_labels and self.fqdn_labels.intersection(conn.peer_labels):
                if why is not None:
                    why.append("Cilium labelled the peer identity with this rule's FQDN selector")
                return True
            for name in names():
                for fqdn in rule.fqdns:
                    if fqdn.matches(name):
                        if why is not None:
                            why.append(f"peer IP {conn.peer_ip} is {name}, selected by {fqdn}")
                        return True
        if rule.services and conn.service:
            namespace, name = conn.service
            for service in rule.services:
                if service.name == name and (service.namespace or "default") == (namespace or "default"):
                    if why is not None:
                        why.append(f"destination service {namespace}/{name}")
                    return True
        return False

    def _entity(self, conn: Connection, peer_map: Mapping[str, str], identity: int) -> str | None:
        assert self.entities is not None
        labels = conn.peer_labels
        for entity in self.entities:
            if entity == "all":
                return entity
            if entity == "cluster":
                if not is_world_peer(labels, identity) and (
                    any(label in _CLUSTER_RESERVED for label in labels)
                    or peer_map.get(f"k8s:{CLUSTER_KEY}") == self.rule.cluster_name
                ):
                    return entity
                continue
            if entity == "cluster-mesh":
                # Cilium 1.20: the reserved cluster-mesh identity aggregates the global identities
                # of the *other* mesh clusters (pkg/policy/types aggregateFor: a cluster ID other
                # than the local one); hushflow reads the cluster from the peer's cluster label.
                remote = peer_map.get(f"k8s:{CLUSTER_KEY}")
                if not is_world_peer(labels, identity) and remote and remote != self.rule.cluster_name:
                    return entity
                continue
            wanted = _ENTITY_LABELS.get(entity)
            if wanted and wanted.intersection(labels):
                return entity
        return None

    # -- ports ---------------------------------------------------------------------------------

    def port_matches(
        self,
        conn: Connection,
        why: list[str] | None = None,
        named: NamedPortResolver | None = None,
        unresolved: list[str] | None = None,
    ) -> bool:
        """Does a port of the rule cover the connection? A named port `named` cannot resolve
        matches nothing, and is described in `unresolved`."""
        rule = self.rule
        if rule.icmps is not None:
            if not conn.protocol.startswith("ICMP"):
                return False
            family = "IPv6" if conn.protocol == "ICMPv6" else "IPv4"
            for icmp in rule.icmps:
                if icmp.family != family:
                    continue
                number = int(icmp.type) if icmp.type.isdigit() else ICMP_TYPES[family].get(icmp.type)
                if number == conn.port:
                    if why is not None:
                        why.append(f"ICMP type {conn.port} ({icmp.type})")
                    return True
            return False
        if rule.ports is None:
            return True
        if conn.protocol not in ("TCP", "UDP", "SCTP"):
            return False
        for port_rule in rule.ports:
            if not port_rule.ports:
                if why is not None:
                    why.append("the port rule lists no ports: every port")
                return True
            for port in port_rule.ports:
                if port.protocol not in ("ANY", conn.protocol):
                    continue
                if port.name is not None:
                    if self._named_port_matches(conn, port, named, why, unresolved):
                        return True
                    continue
                if port.covers(conn.port):
                    if why is not None:
                        why.append(f"port {conn.port}/{conn.protocol} is covered by {port}")
                    return True
        return False

    @staticmethod
    def _named_port_matches(
        conn: Connection,
        port: PortProtocol,
        named: NamedPortResolver | None,
        why: list[str] | None,
        unresolved: list[str] | None,
    ) -> bool:
        name = port.port
        if conn.direction == "egress" and is_world_peer(conn.peer_labels, int(conn.peer.get("identity", 0))):
            # Named ports are looked up by the identities a rule selects (NamedPortMultiMap):
            # a peer outside the cluster has no pod, so no named port.
            return False
        answer = named.resolve(name, conn) if named is not None else None
        if answer is None or not answer.resolved:
            if unresolved is not None:
                reason = answer.reason if answer is not None else NO_PODS
                unresolved.append(f"named port {port} could not be resolved: {reason}")
            return False
        # Cilium resolves the name, then applies `endPort` from that number (pkg/policy/l4.go,
        # toMapState: PortRangeToMaskedPorts(resolved, EndPort); an end at or below it is no range).
        for first in answer.ports:
            last = port.end_port if port.end_port and port.end_port > first else first
            if first <= conn.port <= last:
                if why is not None:
                    covered = f"{first}-{last}" if last != first else str(first)
                    why.append(f"port {conn.port}/{conn.protocol} is {port} ({covered}): {answer.reason}")
                return True
        return False


def compile_peer(rule: PeerRule, policy_set: PolicySet) -> CompiledPeer:
    fqdn_labels = frozenset(
        f"fqdn:{dns_name(f.match_pattern or f.match_name or '')}" for f in rule.fqdns or ()
    )
    return CompiledPeer(
        rule=rule,
        l3=bool(rule.l3_fields) or rule.grants_nothing,
        has_ports=rule.ports is not None or rule.icmps is not None,
        endpoints=rule.endpoints,
        entities=frozenset(rule.entities) if rule.entities is not None else None,
        cidrs=_resolve_groups(rule.cidrs, policy_set) if rule.cidrs is not None else None,
        fqdn_labels=fqdn_labels,
        named_ports=any(
            port.name is not None for port_rule in rule.ports or () for port in port_rule.ports
        ),
    )
