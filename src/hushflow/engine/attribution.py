"""Attribute each policy outcome to its rules, and complete what Cilium left empty.

Which flows: policy-verdict events (type 5: FORWARDED, REDIRECTED, DROPPED, AUDIT) and drop
notifications (type 1) with a policy drop reason (POLICY_DENY 181, POLICY_DENIED 133).

What Cilium writes itself (pkg/policy/correlation, type-5 events only, never drop notifications):
- since 1.16: FORWARDED/REDIRECTED get `<dir>_allowed_by`, and DROPPED with POLICY_DENY
  gets `<dir>_denied_by`, with `policy_log` from those rules' `log.value`s. 1.18 writes an
  empty string for a rule without log (`policy_log: [""]`); later releases leave it out.
- up to 1.19: AUDIT and POLICY_DENIED drops get nothing (cilium#42044);
- 1.20 (cilium#45373): AUDIT and POLICY_DENIED verdicts are correlated too (the default-deny
  half is disputed, cilium PR #47589).

hushflow derives the responsible rules (`<dir>_allowed_by` from the most specific matching
allows; `<dir>_denied_by` from the deny rules; `policy_log` their sorted, de-duplicated tags)
and applies them field by field, so one field Cilium set never stops another being completed:
- `<dir>_*_by`: Cilium's list stands when one of its entries has a name. A list that is absent,
  empty or holds only nameless entries is completed: Cilium's entries are kept, hushflow's follow.
- `policy_log`: Cilium's list stands when it holds a tag (a non-empty string). A list that is
  absent or holds only empty strings is completed: Cilium's empty strings are kept, hushflow's
  tags follow. Empty strings are never tags (never "expected").
- fields of the other side (`*_allowed_by` on a drop or audit, `*_denied_by` on an allowed
  verdict) are kept as they are, never used, and counted.
- with `cilium_version` 1.20 or later, type-5 AUDIT verdicts and DROPPED ones with a policy
  drop reason are checked, not filled: Cilium's (possibly absent) fields stand and every
  difference is counted. Drop notifications are still filled, and so are the verdicts Cilium
  cannot look up (port or ICMP type 0, VRRP, IGMP, no L4: ``_cilium_can_correlate``).
Default-deny drops (POLICY_DENIED, or AUDIT with no deny) have no single responsible rule:
by default nothing is filled; with `attribute_default_deny=True`, `<dir>_denied_by` names the
policies that put the endpoint in default-deny (when Cilium named none), never `policy_log`.

Every disagreement is counted in `AttributionStats.disagreements` (the daemon's
`hushflow_attribution_disagreements_total{kind}`), by kind:
    <observed>/<decision>          the verdict itself (e.g. denied/allowed)
    <field> differs                Cilium's named entries name other policies
    <field> completed              Cilium's entries had no name; hushflow added its own
    <field> missing                1.20 check: Cilium left the field empty, the rules name policies
    policy_log completed           Cilium's policy_log held only "", the rules have tags
    policy_log missing             Cilium's tags lack one of the rules' tags (not filled)
    policy_log unknown             Cilium's tags include one no responsible rule carries
    <other side> on <verdict>      e.g. `egress_allowed_by on a drop`
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hushflow.engine.decision import Decision, PolicyEngine, RuleMatch
from hushflow.engine.dns_knowledge import DnsKnowledge
from hushflow.engine.pods import PodIndex
from hushflow.flow.connection import (
    Connection,
    connection_of,
    endpoint_labels,
    is_policy_outcome,
    policy_drop_reason,
)
from hushflow.flow.dns import DnsAnswer, dns_answer_of
from hushflow.flow.times import FlowTimes
from hushflow.policy.fqdn import DEFAULT_CILIUM_VERSION
from hushflow.policy.model import CCNP, PolicyRef, PolicySet, Rule

ExpectedPredicate = Callable[[dict[str, Any]], bool]

POLICY_VERDICT = 5  # the only event type Cilium correlates
CILIUM_CORRELATES_DROPS = (1, 20)  # cilium#45373: drops and audits get Cilium's own fields
_VERDICT_WORDS = {"FORWARDED": "an allowed verdict", "REDIRECTED": "an allowed verdict", "AUDIT": "an audit"}


def _event_type(flow: Mapping[str, Any]) -> Any:
    event_type = flow.get("event_type")
    return event_type.get("type") if isinstance(event_type, dict) else None


def _cilium_can_correlate(conn: Connection) -> bool:
    """Whether Cilium's correlation can look this flow up at all: it gives up on a flow key with
    port (or ICMP type) 0 or no protocol it knows, so a VRRP/IGMP flow, an ICMP echo reply
    (type 0) or a flow without L4 never carries Cilium's fields, whatever the version
    (pkg/policy/correlation/correlation.go, extractFlowKey and the `dport == 0 || proto == 0`
    early return). hushflow fills those instead of expecting Cilium's."""
    return conn.protocol in ("TCP", "UDP", "SCTP", "ICMPv4", "ICMPv6") and conn.port != 0


