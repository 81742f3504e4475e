"""The decision Cilium would reach for a connection, re-derived from the policies.

For the enforcing endpoint and direction (reference §A.6, §E.0):
1. a matching deny rule -> denied (POLICY_DENY, 181), whatever the allows say;
2. else matching allow rules -> allowed, the most specific first (L3-L4, then L3-only /
   L4-only, then all);
3. else, if any rule selecting the endpoint puts that direction in default-deny -> default-deny
   (POLICY_DENIED, 133), which no single rule is responsible for;
4. else the direction is not enforced: allowed without policy.

Named ports (`port: http-alt`) resolve from pod specs (`hushflow.engine.pods`, the rules from
Cilium). A rule whose peer matches but whose port matches only through a named port that cannot
be resolved (no pod specs, pod unknown, name not declared, pods disagreeing) may or may not
apply: such a deny makes the outcome "unknown" unless another deny matched, and such an allow
makes it "unknown" where the outcome would otherwise be default-deny. "unknown" is never
"allowed": those rules are kept apart (`Decision.unknown`), never among the responsible ones.

`fromRequires`/`toRequires` (Cilium <= 1.18) of every allow entry of the rules selecting the
endpoint are ANDed onto each allow entry's `from/toEndpoints` selectors, those of deny entries
onto the deny entries' (pkg/policy/rules.go, resolveL4IngressPolicy; api/ingress.go,
GetSourceEndpointSelectorsWithRequirements). They narrow nothing else and grant nothing.

Rules are indexed, not scanned: those whose endpointSelector pins a namespace sit in that
namespace's bucket, and the rules that apply to one set of endpoint labels are computed once
per label set (an identity) and cached. Decisions for the same (subject, peer, port, names)
are cached too, so the per-flow cost does not grow with the number of rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from hushflow.engine.dns_knowledge import DnsKnowledge
from hushflow.engine.peers import CompiledPeer, compile_peer, is_world_peer
from hushflow.engine.pods import NamedPortResolver, PodIndex
from hushflow.engine.tiers import ClusterTiers
from hushflow.flow.connection import Connection, Direction
from hushflow.policy.fqdn import dns_name
from hushflow.policy.labels import NAMESPACE_KEY, Requirement, endpoint_label_map
from hushflow.policy.model import PolicySet, Rule

Outcome = Literal["denied", "allowed", "default-deny", "not-enforced", "unknown"]
_NAMESPACE_REQ_KEY = f"k8s:{NAMESPACE_KEY}"
_CACHE_LIMIT = 200_000


@dataclass(frozen=True, slots=True)
class RuleMatch:
    rule: Rule
    peer: CompiledPeer
    why: tuple[str, ...] = ()

    @property
    def match_type(self) -> str:
        return self.peer.match_type


@dataclass(frozen=True, slots=True)
class Decision:
    direction: Direction
    outcome: Outcome
    denies: tuple[RuleMatch, ...] = ()
    allows: tuple[RuleMatch, ...] = ()  # every matching allow, most specific first
    default_deny_rules: tuple[Rule, ...] = ()
    subject_rules: int = 0  # rules selecting the enforcing endpoint in this direction
    subject_why: tuple[str, ...] = ()
    # Rules that would match only through a named port that could not be resolved; their `why`
    # says which named port and why not.
    unknown: tuple[RuleMatch, ...] = ()
    # ClusterNetworkPolicy tiers (hushflow.engine.tiers): the tier that decided ("NetworkPolicy"
    # is the CNP/CCNP/NetworkPolicy tier, the rules above), the ClusterNetworkPolicy entry that
    # decided in the Admin or Baseline tier, and the Pass entries that handed it on.
    tier: str = "NetworkPolicy"
    tier_rule: Any = None
    passed: tuple[Any, ...] = ()

    @property
    def responsible(self) -> tuple[RuleMatch, ...]:
        """The rules Cilium would name: every deny, or the allows of the most specific kind."""
        if self.outcome == "denied":
            return self.denies
        if self.outcome == "allowed" and self.allows:
            best = self.allows[0].peer.specificity
            return tuple(m for m in self.allows if m.peer.specificity == best)
        return ()


@dataclass(slots=True)
class _SubjectEntry:
    """The rules that apply to one endpoint label set in one direction."""

    allows: list[tuple[Rule, CompiledPeer]] = field(default_factory=list)
    denies: list[tuple[Rule, CompiledPeer]] = field(default_factory=list)
    default_deny_rules: list[Rule] = field(default_factory=list)
    rules: int = 0
    needs_names: bool = False
    needs_ip: bool = False
    needs_pods: bool = False  # a named port: the decision depends on the destination's pod
    allow_requires: tuple[Requirement, ...] = ()
    deny_requires: tuple[Requirement, ...] = ()


@dataclass(slots=True)
class _CompiledRule:
    rule: Rule
    ingress_allow: list[CompiledPeer]
    ingress_deny: list[CompiledPeer]
    egress_allow: list[CompiledPeer]
    egress_deny: list[CompiledPeer]


class PolicyEngine:
    """Decides connections against a policy set, with the DNS knowledge learned so far."""

    def __init__(
        self, policy_set: PolicySet, dns: DnsKnowledge | None = None, pods: PodIndex | None = None
    ) -> None:
        """`pods`: the pod specs named ports resolve from (None: none given, every named port is
        unresolved). The index may change afterwards (the pod watch): decisions follow it."""
        self.policy_set = policy_set
        self.dns = dns if dns is not None else DnsKnowledge()
        self.named_ports = NamedPortResolver(pods)
        self._by_namespace: dict[str, list[_CompiledRule]] = {}
        self._global: list[_CompiledRule] = []
        self._host: list[_CompiledRule] = []
        for rule in policy_set.rules:
            compiled = _CompiledRule(
                rule,
                [compile_peer(p, policy_set) for p in rule.ingress],
                [compile_peer(p, policy_set) for p in rule.ingress_deny],
                [compile_peer(p, policy_set) for p in rule.egress],
                [compile_peer(p, policy_set) for p in rule.egress_deny],
            )
            if rule.subject is None:
                self._host.append(compiled)
                continue
            namespace = _pinned_namespace(rule)
            if namespace is None:
                self._global.append(compiled)
            else:
                self._by_namespace.setdefault(namespace, []).append(compiled)
        self._subjects: dict[tuple[Direction, tuple[str, ...], tuple[str, ...]], _SubjectEntry] = {}
        self._decisions: dict[tuple[object, ...], Decision] = {}
        self._label_maps: dict[tuple[str, ...], dict[str, str]] = {}
        self.rule_count = len(policy_set.rules)
        self.tiers = ClusterTiers(policy_set.cluster_network_rules)
        self._tier_decisions: dict[tuple[object, ...], tuple[Decision, Decision]] = {}

    # -- subjects ------------------------------------------------------------------------------

    def _label_map(self, labels: tuple[str, ...]) -> dict[str, str]:
        cached = self._label_maps.get(labels)
        if cached is None:
            if len(self._label_maps) > _CACHE_LIMIT:
                self._label_maps.clear()
            cached = self._label_maps[labels] = endpoint_label_map(labels)
        return cached

    def _subject(self, conn: Connection, local_labels: tuple[str, ...]) -> _SubjectEntry:
        is_host = "reserved:host" in local_labels
        key = (conn.direction, local_labels, conn.node_labels if is_host else ())
        entry = self._subjects.get(key)
        if entry is not None:
            return entry
        if len(self._subjects) > _CACHE_LIMIT:
            self._subjects.clear()
        labels = self._label_map(local_labels)
        candidates = list(self._global)
        namespace = labels.get(_NAMESPACE_REQ_KEY)
        if namespace is not None:
            candidates.extend(self._by_namespace.get(namespace, ()))
        entry = _SubjectEntry()
        selected = [c for c in candidates if c.rule.subject is not None and c.rule.subject.matches(labels)]
        if is_host and self._host:
            node_map = endpoint_label_map(f"k8s:{label}" for label in conn.node_labels)
            selected.extend(c for c in self._host if c.rule.node_subject and c.rule.node_subject.matches(node_map))
        for compiled in selected:
            rule = compiled.rule
            allows, denies = (
                (compiled.egress_allow, compiled.egress_deny)
                if conn.direction == "egress"
                else (compiled.ingress_allow, compiled.ingress_deny)
            )
            default_deny = rule.default_deny_egress if conn.direction == "egress" else rule.default_deny_ingress
            if not (allows or denies or default_deny):
                continue
            entry.rules += 1
            entry.allows.extend((rule, peer) for peer in allows)
            entry.denies.extend((rule, peer) for peer in denies)
            if default_deny:
                entry.default_deny_rules.append(rule)
            for peer in allows + denies:
                entry.needs_names |= bool(peer.rule.fqdns)
                entry.needs_ip |= peer.cidrs is not None
                entry.needs_pods |= peer.named_ports
            entry.allow_requires += _requirements(allows)
            entry.deny_requires += _requirements(denies)
        self._subjects[key] = entry
        return entry

    # -- decisions -----------------------------------------------------------------------------

    def peer_names(self, conn: Connection) -> tuple[str, ...]:
        """Names the peer IP stands for: Hubble's own, plus every unexpired DNS answer seen."""
        learned = self.dns.names_for_ip(conn.peer_ip, conn.time) if conn.peer_ip else ()
        if not learned:
            return tuple(sorted({dns_name(n) for n in conn.peer_names}))
        return tuple(sorted({dns_name(n) for n in conn.peer_names} | set(learned)))

    def decide(self, conn: Connection, local_labels: tuple[str, ...], explain: bool = False) -> Decision:
        decision = self._decide_rules(conn, local_labels, explain)
        if not self.tiers:
            return decision
        names = self.peer_names(conn) if conn.peer_ip else ()
        if explain:
            return self._decide_tiers(conn, local_labels, decision, names)
        # Keyed by everything the tiers read (their networks and domainNames read the peer's
        # address and names), and by the CNP-tier decision, itself cached: the memo holds it, so
        # a recycled id() never matches.
        key = (id(decision), conn.direction, local_labels, conn.peer_labels, conn.peer_ip, conn.protocol, conn.port,
               names)
        memo = self._tier_decisions.get(key)
        if memo is not None and memo[0] is decision:
            return memo[1]
        if len(self._tier_decisions) > _CACHE_LIMIT:
            self._tier_decisions.clear()
        tiered = self._decide_tiers(conn, local_labels, decision, names)
        self._tier_decisions[key] = (decision, tiered)
        return tiered

    def _decide_tiers(
        self, conn: Connection, local_labels: tuple[str, ...], decision: Decision, names: tuple[str, ...]
    ) -> Decision:
        """The ClusterNetworkPolicy tiers around `decision` (Admin before it, Baseline after it
        where no CNP/CCNP/NetworkPolicy selects the endpoint)."""
        outcome = decision.outcome
        if outcome == "allowed":
            inner: str | None = "allow"
        elif outcome in ("denied", "default-deny", "unknown"):
            # "unknown" (a named port hushflow cannot resolve) is still a CNP-tier verdict: only
            # the Admin tier can decide before it, and Baseline is not consulted.
            inner = "deny"
        else:
            inner = None  # not enforced: no such policy selects the endpoint here
        tiered = self.tiers.decide(conn, self._label_map(local_labels), self._label_map(conn.peer_labels), names,
                                   inner)
        if tiered.rule is None:  # the CNP tier decided (an unknown stays unknown), or the default
            return replace(decision, passed=tiered.passed) if tiered.passed else decision
        return Decision(
            conn.direction, "allowed" if tiered.verdict == "allow" else "denied",
            subject_rules=decision.subject_rules, tier=tiered.tier, tier_rule=tiered.rule, passed=tiered.passed,
        )

    def _decide_rules(self, conn: Connection, local_labels: tuple[str, ...], explain: bool) -> Decision:
        entry = self._subject(conn, local_labels)
        if not entry.rules:
            return _NOT_ENFORCED[conn.direction]
        identity = int(conn.peer.get("identity", 0))
        world = is_world_peer(conn.peer_labels, identity)
        names = self.peer_names(conn) if entry.needs_names and world else ()
        key = None
        if not explain:
            key = (
                id(entry),
                conn.peer_labels,
                conn.peer_ip if world or entry.needs_ip else "",
                identity,
                conn.protocol,
                conn.port,
                names,
                conn.service,
                self._pod_key(conn) if entry.needs_pods else None,
            )
            cached = self._decisions.get(key)
            if cached is not None:
                return cached
        peer_map = self._label_map(conn.peer_labels)

        def names_fn() -> tuple[str, ...]:
            return names

        deny_unknown: list[RuleMatch] = []
        allow_unknown: list[RuleMatch] = []
        denies = tuple(
            self._matches(entry.denies, conn, peer_map, names_fn, explain, entry.deny_requires,
                          self.named_ports, deny_unknown)
        )
        allows = (
            tuple(self._matches(entry.allows, conn, peer_map, names_fn, explain, entry.allow_requires,
                                self.named_ports, allow_unknown))
            if not denies or explain
            else ()
        )
        allows = tuple(sorted(allows, key=lambda m: m.peer.specificity))
        if denies:
            outcome: Outcome = "denied"
        elif deny_unknown:
            outcome = "unknown"  # a deny that may apply: never "allowed"
        elif allows:
            outcome = "allowed"
        elif allow_unknown and entry.default_deny_rules:
            outcome = "unknown"  # allowed or default-denied, depending on the named port
        elif entry.default_deny_rules:
            outcome = "default-deny"
        else:
            outcome = "not-enforced"
        decision = Decision(
            conn.direction, outcome, denies, allows, tuple(entry.default_deny_rules), entry.rules,
            unknown=tuple(deny_unknown + allow_unknown),
        )
        if key is not None:
            if len(self._decisions) > _CACHE_LIMIT:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def _pod_key(self, conn: Connection) -> tuple[object, ...]:
        """What a named port's answer depends on: the destination's pod, and the index's state."""
        endpoint, ip = (conn.local, conn.local_ip) if conn.direction == "ingress" else (conn.peer, conn.peer_ip)
        return endpoint.get("namespace"), endpoint.get("pod_name"), ip, self.named_ports.version

    @staticmethod
    def _matches(
        candidates: list[tuple[Rule, CompiledPeer]],
        conn: Connection,
        peer_map: Mapping[str, str],
        names_fn: object,
        explain: bool,
        requires: tuple[Requirement, ...] = (),
        named: NamedPortResolver | None = None,
        unknown: list[RuleMatch] | None = None,
    ) -> list[RuleMatch]:
        """The candidates that match; those that would match only through an unresolved named
        port go to `unknown`, with why."""
        out = []
        for rule, peer in candidates:
            why: list[str] | None = [] if explain else None
            unresolved: list[str] = []
            if peer.port_matches(conn, why, named, unresolved):
                if peer.peer_matches(conn, peer_map, names_fn, why, requires):  # type: ignore[arg-type]
                    out.append(RuleMatch(rule, peer, tuple(why or ())))
            elif unresolved and unknown is not None:
                peer_why: list[str] | None = [] if explain else None
                if peer.peer_matches(conn, peer_map, names_fn, peer_why, requires):  # type: ignore[arg-type]
                    unknown.append(RuleMatch(rule, peer, (*(peer_why or ()), *unresolved)))
        return out


#: One decision per direction for endpoints no rule selects (frozen, so shared; and one object,
#: so the tier memo can key on it).
_NOT_ENFORCED = {direction: Decision(direction, "not-enforced") for direction in ("ingress", "egress")}


def _requirements(peers: list[CompiledPeer]) -> tuple[Requirement, ...]:
    """Every requirement the from/toRequires selectors of these entries write."""
    return tuple(
        requirement
        for peer in peers
        for selector in peer.rule.requires or ()
        for requirement in selector.requirements
    )


def _pinned_namespace(rule: Rule) -> str | None:
    assert rule.subject is not None
    for requirement in rule.subject.requirements:
        if requirement.key == _NAMESPACE_REQ_KEY and requirement.operator == "In" and len(requirement.values) == 1:
            return next(iter(requirement.values))
    return None
