"""Keep FQDN denies filled: which IPs each deny must hold, learned as names resolve.

IPs come from (1) hushflow's own resolution of every `matchName` (done before any pod asks)
and (2) DNS answers seen in Hubble flows whose name a deny selects (policy semantics: `*`
within one label; `**.` from Cilium 1.19), for a client endpoint the deny's rule selects.

Shared IPs: an IP that also serves a name a `toFQDNs` *allow* selects, for endpoints the deny
may also apply to (CDNs), cannot be split at L3. With `shared_ip="skip"` (the default) such an
IP is kept out of the deny and reported; with `"deny"` it is denied anyway, breaking the
allowed name, and still reported.

The guard remembers allowed IPs in the state (`DenyState.allowed`, snapshot and journal), so a
restart does not forget them, and it also protects the addresses of `toCIDR`/`toCIDRSet` allows
(except their `except` ranges) for endpoints the deny may apply to: a hostile answer that names
a partner's allowed address for a denied name does not turn the deny against the partner. A
catch-all CIDR allow (shorter than /8 for IPv4, /32 for IPv6: "the internet") protects nothing,
as carving denies out of it is what a deny is for. `cidrGroupRef` allows are not known to
hushflow (the groups live in the cluster) and protect nothing.

Bounds. Per deny and name at most `max_per_name` IPs (default 1000, Cilium's
``--tofqdns-endpoint-max-ip-per-hostname``): a newer IP evicts the least recently seen one, so
one name cannot fill the global limit. All denies together hold at most `max_total` IPs; past
it a newly learned IP is *not denied*, and that is never silent: the deny is recorded as
incomplete (`LearnerStats.incomplete`: deny id -> IP -> until when it would have been denied),
which the daemon exports and alerts on, and a note names the deny and its policy file:line.
What stays denied then: every IP already held; what is not: the IPs learned past the limit.

Refused: addresses no deny learned from DNS may hold (`hushflow.enforce.protect`: loopback,
link-local, the answering DNS server, the cluster's ranges, ...) are counted per reason in
`LearnerStats.refused` and noted once per reason, never stored.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from hushflow.enforce.denies import FqdnDeny
from hushflow.enforce.denies import deny_id as rule_id
from hushflow.enforce.protect import ProtectedAddresses
from hushflow.enforce.state import DenyState
from hushflow.flow.connection import endpoint_labels
from hushflow.flow.dns import DnsAnswer, clamp_ttl, valid_ips
from hushflow.policy.fqdn import dns_name
from hushflow.policy.labels import endpoint_label_map, may_overlap
from hushflow.policy.model import CIDRPeer, PeerRule, PolicySet, Rule

SharedIpMode = Literal["skip", "deny"]
DEFAULT_MAX_TOTAL = 10_000  # all denies together; Cilium's policy map holds 16,384 entries by default
DEFAULT_MAX_PER_NAME = 1000  # per deny and name, like Cilium's --tofqdns-endpoint-max-ip-per-hostname
#: CIDR allows at least this specific protect their addresses from DNS-learned denies.
_MIN_PROTECTING_PREFIX = {4: 8, 6: 32}
#: IPs remembered per deny as not denied for the global limit (beyond it they are only counted).
_MAX_INCOMPLETE_PER_DENY = 10_000


@dataclass(frozen=True, slots=True)
class Change:
    deny_id: str
    ip: str
    added: bool  # False: removed (shared with an allowed name)
    name: str
    source: str  # resolver | observed | shared | evicted
    ttl: float = 0.0
    at: float = 0.0  # flow (or resolution) time the IP was learned


@dataclass(slots=True)
class LearnerStats:
    answers: int = 0
    added: int = 0
    shared_skipped: int = 0
    guard_skipped: int = 0
    refreshed: int = 0
    evicted: int = 0  # IPs taken out for the bound per name
    # deny id -> IP -> until when it would be denied: learned past the global limit, NOT denied
    incomplete: dict[str, dict[str, float]] = field(default_factory=dict)
    not_denied: int = 0  # IPs not denied for the global limit, in all (also past the bound above)
    refused: Counter[str] = field(default_factory=Counter)  # reason -> addresses refused
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> malformed values left out
    notes: list[str] = field(default_factory=list)

class DenyLearner:
    def __init__(
        self,
        policy_set: PolicySet,
        denies: Sequence[FqdnDeny],
        state: DenyState,
        *,
        shared_ip: SharedIpMode = "skip",
        max_total: int = DEFAULT_MAX_TOTAL,
        max_per_name: int = DEFAULT_MAX_PER_NAME,
        protected: ProtectedAddresses | None = None,
    ) -> None:
        self.denies = list(denies)
        self.protected = protected or ProtectedAddresses()
        self.state = state
        self.shared_ip = shared_ip
        self.max_total = max_total
        self.max_per_name = max_per_name
        self.stats = LearnerStats()
        self._allows: list[tuple[Rule, PeerRule]] = [
            (rule, peer) for rule in policy_set.rules for peer in rule.egress if peer.fqdns
        ]
        # The allow rules' stable ids (as deny ids are made): the state's allowed IPs refer to them.
        self._allow_ids = [rule_id(rule, peer) for rule, peer in self._allows]
        self._allow_index = {allow_id: index for index, allow_id in enumerate(self._allow_ids)}
        state.keep_only_allows(self._allow_ids)
        self._cidr_allows: list[tuple[Rule, CIDRPeer, str]] = [
            (rule, cidr, f"{cidr.cidr} allowed by {cidr.where.field} ({cidr.where.file}:{cidr.where.line})")
            for rule in policy_set.rules
            for peer in rule.egress
            for cidr in peer.cidrs or ()
            if cidr.cidr is not None and cidr.cidr.prefixlen >= _MIN_PROTECTING_PREFIX[cidr.cidr.version]
        ]
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

    def learn_answer(self, answer: DnsAnswer, now: float, *, any_client: bool = False) -> list[Change]:
        """A DNS answer seen in a flow: record allowed IPs, and fill the denies that select its name.

        `any_client`: the endpoint that asked is not known (a dnstap answer to an address no flow
        or pod names): every deny and allow selecting the name applies, as the endpoint may be
        any of theirs; recording the allows too keeps the shared-IP guard on the safe side."""
        self.stats.answers += 1
        self._rejected(answer.rejected, answer.name)
        name, ips, ttl = answer.name, answer.ips, float(answer.ttl)
        if any_client:
            allow_hits, deny_hits = self._selecting(name)
        else:
            allow_hits, deny_hits = self._applying(name, endpoint_labels(answer.client))
        changes: list[Change] = []
        for index in allow_hits:
            for ip in ips:
                if self.state.allow(self._allow_ids[index], ip, name, ttl, now):
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
                    self.state.remove(deny_id, ip)
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
        """What an IP serves besides the deny: allowed names (for endpoints the deny may also
        select) that resolved to it, and CIDR allows that contain it."""
        names: set[str] = set()
        for allow_id, allowed_names in self.state.allowed.get(ip, {}).items():
            index = self._allow_index.get(allow_id)
            if index is None:
                continue
            rule, _peer = self._allows[index]
            if may_overlap(rule.subject, deny.rule.subject):
                names.update(name for name in allowed_names if not deny.matches(name))
        if self._cidr_allows:
            address = ipaddress.ip_address(ip)
            for rule, cidr, label in self._cidr_allows:
                network = cidr.cidr
                if (
                    network is not None and address.version == network.version and address in network
                    and not any(address.version == e.version and address in e for e in cidr.excepts)
                    and may_overlap(rule.subject, deny.rule.subject)
                ):
                    names.add(label)
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
            self._not_denied(deny, ip, name, now + max(ttl, self.state.min_ttl) + self.state.grace)
            return []
        incomplete = self.stats.incomplete.get(deny.id)
        if incomplete is not None and incomplete.pop(ip, None) is not None and not incomplete:
            del self.stats.incomplete[deny.id]
        if not self.state.add(deny.id, ip, name, ttl, now, source):
            self.stats.refreshed += 1
            return []
        self.stats.added += 1
        changes = [Change(deny.id, ip, True, name, source, ttl, now)]
        for evicted in self.state.evict_over(deny.id, name, self.max_per_name):
            self.stats.evicted += 1
            if self.stats.evicted == 1:
                self.stats.notes.append(
                    f"{name} resolved to more than {self.max_per_name} IPs for {deny.describe()}: the least "
                    "recently seen are no longer denied (--max-ips-per-name; counted in "
                    "hushflow_deny_ips_evicted_total)"
                )
            changes.append(Change(deny.id, evicted, False, name, "evicted"))
        return changes

    def _not_denied(self, deny: FqdnDeny, ip: str, name: str, until: float) -> None:
        """The global limit is reached: `ip` is NOT denied. Remember it (the deny is incomplete
        until it expires or fits again) and say so, once per deny each time it becomes incomplete."""
        self.stats.guard_skipped += 1
        self.stats.not_denied += 1
        missing = self.stats.incomplete.get(deny.id)
        if missing is None:
            missing = self.stats.incomplete[deny.id] = {}
            self.stats.notes.append(
                f"the global limit of {self.max_total} denied IPs is reached: {deny.describe()} is NO LONGER "
                f"COMPLETE, {ip} ({name}) and further new IPs of its names are not denied (raise --max-total, "
                "or narrow the FQDN denies; see hushflow_deny_incomplete_ips)"
            )
        if ip in missing or len(missing) < _MAX_INCOMPLETE_PER_DENY:
            missing[ip] = max(missing.get(ip, 0.0), until)

    def expire_incomplete(self, now: float) -> None:
        """Forget IPs not denied for the global limit whose time ran out (the name was not seen
        again): the deny is complete again once none is left."""
        for deny_key in list(self.stats.incomplete):
            missing = self.stats.incomplete[deny_key]
            for ip in [ip for ip, until in missing.items() if until < now]:
                del missing[ip]
            if not missing:
                del self.stats.incomplete[deny_key]

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
                record = self.state.remove(deny.id, ip)
                assert record is not None
                self.stats.shared_skipped += 1
                changes.append(Change(deny.id, ip, False, sorted(record.names)[0], "shared"))
        return changes
