"""Keep FQDN denies filled: which IPs each deny must hold, learned as names resolve.

IPs come from (1) hushflow's own resolution of every `matchName` (done before any pod asks)
and (2) DNS answers seen in Hubble flows whose name a deny selects (policy semantics: `*`
within one label; `**.` from Cilium 1.19), for a client endpoint the deny's rule selects.

Shared IPs: an IP that also serves a name a `toFQDNs` *allow* selects, for endpoints the deny
may also apply to (CDNs), cannot be split at L3. With `shared_ip="skip"` (the default) such an
IP is kept out of the deny and reported; with `"deny"` it is denied anyway, breaking the
allowed name, and still reported.

Refused: addresses no deny learned from DNS may hold (`hushflow.enforce.protect`: loopback,
link-local, the answering DNS server, the cluster's ranges, ...) are counted per reason in
`LearnerStats.refused` and noted once per reason, never stored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from hushflow.enforce.denies import FqdnDeny
from hushflow.enforce.protect import ProtectedAddresses
from hushflow.enforce.state import DenyState
from hushflow.flow.connection import endpoint_labels
from hushflow.flow.dns import DnsAnswer, clamp_ttl, valid_ips
from hushflow.policy.fqdn import dns_name
from hushflow.policy.labels import Selector, endpoint_label_map
from hushflow.policy.model import PeerRule, PolicySet, Rule

SharedIpMode = Literal["skip", "deny"]
DEFAULT_MAX_TOTAL = 10_000  # all denies together; Cilium's policy map holds 16,384 entries by default


@dataclass(frozen=True, slots=True)
class Change:
    deny_id: str
    ip: str
    added: bool  # False: removed (shared with an allowed name)
    name: str
    source: str  # resolver | observed | shared
    ttl: float = 0.0
    at: float = 0.0  # flow (or resolution) time the IP was learned


@dataclass(slots=True)
class LearnerStats:
    answers: int = 0
    added: int = 0
    shared_skipped: int = 0
    guard_skipped: int = 0
    refreshed: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # reason -> addresses refused
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> malformed values left out
    notes: list[str] = field(default_factory=list)


def may_overlap(a: Selector | None, b: Selector | None) -> bool:
    """False only when no endpoint can be selected by both (a cheap, safe test)."""
    if a is None or b is None:
        return a is b
    if a.namespace is not None and b.namespace is not None and a.namespace != b.namespace:
        return False
    for left in a.requirements:
        for right in b.requirements:
            if left.key != right.key:
                continue
            if left.operator == "In" and right.operator == "In" and not (left.values & right.values):
                return False
            if {left.operator, right.operator} == {"Exists", "DoesNotExist"}:
                return False
            if left.operator == "In" and right.operator == "DoesNotExist":
                return False
            if left.operator == "DoesNotExist" and right.operator == "In":
                return False
    return True


class DenyLearner:
    def __init__(
        self,
        policy_set: PolicySet,
        denies: Sequence[FqdnDeny],
        state: DenyState,
        *,
        shared_ip: SharedIpMode = "skip",
        max_total: int = DEFAULT_MAX_TOTAL,
        protected: ProtectedAddresses | None = None,
    ) -> None:
        self.denies = list(denies)
        self.protected = protected or ProtectedAddresses()
        self.state = state
        self.shared_ip = shared_ip
        self.max_total = max_total
        self.stats = LearnerStats()
        self._allows: list[tuple[Rule, PeerRule]] = [
            (rule, peer) for rule in policy_set.rules for peer in rule.egress if peer.fqdns
        ]
        # allowed IP -> {(allowed name, index of the allow rule)}
        self._allowed_ips: dict[str, set[tuple[str, int]]] = {}
        self._label_maps: dict[tuple[str, ...], dict[str, str]] = {}
        self._by_name: dict[str, tuple[tuple[int, ...], tuple[FqdnDeny, ...]]] = {}
        self._by_name_and_client: dict[tuple[str, tuple[str, ...]], tuple[tuple[int, ...], tuple[FqdnDeny, ...]]] = {}

    # -- inputs --------------------------------------------------------------------------------

    def learn_resolved(self, name: str, ips: Sequence[str], ttl: float, now: float) -> list[Change]:
        """hushflow's own resolution of a deny's matchName (applies whatever endpoint asks).
        The resolver's answer is as untrusted as any: validated like an answer in a flow."""
        name = dns_name(name)
        valid, rejected = valid_ips(ips)
        self._rejected(rejected, name)
        ttl = float(clamp_ttl(ttl)[0])
        changes: list[Change] = []
        for deny in self.denies:
            if name in {dns_name(n) for n in deny.match_names}:
                for ip in valid:
                    changes.extend(self._add(deny, ip, name, ttl, now, "resolver"))
        return changes

    def learn_answer(self, answer: DnsAnswer, now: float) -> list[Change]:
        """A DNS answer seen in a flow: record allowed IPs, and fill the denies that select its name."""
        self.stats.answers += 1
        self._rejected(answer.rejected, answer.name)
        name, ips, ttl = answer.name, answer.ips, float(answer.ttl)
        allow_hits, deny_hits = self._applying(name, endpoint_labels(answer.client))
        changes: list[Change] = []
        for index in allow_hits:
            for ip in ips:
                self._allowed_ips.setdefault(ip, set()).add((name, index))
                changes.extend(self._unshare(ip))
        for deny in deny_hits:
            for ip in ips:
                changes.extend(self._add(deny, ip, name, ttl, now, "observed", answer.server_ip))
        return changes

    def repair_state(self) -> list[str]:
        """What the state held that it may not: entries loading dropped (no address, malformed),
        and addresses no deny may hold (learned by an older version, or before --protect-cidr
        named them), which are taken out now. One line each, for the caller to report."""
        lines = [f"state repaired: {line}" for line in self.state.repaired]
        for deny_id, records in self.state.denies.items():
            for ip in list(records):
                reason = self.protected.refusal(ip)
                if reason is not None:
                    del records[ip]
                    lines.append(f"state repaired: {deny_id}: {ip} ({reason}) is never denied from DNS, removed")
        return lines

    # -- internals -----------------------------------------------------------------------------

    def _selecting(self, name: str) -> tuple[tuple[int, ...], tuple[FqdnDeny, ...]]:
        """The allow rules (by index) and denies whose FQDN selectors select `name` (cached:
        the same names are answered again and again)."""
        hit = self._by_name.get(name)
        if hit is None:
            if len(self._by_name) > 100_000:
                self._by_name.clear()
            allows = tuple(
                index
                for index, (_rule, peer) in enumerate(self._allows)
                if any(selector.matches(name) for selector in peer.fqdns or ())
            )
            hit = self._by_name[name] = (allows, tuple(deny for deny in self.denies if deny.matches(name)))
        return hit

    def _applying(self, name: str, client: tuple[str, ...]) -> tuple[tuple[int, ...], tuple[FqdnDeny, ...]]:
        """The allow rules (by index) and denies that select `name` *and* the asking endpoint
        (cached per name and label set: DNS answers repeat)."""
        key = (name, client)
        hit = self._by_name_and_client.get(key)
        if hit is None:
            if len(self._by_name_and_client) > 100_000:
                self._by_name_and_client.clear()
            labels = self._labels(client)
            allow_hits, deny_hits = self._selecting(name)
            hit = self._by_name_and_client[key] = (
                tuple(i for i in allow_hits if (s := self._allows[i][0].subject) is not None and s.matches(labels)),
                tuple(d for d in deny_hits if d.rule.subject is None or d.rule.subject.matches(labels)),
            )
        return hit

    def _labels(self, labels: tuple[str, ...]) -> dict[str, str]:
        cached = self._label_maps.get(labels)
        if cached is None:
            if len(self._label_maps) > 100_000:
                self._label_maps.clear()
            cached = self._label_maps[labels] = endpoint_label_map(labels)
        return cached

    def _sharing(self, deny: FqdnDeny, ip: str) -> list[str]:
        names = set()
        for name, index in self._allowed_ips.get(ip, ()):
            rule, _peer = self._allows[index]
            if may_overlap(rule.subject, deny.rule.subject) and not deny.matches(name):
                names.add(name)
        return sorted(names)

    def _rejected(self, rejected: Iterable[tuple[str, str]], name: str) -> None:
        for reason, value in rejected:
            self.stats.rejected[reason] += 1
            if self.stats.rejected[reason] == 1:
                self.stats.notes.append(f"an answer for {name} had a value hushflow left out ({reason}: {value})")

    def _add(self, deny: FqdnDeny, ip: str, name: str, ttl: float, now: float, source: str,
             server_ip: str = "") -> list[Change]:
        refusal = self.protected.refusal(ip, server_ip)
        if refusal is not None:
            self.stats.refused[refusal] += 1
            if self.stats.refused[refusal] == 1:
                self.stats.notes.append(
                    f"refused to deny {ip} for {name} ({deny.describe()}): a {refusal} address is never denied "
                    "from DNS (see --protect-cidr)"
                )
            return []
        shared = self._sharing(deny, ip)
        if shared:
            self.state.note_shared(deny.id, ip, shared)
            if self.shared_ip == "skip":
                self.stats.shared_skipped += 1
                return []
        known = ip in self.state.denies.get(deny.id, {})
        if not known and self.state.total() >= self.max_total:
            self.stats.guard_skipped += 1
            if self.stats.guard_skipped == 1:
                self.stats.notes.append(
                    f"the global limit of {self.max_total} denied IPs is reached: new IPs are not denied "
                    "(raise --max-total, or narrow the FQDN denies)"
                )
            return []
        if self.state.add(deny.id, ip, name, ttl, now, source):
            self.stats.added += 1
            return [Change(deny.id, ip, True, name, source, ttl, now)]
        self.stats.refreshed += 1
        return []

    def _unshare(self, ip: str) -> list[Change]:
        """An allowed name now shares `ip`: in skip mode take it out of the denies that hold it."""
        changes = []
        for deny in self.denies:
            records = self.state.denies.get(deny.id)
            if not records or ip not in records:
                continue
            shared = self._sharing(deny, ip)
            if not shared:
                continue
            self.state.note_shared(deny.id, ip, shared)
            if self.shared_ip == "skip":
                record = records.pop(ip)
                self.stats.shared_skipped += 1
                changes.append(Change(deny.id, ip, False, sorted(record.names)[0], "shared"))
        return changes
