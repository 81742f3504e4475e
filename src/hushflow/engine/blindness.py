"""The blindness alarm: connections an FQDN deny cannot see the name of.

An FQDN deny only blocks the IPs hushflow learned for its names from DNS answers (Hubble's DNS
flows, dnstap, the resolver's own pre-resolution of matchNames). When a pod resolves where
hushflow cannot see it (NodeLocal DNSCache behind a local redirect policy, DNS-over-HTTPS) or
uses a hard-coded IP, its connections go to addresses no answer explains, and the deny cannot
know whether they are the denied names: it may be leaking, and nothing else says so.

A connection is an *unexplained destination* when all of these hold:
- it is egress, opened by an endpoint an FQDN deny (`egressDeny` with `toFQDNs`) selects;
- on a port that deny covers (its toPorts; every port when it has none);
- to a world peer (reserved:world, a CIDR identity: what toFQDNs can select; never a pod, a
  node or another cluster entity);
- and nothing names the peer IP: no DNS answer any endpoint received contains it (within its
  TTL, raised to `min_ttl`, plus `grace`: as long as the deny itself keeps an answer's IPs), the
  resolver did not return it, Hubble attached no name to the flow (`destination_names`), and
  Cilium did not label the peer identity with an FQDN selector (`fqdn:` labels).

Which flows: the policy outcomes the attribution reads (policy-verdict events, one per new
connection of an endpoint whose egress is enforced, which an egress deny makes it; and policy
drop notifications). Packets that cannot open a connection are left out: replies (`is_reply`,
cilium#41045), TCP packets other than a SYN without ACK, and UDP from a port below 1024 to an
ephemeral one (a server's answer). A connection is counted once per
(endpoint, IP, protocol, port) per `window` seconds of flow time, so a SYN's retransmits, the
drop notification beside its verdict and a client that reconnects every second count once;
the number of such keys kept is bounded (`max_tracked`, the oldest forgotten first).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hushflow.engine.dns_knowledge import DnsKnowledge
from hushflow.engine.peers import CompiledPeer, compile_peer, is_world_peer
from hushflow.flow.connection import Connection, endpoint_labels, is_udp_server_answer
from hushflow.policy.labels import endpoint_label_map
from hushflow.policy.model import PolicySet, Rule

DEFAULT_WINDOW = 60.0
DEFAULT_MAX_TRACKED = 100_000
DEFAULT_MAX_RESOLVED = 100_000
_SUBJECT_CACHE_LIMIT = 100_000
_HOST = "reserved:host"
_UNSEEN = object()


@dataclass(frozen=True, slots=True)
class UnexplainedDestination:
    """One connection no DNS answer explains, and the FQDN deny that cannot see its name."""

    rule: Rule
    peer: CompiledPeer  # the egressDeny entry (its toFQDNs and toPorts)
    ip: str
    protocol: str
    port: int

    @property
    def where(self) -> str:
        """The egressDeny entry as `file:line field`."""
        location = self.peer.rule.where
        return f"{location.file}:{location.line} {location.field}"


def opens_connection(flow: Mapping[str, Any]) -> bool:
    """Whether the flow's packet can open a connection: not a reply (`is_reply`, which Hubble
    leaves out of drops, cilium#41045), for TCP a SYN without ACK (a flow without TCP flags, as a
    policy-verdict event may be, is taken as one), and no UDP server's answer (from a port below
    1024 to an ephemeral one: flow.connection.is_udp_server_answer, which looks_like_reply uses)."""
    if flow.get("is_reply") is True:
        return False
    l4 = flow.get("l4")
    if not isinstance(l4, dict):  # dicts as read (isinstance of Mapping costs 4x)
        return True
    tcp = l4.get("TCP")
    if isinstance(tcp, dict):
        flags = tcp.get("flags")
        if isinstance(flags, dict) and flags:
            return flags.get("SYN") is True and flags.get("ACK") is not True
        return True
    udp = l4.get("UDP")
    return not (isinstance(udp, dict) and is_udp_server_answer(udp))


class UnexplainedDestinations:
    """Finds and counts the unexplained destinations of the FQDN denies of a policy set.

    `dns` is the knowledge the attribution learns into (Hubble DNS flows and dnstap answers);
    answers of the resolver, which the attribution does not learn, come through
    :meth:`learn_resolved`. Time is the flow's own, as everywhere in the engine.
    """

    def __init__(
        self,
        policy_set: PolicySet,
        dns: DnsKnowledge,
        *,
        min_ttl: float = 0.0,
        grace: float = 0.0,
        window: float = DEFAULT_WINDOW,
        max_tracked: int = DEFAULT_MAX_TRACKED,
        max_resolved: int = DEFAULT_MAX_RESOLVED,
    ) -> None:
        self.dns = dns
        self.min_ttl = min_ttl
        self.grace = grace
        self.window = window
        self.max_tracked = max(1, max_tracked)
        self.max_resolved = max(1, max_resolved)
        # Compiled once: the FQDN denies, each with the rule whose endpointSelector picks its endpoints.
        self._denies: list[tuple[Rule, CompiledPeer]] = [
            (rule, compile_peer(peer, policy_set))
            for rule in policy_set.rules
            for peer in rule.egress_deny
            if peer.fqdns and not peer.grants_nothing
        ]
        # (local labels, node labels of a host endpoint, protocol, port) -> the deny covering it, or None
        self._subjects: dict[tuple[tuple[str, ...], tuple[str, ...], str, int], tuple[Rule, CompiledPeer] | None] = {}
        self._counted: dict[tuple[str, str, str, str, str, int], float] = {}  # connection key -> flow time counted
        self._resolved: dict[str, float] = {}  # IP the resolver returned -> until when it explains
        self.counted = 0
        self.forgotten = 0  # connection keys dropped for the bound (counted again if seen again)

    def __bool__(self) -> bool:
        return bool(self._denies)

    # -- what explains an IP --------------------------------------------------------------------

    def learn_resolved(self, ips: Iterable[str], ttl: float, now: float) -> None:
        """The resolver's answer for a denied matchName: its IPs are explained as long as the
        deny keeps them (TTL raised to min_ttl, plus grace)."""
        until = now + max(float(ttl), self.min_ttl) + self.grace
        resolved = self._resolved
        for ip in ips:
            resolved.pop(ip, None)  # re-inserted last: the dict stays in order of refresh
            resolved[ip] = until
        if len(resolved) > self.max_resolved:
            for ip in [ip for ip, expires in resolved.items() if expires < now]:
                del resolved[ip]
            while len(resolved) > self.max_resolved:
                del resolved[next(iter(resolved))]

    def explained(self, conn: Connection) -> bool:
        """Whether something names the connection's peer IP at the connection's time."""
        if conn.peer_names:
            return True  # Hubble (Cilium's DNS proxy) named it
        if any(label.startswith("fqdn:") for label in conn.peer_labels):
            return True  # Cilium's identity for an FQDN selector: Cilium saw the name
        ip, now = conn.peer_ip, conn.time
        if self.dns.names_for_ip(ip, now):
            return True
        until = self._resolved.get(ip)
        if until is not None and until >= now:
            return True
        hold = self.min_ttl + self.grace
        if hold > 0:
            # An answer past its TTL still explains its IPs while the deny keeps them.
            for answer in self.dns.answers_for_ip(ip, now - hold):
                if answer.seen_at + max(answer.ttl, self.min_ttl) + self.grace >= now:
                    return True
        return False

    # -- the check ------------------------------------------------------------------------------

    def _covering(self, conn: Connection) -> tuple[Rule, CompiledPeer] | None:
        """The first FQDN deny that selects the connection's local endpoint and covers its port,
        for a world peer (cached per labels, protocol and port: a world peer has no named port,
        so nothing else decides it)."""
        labels = endpoint_labels(conn.local)
        key = (labels, conn.node_labels if _HOST in labels else (), conn.protocol, conn.port)
        covering = self._subjects.get(key, _UNSEEN)
        if covering is not _UNSEEN:
            return covering  # type: ignore[return-value]
        if len(self._subjects) >= _SUBJECT_CACHE_LIMIT:
            self._subjects.clear()
        found = next(((rule, peer) for rule, peer in self._selecting(labels, conn.node_labels)
                      if peer.port_matches(conn)), None)
        self._subjects[key] = found
        return found

    def _selecting(self, labels: tuple[str, ...], node_labels: tuple[str, ...]) -> list[tuple[Rule, CompiledPeer]]:
        """The FQDN denies whose rule selects an endpoint with these labels (on a node with these)."""
        host = _HOST in labels
        label_map = endpoint_label_map(labels)
        node_map = endpoint_label_map(f"k8s:{label}" for label in node_labels) if host else None
        selected = []
        for rule, peer in self._denies:
            if rule.subject is not None:
                if rule.subject.matches(label_map):
                    selected.append((rule, peer))
            elif node_map is not None and rule.node_subject is not None and rule.node_subject.matches(node_map):
                selected.append((rule, peer))  # a host policy (nodeSelector) selects this node
        return selected

    def unexplained(self, conn: Connection) -> UnexplainedDestination | None:
        """The FQDN deny that cannot see the name of this connection's peer, or None when the
        connection is no unexplained destination. No dedup, no counting (what explain asks)."""
        if conn.direction != "egress" or not conn.peer_ip or not self._denies:
            return None
        identity = conn.peer.get("identity", 0)
        if not is_world_peer(conn.peer_labels, identity if isinstance(identity, int) else 0):
            return None
        covering = self._covering(conn)
        if covering is None or self.explained(conn):
            return None
        return UnexplainedDestination(covering[0], covering[1], conn.peer_ip, conn.protocol, conn.port)

    def observe(self, conn: Connection, flow: Mapping[str, Any]) -> UnexplainedDestination | None:
        """Check one policy outcome (`flow` is the Hubble flow `conn` was read from): the finding
        when it opens a connection to an unexplained destination not counted in the last
        `window` seconds (then counted), else None."""
        if conn.direction != "egress" or not self._denies or not opens_connection(flow):
            return None
        found = self.unexplained(conn)
        if found is None:
            return None
        local = conn.local
        key = (str(local.get("namespace", "")), str(local.get("pod_name", "")), conn.local_ip, conn.peer_ip,
               conn.protocol, conn.port)
        counted = self._counted
        last = counted.pop(key, None)  # re-inserted last: the dict stays in order of counting
        if last is not None and abs(conn.time - last) < self.window:
            counted[key] = last
            return None
        counted[key] = conn.time
        while len(counted) > self.max_tracked:
            del counted[next(iter(counted))]
            self.forgotten += 1
        self.counted += 1
        return found
