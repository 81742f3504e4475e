"""Replay recorded flows against two policy sets: what would a policy change do?

Each policy-relevant flow (a policy verdict, or a drop notification with a policy drop reason,
``flow.connection.is_policy_outcome``) is decided twice, by the CURRENT and by the PROPOSED set,
with one shared ``DnsKnowledge`` (learned from the DNS answers in the flows, in order) and the
same pod specs, and the two verdicts are compared. What Cilium actually did is not consulted:
both sides are hushflow's decisions, so a recording from a cluster whose policies differ from
CURRENT still shows only the difference the change makes.

A verdict's outcome is one of:
    allowed   an allow rule (or a ClusterNetworkPolicy Accept/Admin Allow entry) admits it
    none      no policy enforces that direction for the endpoint: allowed without policy
    denied    a deny rule, a ClusterNetworkPolicy Deny entry, or default-deny drops it
    unknown   a rule that may apply has a named port the pod specs do not resolve

Changes, most severe first (``Change``):
    newly-dropped  the proposal denies what is allowed (or none) now; also allowed/none -> unknown
    newly-allowed  the proposal allows (or none) what is denied now; also denied -> unknown
    tag-lost       denied both ways, but the planned drop (a ``log.value`` tag now) has no tag
    tag-changed    denied both ways, with other tags, other deciding rules, or deny <-> default-deny
    unchanged      everything else (allowed both ways, even by other rules)
"unknown" is never "allowed" nor "denied": leaving it, the change is judged by where the flow
goes (unknown -> denied is newly-dropped, unknown -> allowed newly-allowed); entering it, by
where it came from.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hushflow.engine.decision import Decision, PolicyEngine
from hushflow.engine.dns_knowledge import DnsKnowledge
from hushflow.engine.pods import PodIndex
from hushflow.flow.connection import Connection, connection_of, endpoint_labels, is_policy_outcome, workload_of
from hushflow.flow.dns import dns_answer_of
from hushflow.flow.times import FlowTimes
from hushflow.policy.fqdn import DEFAULT_CILIUM_VERSION
from hushflow.policy.model import PolicySet

_MEMO_LIMIT = 100_000


class Change(enum.StrEnum):
    """One flow's change, most severe first (the declaration order is the severity order); a str."""

    NEWLY_DROPPED = "newly-dropped"
    NEWLY_ALLOWED = "newly-allowed"
    TAG_LOST = "tag-lost"
    TAG_CHANGED = "tag-changed"
    UNCHANGED = "unchanged"

    @property
    def severity(self) -> int:
        """0 for the most severe (newly-dropped) .. 4 (unchanged)."""
        return _SEVERITY[self]


_SEVERITY = {change: index for index, change in enumerate(Change)}

