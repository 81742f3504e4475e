"""`hushflow explain`: the decision on one flow, and why, in words a new team member follows."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from hushflow.engine.attribution import Attribution, Attributor
from hushflow.engine.blindness import UnexplainedDestination, UnexplainedDestinations, opens_connection
from hushflow.engine.decision import Decision, RuleMatch
from hushflow.flow.connection import Connection, connection_of
from hushflow.flow.times import flow_time
from hushflow.policy.model import CCNP, CNP, Rule

_OUTCOME_WORDS = {
    "denied": "denied by a deny rule (POLICY_DENY)",
    "allowed": "allowed",
    "default-deny": "dropped by default-deny: no rule allows it (POLICY_DENIED)",
    "not-enforced": "allowed: no policy enforces this direction for this endpoint",
    "unknown": "unknown: a rule that may apply has a named port hushflow could not resolve",
}


_SHORT_KINDS = {CCNP: "ccnp", CNP: "cnp"}
RUNBOOK_UNEXPLAINED = "docs/runbooks.md#hushflowunexplaineddestinations"


def _endpoint(endpoint: Mapping[str, Any], ip: str) -> str:
    if endpoint.get("pod_name"):
        return f"{endpoint.get('namespace', '')}/{endpoint['pod_name']}"
    labels = [label for label in endpoint.get("labels") or () if label.startswith("reserved:")]
    return f"{ip} ({', '.join(labels)})" if labels else ip or "?"


def _rule_name(rule: Rule) -> str:
    """`cnp shop/x`, `ccnp x`; any other kind by its own name (`NetworkPolicy shop/allow-web`)."""
    short = _SHORT_KINDS.get(rule.policy.kind, rule.policy.kind)
    name = f"{rule.policy.namespace}/{rule.policy.name}" if rule.policy.namespace else rule.policy.name
    return f"{short} {name}"


def _where(rule: Rule, match: RuleMatch | None = None) -> str:
    location = match.peer.rule.where if match else rule.where
    return f"{location.file}:{location.line} {location.field}"


def _time(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%H:%M:%S.%f")[:-3]


def _headline(flow: Mapping[str, Any], conn: Connection, origin: str) -> str:
    src = _endpoint(flow.get("source") or {}, (flow.get("IP") or {}).get("source", ""))
    dst = _endpoint(flow.get("destination") or {}, (flow.get("IP") or {}).get("destination", ""))
    names = flow.get("destination_names") if conn.direction == "egress" else flow.get("source_names")
    named = f" ({', '.join(names)})" if names else ""
    # protojson leaves an enum number it does not know a number: words and numbers both print.
    verdict = f"{flow.get('verdict', '?')}"
    reason = flow.get("drop_reason_desc")
    verdict += f" ({reason})" if reason else ""
    kind = "policy-verdict" if (flow.get("event_type") or {}).get("type") == 5 else "drop"
    port = f":{conn.port}/{conn.protocol}" if conn.protocol else ""
    return (
        f"{flow.get('time', '')}  {origin}\n"
        f"  {src} -> {dst}{port}{named}\n"
        f"  {kind} {conn.direction.upper()} {verdict}"
    )


def explain_flow(attributor: Attributor, event: dict[str, Any], origin: str = "") -> str | None:
    """Attribute `event` (learning from it as usual) and describe the result; None if not a verdict."""
    flow = event.get("flow")
    if not isinstance(flow, dict):
        return None
    attribution = attributor.observe(event, explain=True)
    if attribution is None:
        return None
    conn = connection_of(flow, flow_time(flow, event))
    assert conn is not None
    return render(attributor, flow, conn, attribution, origin)


def _tier_lines(decision: Decision, direction: str, local: str) -> list[str]:
    """The ClusterNetworkPolicy tiers' part (engine.tiers): which entry decided, and the Pass
    entries that handed the connection on."""
    lines = []
    rule = decision.tier_rule
    if rule is not None:
        name = f", rule {rule.rule_name}" if rule.rule_name else ""
        lines.append(f"  decided in the {decision.tier} tier by ClusterNetworkPolicy {rule.policy.name} "
                     f"(priority {rule.priority:g}{name})  ({rule.where.file}:{rule.where.line} {rule.where.field})")
        if decision.tier == "Admin":
            lines.append("  (the Admin tier decides before every CiliumNetworkPolicy and NetworkPolicy)")
        else:
            lines.append(f"  (no CiliumNetworkPolicy or NetworkPolicy selects the {local} endpoint for {direction}, "
                         "so the Baseline tier decides)")
    for passed in decision.passed:
        lines.append(f"  handed on by ClusterNetworkPolicy {passed.policy.name} (Pass, priority {passed.priority:g})  "
                     f"({passed.where.file}:{passed.where.line})")
    return lines


def _blindness_line(found: UnexplainedDestination, indent: str = "  ") -> str:
    return (f"{indent}no DNS answer seen for {found.ip}: the FQDN deny {_rule_name(found.rule)} ({found.where}) "
            "cannot know its name (NodeLocal DNS, DoH or a hard-coded IP?); see " + RUNBOOK_UNEXPLAINED)


def render(attributor: Attributor, flow: Mapping[str, Any], conn: Connection, att: Attribution, origin: str,
           blindness: UnexplainedDestinations | None = None) -> str:
    """`blindness`: the run's alarm (its resolver answers, min TTL and grace); None: one over the
    attributor's policies and DNS knowledge."""
    decision = att.decision
    lines = [_headline(flow, conn, origin)]
    if blindness is None:
        blindness = UnexplainedDestinations(attributor.engine.policy_set, attributor.dns)
    # A connection the blindness alarm counts (engine.blindness): said instead of the plain "no DNS answer".
    blind = blindness.unexplained(conn) if blindness and opens_connection(flow) else None
    if decision.outcome == "unknown":
        agreement = f"cannot be checked against what Cilium did ({att.note})"
    else:
        agreement = "matches what Cilium did" if att.agrees else f"DISAGREES with Cilium ({att.note})"
    lines.append(f"  decision: {_OUTCOME_WORDS[decision.outcome]} — {agreement}")
    local = "source" if conn.direction == "egress" else "destination"
    lines.extend(_tier_lines(decision, conn.direction, local))
    if decision.outcome == "not-enforced":
        lines.append(f"  no rule selects the {local} endpoint for {conn.direction}, so nothing is enforced there")
    if decision.unknown:
        # Named ports that could not be resolved: first, they decide what can be said.
        lines.append(
            "  these rules match the peer, but their port is a named port that could not be resolved, "
            "so hushflow cannot say whether they apply:"
            if decision.outcome == "unknown"
            else "  these rules may also apply (a named port could not be resolved):"
        )
        for match in decision.unknown:
            lines.extend(_describe_match(attributor, conn, match, local))
        if decision.outcome == "unknown":
            lines.append(
                "  if they do not apply, these allows match:" if decision.allows
                else f"  if they do not apply, nothing allows it: the {local} endpoint is in "
                f"{conn.direction} default-deny"
            )
    shown = decision.denies if decision.outcome == "denied" else decision.allows
    for match in shown:
        lines.extend(_describe_match(attributor, conn, match, local))
    if decision.outcome == "denied" and decision.allows:
        lines.append("  (deny rules win over every allow; allows that also matched are ignored)")
    if decision.outcome == "default-deny":
        lines.append(
            f"  no allow rule matches this peer and port; the {local} endpoint is in {conn.direction} "
            "default-deny because these rules select it:"
        )
        for rule in decision.default_deny_rules[:10]:
            lines.append(f"    - {_rule_name(rule)}  ({_where(rule)})")
        if len(decision.default_deny_rules) > 10:
            lines.append(f"    ... and {len(decision.default_deny_rules) - 10} more")
        lines.extend(_dns_lines(attributor, conn, indent="  ", blind=blind))
    if blind is not None and _blindness_line(blind) not in lines:  # not said yet (no default-deny above)
        lines.append(_blindness_line(blind))
    if att.policy_log:
        lines.append(f"  policy_log: {', '.join(att.policy_log)}")
    if att.expected is not None:
        if att.expected:
            lines.append("  expected drop: its tag is in the expected set (counted, not alerted)")
        else:
            lines.append("  UNEXPECTED drop: no rule with an expected tag is responsible — look at this one")
    if att.filled:
        lines.append(f"  hushflow filled: {', '.join(att.filled)} (Cilium left them empty)")
    return "\n".join(lines)