def _more(note: str, text: str) -> str:
    return f"{note}; {text}" if note else text


@dataclass(frozen=True, slots=True)
class Attribution:
    """hushflow's findings for one flow (kept apart from the Hubble flow itself)."""

    decision: Decision
    observed: str  # allowed, denied, default-deny, audit
    agrees: bool
    responsible: tuple[Rule, ...]
    policy_log: tuple[str, ...]
    expected: bool | None  # for DROPPED/AUDIT flows: planned (a known tag) or not
    filled: tuple[str, ...]  # the flow fields hushflow filled
    note: str = ""
    connection: Connection | None = None  # the connection decided on (so callers need not rebuild it)
    disagreements: tuple[str, ...] = ()  # this flow's kinds of disagreement (AttributionStats.disagreements)

    def findings(self) -> dict[str, Any]:
        """The documented `hushflow` object written next to `flow` in hushflow's own outputs."""
        out: dict[str, Any] = {
            "decision": self.decision.outcome,
            "observed": self.observed,
            "agrees": self.agrees,
        }
        if self.expected is not None:
            out["expected"] = self.expected
        if self.responsible:
            out["rules"] = [rule_reference(rule) for rule in self.responsible]
        if self.decision.outcome == "default-deny":
            out["default_deny_by"] = sorted({str(r.policy) for r in self.decision.default_deny_rules})
        if self.policy_log:
            out["policy_log"] = list(self.policy_log)
        if self.filled:
            out["filled"] = list(self.filled)
        if self.note:
            out["note"] = self.note
        return out


def rule_reference(rule: Rule) -> dict[str, Any]:
    ref = {
        "policy": f"{rule.policy.namespace}/{rule.policy.name}" if rule.policy.namespace else rule.policy.name,
        "kind": rule.policy.kind,
        "rule": rule.where.field,
        "file": rule.where.file,
        "line": rule.where.line,
    }
    if rule.log_value:
        ref["log"] = rule.log_value
    return ref


def policy_entry(ref: PolicyRef, rules: Iterable[Rule]) -> dict[str, Any]:
    """A Hubble `Policy` message (proto field order: name, namespace, labels, revision, kind)."""
    labels: set[str] = set()
    for rule in rules:
        labels.update(rule.cilium_labels())
    entry: dict[str, Any] = {"name": ref.name}
    if ref.namespace and ref.kind != CCNP:
        entry["namespace"] = ref.namespace
    entry["labels"] = sorted(labels)
    entry["kind"] = ref.kind
    return entry


def _policies(rules: Iterable[Rule]) -> list[dict[str, Any]]:
    by_policy: dict[PolicyRef, list[Rule]] = {}
    for rule in rules:
        by_policy.setdefault(rule.policy, []).append(rule)
    return [policy_entry(ref, by_policy[ref]) for ref in sorted(by_policy, key=lambda r: (r.namespace, r.name))]