#: The engine's outcomes as replay names them.
_OUTCOMES = {
    "allowed": "allowed",
    "not-enforced": "none",
    "denied": "denied",
    "default-deny": "denied",
    "unknown": "unknown",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one policy set decides for one flow."""

    outcome: str  # "allowed" | "denied" | "unknown" | "none"
    rules: tuple[str, ...]  # the deciding rules' policies, "Kind/namespace/name" ("Kind/name"), sorted
    tags: tuple[str, ...]  # their log.value tags (policy_log), sorted
    decision: str = ""  # the engine's own outcome: denied, default-deny, allowed, not-enforced, unknown
    tier: str = "NetworkPolicy"  # the tier that decided: "Admin", "NetworkPolicy", "Baseline"

    def describe(self) -> str:
        """``denied by CiliumNetworkPolicy/ns/x [tag]``, ``denied (default-deny)``, ``none``."""
        if self.decision == "default-deny":
            text = "denied (default-deny)"
        elif self.outcome == "none":
            text = "allowed (no policy)"
        else:
            text = self.outcome
        if self.rules:
            text += " by " + ", ".join(self.rules)
        if self.tags:
            text += " [" + ", ".join(self.tags) + "]"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "outcome": self.outcome,
            "rules": list(self.rules),
            "tags": list(self.tags),
            "tier": self.tier,
        }


def verdict_of(decision: Decision) -> Verdict:
    """The replay verdict of an engine decision: the rules Cilium would name (every deny; the
    most specific allows; the ClusterNetworkPolicy entry that decided), none for default-deny."""
    rules: tuple[Any, ...]  # Rule, or a ClusterNetworkPolicy entry (KcnpRule)
    if decision.tier_rule is not None:
        rules = (decision.tier_rule,)
    else:
        rules = tuple(match.rule for match in decision.responsible)
    names = tuple(sorted({str(rule.policy) for rule in rules}))
    tags = tuple(sorted({rule.log_value for rule in rules if rule.log_value}))
    return Verdict(_OUTCOMES[decision.outcome], names, tags, decision.outcome, decision.tier)


def _side(outcome: str) -> str:
    return "allowed" if outcome == "none" else outcome


def change_of(current: Verdict, proposed: Verdict) -> Change:
    """How a flow's verdict changes from `current` to `proposed` (see the module docstring)."""
    now, then = _side(current.outcome), _side(proposed.outcome)
    if now != then:
        if then == "denied":
            return Change.NEWLY_DROPPED
        if then == "allowed":
            return Change.NEWLY_ALLOWED
        return Change.NEWLY_ALLOWED if now == "denied" else Change.NEWLY_DROPPED  # into unknown
    if now != "denied":
        return Change.UNCHANGED
    if current.tags and not proposed.tags:
        return Change.TAG_LOST
    if current.tags != proposed.tags or current.rules != proposed.rules or current.decision != proposed.decision:
        return Change.TAG_CHANGED
    return Change.UNCHANGED


@dataclass(frozen=True, slots=True)
class FlowReplay:
    """One flow, decided by both sets."""

    change: Change
    current: Verdict
    proposed: Verdict
    workload: str  # "namespace/workload" of the endpoint the decision is for
    peer: str  # its DNS name when known, else "namespace/workload", else the IP (or a reserved label)
    port: str  # "443/TCP" ("" when none)
    direction: str  # "EGRESS" | "INGRESS"
    time: float = 0.0  # the flow's time, seconds since the epoch

    def as_dict(self) -> dict[str, Any]:
        return {
            "change": self.change.value,
            "current": self.current.as_dict(),
            "direction": self.direction,
            "peer": self.peer,
            "port": self.port,
            "proposed": self.proposed.as_dict(),
            "time": self.time,
            "workload": self.workload,
        }


def _reserved(endpoint: Mapping[str, Any]) -> str:
    labels = [str(label) for label in endpoint.get("labels") or () if str(label).startswith("reserved:")]
    return ",".join(sorted(labels))


def workload_name(endpoint: Mapping[str, Any], ip: str) -> str:
    """`namespace/workload` (its first Hubble workload, else its pod), else its reserved identity, else `ip`."""
    namespace = endpoint.get("namespace")
    if namespace:
        return f"{namespace}/{workload_of(endpoint) or '?'}"
    return _reserved(endpoint) or ip or "?"


class Replayer:
    """Decides each flow with both policy sets; feed it the events in order (it learns DNS)."""

    def __init__(
        self,
        current: PolicySet,
        proposed: PolicySet,
        *,
        cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION,
        pods: PodIndex | None = None,
        dns: DnsKnowledge | None = None,
    ) -> None:
        """The cluster options (`--cluster-name`, `--policy-default-local-cluster`) and the Cilium
        version shape the policy sets when they are built (``BuildOptions.for_cluster``): build
        both with the same options. `cilium_version` is kept for the callers that report it."""
        self.cilium_version = cilium_version
        self.dns = dns if dns is not None else DnsKnowledge()
        self.current = PolicyEngine(current, self.dns, pods)
        self.proposed = PolicyEngine(proposed, self.dns, pods)
        self._times = FlowTimes()
        self._verdicts: dict[int, tuple[Decision, Verdict]] = {}
        self._changes: dict[tuple[Verdict, Verdict], Change] = {}
        self.flows = 0  # events that carried a flow
        self.dns_answers = 0
        self.unknown_direction = 0  # policy outcomes without a traffic direction (skipped)

    def _verdict(self, decision: Decision) -> Verdict:
        memo = self._verdicts.get(id(decision))
        if memo is not None and memo[0] is decision:  # the memo holds the decision: ids stay unique
            return memo[1]
        if len(self._verdicts) > _MEMO_LIMIT:
            self._verdicts.clear()
        verdict = verdict_of(decision)
        self._verdicts[id(decision)] = (decision, verdict)
        return verdict

    def replay(self, event: dict[str, Any]) -> FlowReplay | None:
        """One canonical Hubble event (``FlowEvent.data``): its replay, or None for an event that
        is not a flow or is no policy outcome (a DNS answer in it is learned)."""
        flow = event.get("flow")
        if not isinstance(flow, dict):
            return None
        self.flows += 1
        l7 = flow.get("l7")
        if l7 is not None and "dns" in l7:
            answer = dns_answer_of(flow)
            if answer is not None and answer.ips:
                self.dns.learn_answer(answer, self._times.time_of(flow, event))
                self.dns_answers += 1
            return None
        if not is_policy_outcome(flow):
            return None
        now = self._times.time_of(flow, event)
        conn = connection_of(flow, now)
        if conn is None:
            self.unknown_direction += 1
            return None
        return self.replay_connection(conn)

    def replay_connection(self, conn: Connection) -> FlowReplay:
        """Decide one connection with both sets."""
        labels = endpoint_labels(conn.local)
        current = self._verdict(self.current.decide(conn, labels))
        proposed = self._verdict(self.proposed.decide(conn, labels))
        change = self._change(current, proposed)
        return FlowReplay(
            change, current, proposed,
            workload_name(conn.local, conn.local_ip),
            self.peer_of(conn),
            f"{conn.port}/{conn.protocol}" if conn.protocol else "",
            "EGRESS" if conn.direction == "egress" else "INGRESS",
            conn.time,
        )

    def change_given(self, conn: Connection, current: Decision) -> Change:
        """The change of a connection whose current decision the caller already has (the
        daemon's attribution decided it with the same set): only the proposed set decides, and
        nothing is named (`run --staged` counts changes only)."""
        proposed = self._verdict(self.proposed.decide(conn, endpoint_labels(conn.local)))
        return self._change(self._verdict(current), proposed)

    def _change(self, current: Verdict, proposed: Verdict) -> Change:
        """change_of, memoized on the pair (verdicts repeat: the memo is bounded)."""
        pair = (current, proposed)
        change = self._changes.get(pair)
        if change is None:
            if len(self._changes) > _MEMO_LIMIT:
                self._changes.clear()
            change = self._changes[pair] = change_of(current, proposed)
        return change

    def peer_of(self, conn: Connection) -> str:
        return peer_name(conn, self.dns)


def peer_name(conn: Connection, dns: DnsKnowledge) -> str:
    """The peer of `conn` as people name it: Hubble's DNS name, else one unexpired DNS answer
    `dns` holds for its IP, else its namespace/workload, else its IP (or its reserved identity)."""
    if conn.peer_names:
        return str(conn.peer_names[0]).rstrip(".")
    if conn.peer_ip:
        learned = dns.names_for_ip(conn.peer_ip, conn.time)
        if learned:
            return learned[0]
    if conn.peer.get("namespace"):
        return workload_name(conn.peer, conn.peer_ip)
    return conn.peer_ip or _reserved(conn.peer) or "?"


@dataclass(slots=True)
class ReplayGroup:
    """The flows that share a change, workload, peer, port and the rules of both verdicts."""

    change: Change
    workload: str
    peer: str
    port: str
    direction: str
    current: Verdict  # of the group's first flow
    proposed: Verdict
    flows: int = 0
    first: float = 0.0
    last: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "change": self.change.value,
            "current": self.current.as_dict(),
            "direction": self.direction,
            "first": self.first,
            "flows": self.flows,
            "last": self.last,
            "peer": self.peer,
            "port": self.port,
            "proposed": self.proposed.as_dict(),
            "workload": self.workload,
        }