def _describe_match(attributor: Attributor, conn: Connection, match: RuleMatch, local: str) -> list[str]:
    rule = match.rule
    kind = "deny " if match.peer.rule.deny else "allow"
    lines = [f"  {kind} {_rule_name(rule)}  {_where(rule, match)}  [{match.match_type}]"]
    if rule.subject is not None:
        # The field as written: endpointSelector, or a NetworkPolicy's podSelector.
        written = rule.subject.where.path[-1:] if rule.subject.where.path else ()
        field = written[0] if written and isinstance(written[0], str) else "endpointSelector"
        lines.append(f"      {local} labels match {field} ({rule.subject})")
    for reason in match.why:
        lines.append(f"      {reason}")
    if match.peer.rule.fqdns:
        lines.extend(_dns_lines(attributor, conn))
    if rule.log_value:
        lines.append(f"      log.value: {rule.log_value}")
    return lines


def _dns_lines(attributor: Attributor, conn: Connection, indent: str = "      ",
               blind: UnexplainedDestination | None = None) -> list[str]:
    if not conn.peer_ip:
        return []
    answers = attributor.dns.answers_for_ip(conn.peer_ip, conn.time)
    if not answers:
        if blind is not None:
            return [_blindness_line(blind, indent)]
        if conn.peer_names:
            return [f"{indent}Hubble named the peer {', '.join(conn.peer_names)} (no DNS answer seen by hushflow)"]
        return [f"{indent}no DNS answer seen for {conn.peer_ip}: a hard-coded IP, or resolved before hushflow started"]
    return [
        f"{indent}DNS: {a.endpoint} resolved {a.name} -> {', '.join(a.ips)} at {_time(a.seen_at)} "
        f"(TTL {a.ttl} s, valid until {_time(a.expires_at)})"
        for a in answers[:5]
    ]
