"""A one-line-per-policy digest of a policy set (for `hushflow summary` and the demo)."""

from __future__ import annotations

from dataclasses import dataclass

from hushflow.policy.model import PolicySet

_SHORT_NAMES = {"CiliumNetworkPolicy": "cnp", "NetworkPolicy": "netpol"}


@dataclass(frozen=True, slots=True)
class PolicySummary:
    policy: str
    selects: str
    allows: str
    denies: str
    default_deny: str
    fqdn_denies: str
    log: str


def summarize(policy_set: PolicySet) -> list[PolicySummary]:
    rows = []
    for policy in sorted(policy_set.policies, key=lambda p: (p.ref.namespace, p.ref.name)):
        rules = policy.rules
        selects = "; ".join(
            (", ".join(str(r) for r in rule.subject.written) or "(all)")
            if rule.subject
            else f"nodes: {rule.node_subject}"
            for rule in rules
        )
        directions = [
            d for d, on in (("in", any(r.default_deny_ingress for r in rules)),
                            ("out", any(r.default_deny_egress for r in rules))) if on
        ]
        fqdn_denies = sorted(
            f.match_name or f.match_pattern or ""
            for rule in rules
            for peer in rule.egress_deny
            for f in peer.fqdns or ()
        )
        rows.append(
            PolicySummary(
                # kubectl's short names: cnp, ccnp, netpol
                policy=(f"{_SHORT_NAMES.get(policy.ref.kind, 'cnp')}/{policy.ref.namespace}/{policy.ref.name}"
                        if policy.ref.namespace else f"ccnp/{policy.ref.name}"),
                selects=selects,
                allows=f"{sum(len(r.ingress) for r in rules)}/{sum(len(r.egress) for r in rules)}",
                denies=f"{sum(len(r.ingress_deny) for r in rules)}/{sum(len(r.egress_deny) for r in rules)}",
                default_deny=",".join(directions) or "-",
                fqdn_denies=", ".join(fqdn_denies) or "-",
                log=", ".join(sorted({r.log_value for r in rules if r.log_value})) or "-",
            )
        )
    return rows