def _names(entries: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    return {(e.get("namespace", ""), e.get("name", "")) for e in entries}


@dataclass(slots=True)
class AttributionStats:
    flows: int = 0
    attributed: int = 0
    filled: Counter[str] = field(default_factory=Counter)
    disagreements: Counter[str] = field(default_factory=Counter)
    dns_answers: int = 0
    unknown_direction: int = 0


class Attributor:
    """Learns DNS answers and attributes policy outcomes, flow after flow, in one direction."""

    def __init__(
        self,
        policy_set: PolicySet,
        *,
        dns: DnsKnowledge | None = None,
        expected_logs: Iterable[str] | None = None,
        expected_predicate: ExpectedPredicate | None = None,
        attribute_default_deny: bool = False,
        cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION,
        pods: PodIndex | None = None,
    ) -> None:
        """`pods`: the pod specs named ports resolve from (`--pods`, the pod watch of `run`)."""
        self.cilium_version = cilium_version
        self.engine = PolicyEngine(policy_set, dns, pods)
        self.dns = self.engine.dns
        if expected_logs is None:
            expected_logs = {
                rule.log_value
                for rule in policy_set.rules
                if rule.log_value and (rule.egress_deny or rule.ingress_deny)
            }
        self.expected_logs = frozenset(expected_logs)
        self.expected_predicate = expected_predicate
        self.attribute_default_deny = attribute_default_deny
        self.stats = AttributionStats()
        self._times = FlowTimes()
        # The Policy entries of a set of rules never change: build them once per set.
        self._entries: dict[tuple[Rule, ...], list[dict[str, Any]]] = {}
        self._derived_memo: dict[tuple[int, str], tuple[Decision, Any]] = {}

    def _policy_entries(self, rules: tuple[Rule, ...]) -> list[dict[str, Any]]:
        entries = self._entries.get(rules)
        if entries is None:
            if len(self._entries) > 10_000:
                self._entries.clear()
            entries = self._entries[rules] = _policies(rules)
        return entries

    def _derived(
        self, decision: Decision, observed: str
    ) -> tuple[tuple[Rule, ...], tuple[str, ...], list[dict[str, Any]], set[tuple[str, str]]]:
        """What a decision makes of the flows it decides (the rules responsible for what Cilium
        did, their log values and Policy entries), worked out once per decision and observed
        outcome: decisions are cached, and repeat flow after flow. The memo holds the decision
        itself, so a recycled id() never matches."""
        key = (id(decision), observed)
        memo = self._derived_memo.get(key)
        if memo is not None and memo[0] is decision:
            return memo[1]
        if len(self._derived_memo) > 10_000:
            self._derived_memo.clear()
        if decision.tier_rule is not None:
            # Decided in a ClusterNetworkPolicy tier (engine.tiers): that entry is responsible.
            named_for = {"allowed": "allowed", "audit": "denied", "denied": "denied"}.get(observed)
            tier_rules: tuple[Rule, ...] = (decision.tier_rule,) if decision.outcome == named_for else ()
            tier_entries = [policy_entry(rule.policy, [rule]) for rule in tier_rules]
            tier_derived = (tier_rules, (), tier_entries, _names(tier_entries))
            self._derived_memo[key] = (decision, tier_derived)
            return tier_derived
        if observed == "allowed":
            responsible = decision.responsible if decision.outcome == "allowed" else ()
        elif observed in ("audit", "denied"):
            responsible = decision.denies
        else:
            responsible = ()
        rules = tuple(dict.fromkeys(match.rule for match in responsible))
        logs = tuple(sorted({rule.log_value for rule in rules if rule.log_value}))
        entries = self._policy_entries(rules) if rules else []
        derived = (rules, logs, entries, _names(entries))
        self._derived_memo[key] = (decision, derived)
        return derived

    def observe(self, event: dict[str, Any], explain: bool = False, now: float | None = None) -> Attribution | None:
        """Learn from and attribute one canonical event; fills its flow in place.

        `now` is the flow's time in seconds when the caller already has it. Returns the
        findings for policy outcomes, None for every other event.
        """
        flow = event.get("flow")
        if not isinstance(flow, dict):
            return None
        self.stats.flows += 1
        l7 = flow.get("l7")
        if l7 is not None and "dns" in l7:
            answer = dns_answer_of(flow)
            if answer is not None and answer.ips:
                self.learn_answer(answer, self._times.time_of(flow, event) if now is None else now)
            return None
        if not is_policy_outcome(flow):
            return None
        conn = connection_of(flow, self._times.time_of(flow, event) if now is None else now)
        if conn is None:
            self.stats.unknown_direction += 1
            return None
        return self.attribute(flow, conn, explain)

    def learn_answer(self, answer: DnsAnswer, now: float) -> None:
        """Learn a DNS answer (already parsed by the caller) at flow time `now`."""
        self.dns.learn_answer(answer, now)
        self.stats.dns_answers += 1

    def attribute(self, flow: dict[str, Any], conn: Connection, explain: bool = False) -> Attribution:
        decision = self.engine.decide(conn, endpoint_labels(conn.local), explain)
        verdict = flow.get("verdict", "")
        drop_reason = policy_drop_reason(flow)
        direction = conn.direction
        filled: list[str] = []
        note = ""

        if verdict in ("FORWARDED", "REDIRECTED"):
            observed = "allowed"
            agrees = decision.outcome in ("allowed", "not-enforced")
            field_name = f"{direction}_allowed_by"
        elif verdict == "AUDIT":
            observed = "audit"
            agrees = decision.outcome in ("denied", "default-deny")
            field_name = f"{direction}_denied_by"
        elif drop_reason == "POLICY_DENY":
            observed = "denied"
            agrees = decision.outcome == "denied"
            field_name = f"{direction}_denied_by"
        else:
            observed = "default-deny" if drop_reason == "POLICY_DENIED" else "dropped"
            agrees = decision.outcome == "default-deny"
            field_name = f"{direction}_denied_by"

        rules, logs, entries, entry_names = self._derived(decision, observed)
        kinds: list[str] = []  # this flow's disagreements, by kind
        if not agrees:
            note = f"Cilium {observed}, policies say {decision.outcome}"
            kinds.append(f"{observed}/{decision.outcome}")
        # From 1.20 Cilium correlates the policy verdicts of drops and audits itself
        # (cilium#45373): there hushflow checks its fields instead of filling them.
        check = (
            self.cilium_version >= CILIUM_CORRELATES_DROPS
            and (verdict == "AUDIT" or observed in ("denied", "default-deny"))
            and _event_type(flow) == POLICY_VERDICT
            and _cilium_can_correlate(conn)
        )

        # The other side's field: kept as it is, never used for tags, counted.
        other_side = f"{direction}_denied_by" if observed == "allowed" else f"{direction}_allowed_by"
        if flow.get(other_side):
            kinds.append(f"{other_side} on {_VERDICT_WORDS.get(verdict, 'a drop')}")

        existing = flow.get(field_name)
        cilium_entries = existing if isinstance(existing, list) else []
        named = [entry for entry in cilium_entries if isinstance(entry, dict) and entry.get("name")]
        if rules:
            if named:
                if existing != entries and _names(named) != entry_names:  # equal: the usual case
                    note = _more(note, f"Cilium's {field_name} names other policies")
                    kinds.append(f"{field_name} differs")
            elif check:
                note = _more(note, f"Cilium left {field_name} empty")
                kinds.append(f"{field_name} missing")
            else:
                if cilium_entries:  # only nameless entries: kept, hushflow's follow them
                    kinds.append(f"{field_name} completed")
                flow[field_name] = cilium_entries + entries
                filled.append(field_name)
        elif (
            self.attribute_default_deny
            and observed in ("default-deny", "audit")
            and decision.outcome == "default-deny"
            and not named
            and decision.default_deny_rules
        ):
            flow[field_name] = cilium_entries + self._policy_entries(decision.default_deny_rules)
            filled.append(field_name)

        raw_logs = flow.get("policy_log")
        cilium_logs: list[Any] = raw_logs if isinstance(raw_logs, list) else []
        # Only a list of empty strings (or none) is completed; anything else, even malformed, stands.
        blank = (raw_logs is None or isinstance(raw_logs, list)) and all(tag == "" for tag in cilium_logs)
        cilium_tags = {tag for tag in cilium_logs if isinstance(tag, str) and tag}
        if logs:
            if not blank:  # Cilium's tags stand
                if not cilium_tags.issuperset(logs):
                    note = _more(note, "Cilium's policy_log lacks " + ", ".join(sorted(set(logs) - cilium_tags)))
                    kinds.append("policy_log missing")
            elif check:
                note = _more(note, "Cilium left policy_log without tags")
                kinds.append("policy_log missing")
            else:
                if cilium_logs:  # only "" (rules without log, as Cilium saw them): kept, tags follow
                    note = _more(note, "Cilium's policy_log has no tag, the rules have")
                    kinds.append("policy_log completed")
                flow["policy_log"] = cilium_logs + list(logs)
                filled.append("policy_log")
        if rules and not cilium_tags.issubset(logs):
            note = _more(note, "Cilium's policy_log has " + ", ".join(sorted(cilium_tags - set(logs))))
            kinds.append("policy_log unknown")
        final_logs = tuple(flow.get("policy_log") or ())

        expected: bool | None = None
        if verdict in ("DROPPED", "AUDIT"):
            expected = bool(self.expected_logs.intersection(final_logs))
            if not expected and self.expected_predicate is not None:
                expected = bool(self.expected_predicate(flow))
        for name in filled:
            self.stats.filled[name] += 1
        self.stats.disagreements.update(kinds)
        self.stats.attributed += 1
        return Attribution(
            decision, observed, agrees, rules, final_logs, expected, tuple(filled), note, conn, tuple(kinds)
        )


def matches_for_explain(decision: Decision) -> tuple[RuleMatch, ...]:
    return decision.denies + decision.allows