GroupKey = tuple[Change, str, str, str, tuple[str, ...], tuple[str, ...]]


@dataclass(slots=True)
class ReplaySummary:
    """Counts by change, and the groups keyed by (change, workload, peer, port, current rules,
    proposed rules)."""

    counts: Counter[Change] = field(default_factory=Counter)
    groups: dict[GroupKey, ReplayGroup] = field(default_factory=dict)

    @property
    def flows(self) -> int:
        return sum(self.counts.values())

    @property
    def changed(self) -> int:
        return self.flows - self.counts[Change.UNCHANGED]

    def add(self, replay: FlowReplay) -> None:
        self.counts[replay.change] += 1
        key = (replay.change, replay.workload, replay.peer, replay.port, replay.current.rules, replay.proposed.rules)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = ReplayGroup(
                replay.change, replay.workload, replay.peer, replay.port, replay.direction,
                replay.current, replay.proposed, 0, replay.time, replay.time,
            )
        group.flows += 1
        group.first = min(group.first, replay.time)
        group.last = max(group.last, replay.time)

    def sorted_groups(self, *, include_unchanged: bool = True) -> list[ReplayGroup]:
        """Most severe change first, then most flows, then by workload, peer and port."""
        groups = (g for g in self.groups.values() if include_unchanged or g.change is not Change.UNCHANGED)
        return sorted(groups, key=lambda g: (g.change.severity, -g.flows, g.workload, g.peer, g.port,
                                             g.current.rules, g.proposed.rules))


def summarize(replays: Iterable[FlowReplay | None]) -> ReplaySummary:
    """The summary of `replays` (None entries, the events that are no flows, are skipped)."""
    summary = ReplaySummary()
    for replay in replays:
        if replay is not None:
            summary.add(replay)
    return summary
