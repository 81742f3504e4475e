"""The FQDN deny rules of a policy set, each with a stable identity.

An FQDN deny is one `egressDeny` entry with `toFQDNs` (hushflow's extension). Its id names the
policy and the entry (`cnp.my-namespace.app-external-block-policy.egressdeny-0`), shortened
with a hash when it would not fit a Kubernetes label value (63 characters), so that CIDR groups,
labels and state entries all refer to the same deny, across runs and machines.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from hushflow.policy.fqdn import FQDNSelector
from hushflow.policy.model import CCNP, PeerRule, PolicySet, Rule

LABEL_VALUE_MAX = 63
_UNSAFE = re.compile(r"[^a-z0-9.-]+")


@dataclass(frozen=True, slots=True, eq=False)
class FqdnDeny:
    id: str
    rule: Rule
    peer: PeerRule
    selectors: tuple[FQDNSelector, ...]

    @property
    def match_names(self) -> tuple[str, ...]:
        return tuple(s.match_name for s in self.selectors if s.match_name is not None)

    def matches(self, name: str) -> bool:
        return any(selector.matches(name) for selector in self.selectors)

    def describe(self) -> str:
        kind = "ccnp" if self.rule.policy.kind == CCNP else "cnp"
        ref = self.rule.policy
        name = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
        where = self.peer.where
        return f"{kind} {name} {where.field} ({where.file}:{where.line})"


def fit_label(text: str) -> str:
    """`text` as a Kubernetes label value (at most 63 characters): unchanged when it fits, else
    cut and ended with a stable hash of the whole, so distinct long values stay distinct."""
    if len(text) <= LABEL_VALUE_MAX:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{text[: LABEL_VALUE_MAX - 11].rstrip('.-_')}-{digest}"


def deny_id(rule: Rule, peer: PeerRule) -> str:
    kind = "ccnp" if rule.policy.kind == CCNP else "cnp"
    field = peer.where.field.lower().removeprefix("spec.")  # `specs[1].egressdeny[0]` keeps its prefix
    parts = [kind, rule.policy.namespace, rule.policy.name, field]
    text = ".".join(part for part in parts if part)
    text = _UNSAFE.sub("-", text.replace("[", "-").replace("]", "")).strip(".-")
    if len(text) <= LABEL_VALUE_MAX - 6:  # leave room for a shard suffix in object names
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{text[: LABEL_VALUE_MAX - 17].rstrip('.-')}-{digest}"


def fqdn_denies(policy_set: PolicySet) -> list[FqdnDeny]:
    return list(_iter_denies(policy_set))


def _iter_denies(policy_set: PolicySet) -> Iterator[FqdnDeny]:
    for rule in policy_set.rules:
        for peer in rule.egress_deny:
            if peer.fqdns:
                yield FqdnDeny(deny_id(rule, peer), rule, peer, peer.fqdns)
