"""ClusterNetworkPolicy tiers around the CNP/CCNP/NetworkPolicy decision (Cilium 1.20).

Cilium 1.20 evaluates policy entries in tiers (pkg/policy/types/policyentry.go: Admin, Normal,
Baseline; docs/cluster-network-policy.md has the sources): the Admin tier of the
ClusterNetworkPolicies first, then the CiliumNetworkPolicies, CiliumClusterwideNetworkPolicies
and NetworkPolicies (the decision `engine.decision` makes), then the Baseline tier, then the
Kubernetes default (allow). Within a tier the lowest priority decides; Pass hands the
connection to the next tier. The tier rules are `policy.cluster_network_policy`'s (one entry
per peer, as Cilium's parser makes them); this module decides with them (`decide`, tested row
by row in tests/policy/test_cluster_network_policy.py) and puts a flow's connection into their
terms.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hushflow.engine.peers import is_world_peer
from hushflow.flow.connection import Connection, Direction
from hushflow.policy.cluster_network_policy import IPAddress, KcnpRule, Verdict

# At one priority the API leaves the choice open; Cilium keeps deny over allow in every tier
# (CFP-42904). Where Pass falls among equals is not written anywhere found: hushflow puts it
# between them (a Pass never hides a Deny of the same priority).
_TIE_ORDER: dict[Verdict, int] = {"deny": 0, "pass": 1, "allow": 2}


@dataclass(frozen=True, slots=True)
class TierConnection:
    """What the tiers decide on, from the side of the endpoint whose policy is evaluated: for
    ingress the subject is the destination and the peer the source, for egress the reverse."""

    direction: Direction
    subject: Mapping[str, str]  # endpoint_label_map of the selected pod
    peer: Mapping[str, str]  # endpoint_label_map of the other side (pod, node, or world)
    protocol: str
    port: int
    peer_ip: IPAddress | None = None
    peer_name: str | None = None  # the DNS name the peer's IP was learned for (domainNames)
    port_name: str | None = None  # the destination pod's name of that port (named ports)
    peer_is_world: bool = True  # no label identity: what networks and domainNames peers can select


@dataclass(frozen=True, slots=True)
class TierDecision:
    tier: str  # Admin, NetworkPolicy, Baseline or default
    verdict: Literal["allow", "deny"]
    rule: KcnpRule | None = None  # the deciding ClusterNetworkPolicy rule, if one decided
    passed: tuple[KcnpRule, ...] = ()  # the Pass rules that handed the connection on


def _matches(rule: KcnpRule, connection: TierConnection) -> bool:
    if rule.direction != connection.direction or not rule.subject.matches(connection.subject):
        return False
    if not rule.peer.matches(connection.peer, connection.peer_ip, connection.peer_name, connection.peer_is_world):
        return False
    return rule.ports is None or any(
        p.matches(connection.protocol, connection.port, connection.port_name) for p in rule.ports
    )


def _decide_tier(rules: Sequence[KcnpRule], connection: TierConnection) -> tuple[KcnpRule | None, list[KcnpRule]]:
    """The deciding rule of one tier (an Accept or Deny), or None; and the Pass that ended the tier."""
    matching = sorted((r for r in rules if _matches(r, connection)),
                      key=lambda r: (r.priority, _TIE_ORDER[r.verdict]))
    if not matching:
        return None, []
    first = matching[0]
    if first.verdict == "pass":
        return None, [first]
    return first, []


def decide(
    rules: Sequence[KcnpRule],
    connection: TierConnection,
    network_policy_tier: Literal["allow", "deny"] | None,
) -> TierDecision:
    """The verdict of the tiers for one side of a connection.

    `network_policy_tier` is what the CNP/CCNP/NetworkPolicy tier decides for it: None when no
    such policy selects the endpoint in that direction (then, and only then, Baseline is
    consulted); "deny" includes the default-deny those policies switch on.
    """
    passed: list[KcnpRule] = []
    for tier in ("Admin", "Baseline"):
        if tier == "Baseline" and network_policy_tier is not None:
            return TierDecision("NetworkPolicy", network_policy_tier, None, tuple(passed))
        decided, passes = _decide_tier([r for r in rules if r.tier == tier], connection)
        passed.extend(passes)
        if decided is not None:
            return TierDecision(tier, "allow" if decided.verdict == "allow" else "deny", decided, tuple(passed))
    # Nothing decided: the Kubernetes default, every pod may talk to every pod.
    return TierDecision("default", "allow", None, tuple(passed))




class ClusterTiers:
    """The ClusterNetworkPolicy entries of a policy set, decided around the CNP tier."""

    def __init__(self, rules: Sequence[Any]) -> None:
        self.rules: tuple[KcnpRule, ...] = tuple(rules)
        self.by_direction = {
            direction: tuple(r for r in self.rules if r.direction == direction) for direction in ("ingress", "egress")
        }

    def __bool__(self) -> bool:
        return bool(self.rules)

    def decide(
        self,
        conn: Connection,
        local_map: Mapping[str, str],
        peer_map: Mapping[str, str],
        names: Sequence[str],
        network_policy_tier: str | None,
    ) -> TierDecision:
        """The tiers' verdict for `conn`; `network_policy_tier` is "allow", "deny" or None (no
        CNP/CCNP/NetworkPolicy selects the endpoint in that direction)."""
        try:
            peer_ip = ipaddress.ip_address(conn.peer_ip) if conn.peer_ip else None
        except ValueError:
            peer_ip = None
        rules = self.by_direction.get(conn.direction, ())
        verdict = None if network_policy_tier is None else ("allow" if network_policy_tier == "allow" else "deny")

        world = is_world_peer(conn.peer_labels, int(conn.peer.get("identity", 0) or 0))

        def with_name(name: str | None) -> TierDecision:
            return decide(rules, TierConnection(conn.direction, local_map, peer_map, conn.protocol, conn.port,
                                                peer_ip, name, peer_is_world=world), verdict)  # type: ignore[arg-type]

        if not names or not any(rule.peer.domains for rule in rules):
            return with_name(None)
        # A domainNames peer matches when any name the peer's IP stands for matches: of the
        # decisions with each name, the one decided earliest (tier, then priority) is Cilium's.
        return min((with_name(name) for name in names), key=_order)


_TIER_ORDER = {"Admin": 0, "NetworkPolicy": 1, "Baseline": 2, "default": 3}


def _order(decision: TierDecision) -> tuple[int, float]:
    return _TIER_ORDER[decision.tier], decision.rule.priority if decision.rule is not None else 0.0
