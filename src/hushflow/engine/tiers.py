"""ClusterNetworkPolicy tiers around the CNP/CCNP/NetworkPolicy decision (Cilium 1.20).

Cilium 1.20 evaluates policy entries in tiers (pkg/policy/types/policyentry.go: Admin, Normal,
Baseline; docs/cluster-network-policy.md has the sources): the Admin tier of the
ClusterNetworkPolicies first, then the CiliumNetworkPolicies, CiliumClusterwideNetworkPolicies
and NetworkPolicies (the decision `engine.decision` makes), then the Baseline tier, then the
Kubernetes default (allow). Within a tier the lowest priority decides; Pass hands the
connection to the next tier. The tier rules themselves, and `decide`, are
`policy.cluster_network_policy`'s (one entry per peer, as Cilium's parser makes them); this
module only puts a flow's connection into their terms and the verdict back into a Decision.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from hushflow.flow.connection import Connection
from hushflow.policy.cluster_network_policy import Connection as TierConnection
from hushflow.policy.cluster_network_policy import KcnpRule, TierDecision, decide


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

        def with_name(name: str | None) -> TierDecision:
            return decide(rules, TierConnection(conn.direction, local_map, peer_map, conn.protocol, conn.port,
                                                peer_ip, name), verdict)  # type: ignore[arg-type]

        if not names or not any(rule.peer.domains for rule in rules):
            return with_name(None)
        # A domainNames peer matches when any name the peer's IP stands for matches: of the
        # decisions with each name, the one decided earliest (tier, then priority) is Cilium's.
        return min((with_name(name) for name in names), key=_order)


_TIER_ORDER = {"Admin": 0, "NetworkPolicy": 1, "Baseline": 2, "default": 3}


def _order(decision: TierDecision) -> tuple[int, float]:
    return _TIER_ORDER[decision.tier], decision.rule.priority if decision.rule is not None else 0.0
