"""`hushflow lint`: what Cilium will do with your policy YAML, before you apply it.

Schema and shape checks come from `loading`; this module adds the semantic checks that need
the model: rules Cilium cannot run or silently changes, traps of deny precedence and
default-deny, and FQDN rules whose IPs will never be learned.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from hushflow.policy.diagnostics import Diagnostic, Severity
from hushflow.policy.fqdn import FQDNSelector, multi_label_prefix
from hushflow.policy.labels import NAMESPACE_KEY, Requirement, Selector, may_overlap
from hushflow.policy.loading import load_policies
from hushflow.policy.model import (
    CNP,
    BuildOptions,
    ICMPField,
    PeerRule,
    Policy,
    PolicySet,
    PortProtocol,
    Rule,
)
from hushflow.policy.network_policy import NETWORK_POLICY as NETWORK_POLICY_KIND
from hushflow.policy.source import Location

_EXTERNAL_ENTITIES = frozenset({"world", "world-ipv4", "world-ipv6", "all"})


@dataclass(slots=True)
class LintReport:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    objects: int = 0
    policies: int = 0

    def count(self, severity: Severity) -> int:
        return sum(1 for d in self.diagnostics if d.level == severity)

    @property
    def io_failed(self) -> bool:
        return any(d.code == "HF004" for d in self.diagnostics)

    def exit_code(self, strict: bool = False) -> int:
        """0 clean, 1 an error (or, with strict, a warning), 2 a file could not be read."""
        if self.io_failed:
            return 2
        if self.count(Severity.ERROR) or (strict and self.count(Severity.WARNING)):
            return 1
        return 0


def lint_paths(
    paths: Sequence[str], options: BuildOptions | None = None, stdin: IO[str] | None = None
) -> LintReport:
    loaded = load_policies(paths, options, stdin)
    diagnostics = list(loaded.diagnostics)
    diagnostics.extend(lint_policy_set(loaded.policy_set))
    diagnostics.sort(key=Diagnostic.sort_key)
    policies = len(loaded.policy_set.policies) + len(loaded.cluster_network_policies)
    return LintReport(diagnostics, loaded.files, loaded.objects, policies)


def lint_policy_set(policy_set: PolicySet) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for policy in policy_set.policies:
        out.extend(_lint_policy(policy))
    out.extend(_fqdn_without_dns_proxy(policy_set))
    out.extend(_deny_only_default_deny(policy_set))
    out.extend(_deny_shadows_allow(policy_set))
    out.extend(_tiers_across_kinds(policy_set))
    return out


def _selects(rule: Rule, direction: str) -> bool:
    """Whether a CNP/CCNP/NetworkPolicy rule takes part in `direction` (so Baseline is not
    consulted for the endpoints it selects)."""
    if direction == "ingress":
        return bool(rule.ingress or rule.ingress_deny or rule.default_deny_ingress)
    return bool(rule.egress or rule.egress_deny or rule.default_deny_egress)


def _decided_below(entry: Any, below: list[Rule], tiers: list[Any]) -> bool:
    """Whether something after an Admin Pass may decide for its endpoints (cheap, safe: True
    when unsure)."""
    if any(may_overlap(rule.subject, entry.subject) for rule in below):
        return True
    return any(other.tier == "Baseline" and other.direction == entry.direction
               and may_overlap(other.subject, entry.subject) for other in tiers)


def _tiers_across_kinds(policy_set: PolicySet) -> Iterator[Diagnostic]:
    """ClusterNetworkPolicy entries that the other kinds make pointless (Cilium 1.20 tiers:
    Baseline is consulted only where no CNP/CCNP/NetworkPolicy selects the endpoint in that
    direction; a Pass hands the connection to those and then to Baseline)."""
    tiers = policy_set.cluster_network_rules
    if not tiers:
        return
    rules = [r for r in policy_set.rules if r.subject is not None]
    for entry in tiers:
        below = [r for r in rules if _selects(r, entry.direction)]
        if entry.tier == "Baseline":
            covering = next((r for r in below if covers(r.subject, entry.subject)), None)
            if covering is not None:
                yield Diagnostic(
                    "HF078",
                    f"this Baseline {entry.direction} entry never decides: {covering.policy} "
                    f"({covering.where.file}:{covering.where.line}) selects every endpoint it selects for "
                    f"{entry.direction}, and Baseline is consulted only where no such policy does",
                    entry.where,
                    "move the entry to the Admin tier, or narrow the namespaced policy",
                )
        elif entry.verdict == "pass" and not _decided_below(entry, below, tiers):
            yield Diagnostic(
                "HF077",
                f"this Pass hands {entry.direction} connections on, but no CiliumNetworkPolicy, NetworkPolicy or "
                "Baseline entry can select these endpoints: they end at the cluster default, allow",
                entry.where,
                "write Accept if allowing is meant, or add the policy that should decide",
            )


# -- checks of one rule ---------------------------------------------------------------------


def _lint_policy(policy: Policy) -> Iterator[Diagnostic]:
    for rule in policy.rules:
        yield from _namespace_overridden(rule)
        for peer in rule.peer_rules:
            yield from _lint_peer_rule(peer, rule)
        yield from _host_policy_l7(rule)


def _host_policy_l7(rule: Rule) -> Iterator[Diagnostic]:
    """Cilium: host policies take no L7 on ingress, and no HTTP/Kafka on egress."""
    if rule.node_subject is None:
        return
    for peer in rule.ingress + rule.egress:
        for port_rule in peer.ports or ():
            kinds = port_rule.l7_kinds if peer.direction == "ingress" else [
                k for k in port_rule.l7_kinds if k in ("http", "kafka")
            ]
            if kinds:
                yield Diagnostic(
                    "HF038",
                    f"L7 {'/'.join(kinds)} rules in a host policy (nodeSelector) on {peer.direction}: "
                    "Cilium rejects the rule",
                    port_rule.where,
                    "host policies enforce L3/L4 only (DNS rules are allowed on egress)",
                )


def _namespace_overridden(rule: Rule) -> Iterator[Diagnostic]:
    if rule.policy.kind != CNP or rule.subject is None:
        return
    for requirement in rule.subject.written:
        bare = requirement.key.split(":", 1)[1]
        if bare == NAMESPACE_KEY and requirement.values != frozenset({rule.policy.namespace}):
            yield Diagnostic(
                "HF013",
                f"endpointSelector selects namespace {_values(requirement)}, but a CiliumNetworkPolicy only "
                f"applies in its own namespace ({rule.policy.namespace}): Cilium replaces this requirement",
                rule.subject.where,
                "move the policy to that namespace, or use a CiliumClusterwideNetworkPolicy",
            )


def _values(requirement: Requirement) -> str:
    return ", ".join(sorted(requirement.values)) or "(none)"


def _lint_peer_rule(peer: PeerRule, rule: Rule) -> Iterator[Diagnostic]:
    where = peer.where
    # A NetworkPolicy's empty entries are the translation's own (the deny-everything entry its
    # policyTypes implies, `ingress: [{}]` meaning allow-all there), not this CNP idiom.
    if peer.is_empty and rule.policy.kind != NETWORK_POLICY_KIND:
        default_deny = rule.default_deny_egress if peer.direction == "egress" else rule.default_deny_ingress
        severity = None  # the check's default: a warning
        if default_deny and not peer.deny:
            # Cilium's docs (policy language, "Ingress/Egress Default Deny") write exactly this to
            # put pods in default-deny while allowing nothing: the idiom, worth an info only.
            message = (
                f"`{peer.section}: [{{}}]`: the documented default-deny idiom; the selected endpoints drop every "
                f"{peer.direction} connection no rule allows"
            )
            hint = "nothing to change if default-deny is what you want; otherwise remove the empty rule"
            severity = Severity.INFO
        elif default_deny:
            message = (
                f"`{peer.section}: [{{}}]` denies nothing, but it switches the selected endpoints to "
                f"{peer.direction} default-deny: everything not allowed elsewhere is now dropped"
            )
            hint = f"for default-deny write `{peer.direction}: [{{}}]`; otherwise remove the empty rule"
        else:
            message = (
                f"`{peer.section}: [{{}}]` selects nothing, and with enableDefaultDeny.{peer.direction}: false "
                "it does nothing at all"
            )
            hint = "remove the empty rule"
        yield Diagnostic("HF052", message, where, hint, severity=severity)
    if len(peer.l3_nonempty) > 1:
        yield Diagnostic(
            "HF031",
            f"combining {' and '.join(peer.l3_nonempty)} in one rule is not supported: Cilium rejects the rule",
            where,
            "split it into one rule per peer kind",
        )
    if peer.services and peer.ports:
        yield Diagnostic(
            "HF054",
            "toServices with toPorts: Cilium's docs say not to combine them: the ports apply to every peer the "
            "service's generated rules select, which can open more than the service",
            where,
            "select the backends with toEndpoints or toCIDRSet plus toPorts instead",
        )
    if peer.icmps is not None and peer.ports is not None:
        yield Diagnostic(
            "HF032",
            "icmps and toPorts in the same rule: Cilium rejects it",
            where,
            "put the ICMP part in a rule of its own",
        )
    for port_rule in peer.ports or ():
        for port in port_rule.ports:
            yield from _lint_port(port)
        if port_rule.dns is not None:
            if peer.direction == "ingress":
                yield Diagnostic(
                    "HF034",
                    "L7 DNS rules are not allowed on ingress: Cilium rejects the rule",
                    port_rule.where,
                    "DNS rules belong in egress rules of the pods that resolve names",
                )
            yield from _dns_ports(port_rule.ports, port_rule.where)
        if peer.deny:
            continue
        if port_rule.server_names and port_rule.l7_kinds and "terminatingTLS" not in port_rule.tls:
            yield Diagnostic(
                "HF039",
                "serverNames together with L7 rules needs terminatingTLS: without terminating TLS Cilium cannot "
                "see inside the connection, and rejects the rule",
                port_rule.where,
                "add terminatingTLS (and originatingTLS) to inspect the traffic, or drop the L7 rules",
            )
        if port_rule.listener and peer.direction == "ingress":
            yield Diagnostic(
                "HF041",
                "a listener (Envoy config redirect) is only allowed on egress: Cilium rejects it on ingress",
                port_rule.where,
                "move the listener to an egress rule",
            )
        l7_other = [kind for kind in port_rule.l7_kinds if kind != "dns"]
        if l7_other:
            for port in port_rule.ports:
                if port.protocol != "TCP" or port.port == "0":
                    yield Diagnostic(
                        "HF038",
                        f"L7 {'/'.join(l7_other)} rules need an explicit TCP port, not {port}: Cilium rejects "
                        "the rule (a missing protocol means ANY)",
                        port.where,
                        'write protocol: TCP and a port other than "0"',
                    )
    for fqdn in peer.fqdns or ():
        yield from _double_star(fqdn)
    for port_rule in peer.ports or ():
        for fqdn in port_rule.dns or ():
            yield from _double_star(fqdn)
    for cidr in peer.cidrs or ():
        if cidr.cidr is None:
            continue
        for excluded in cidr.excepts:
            if excluded.version != cidr.cidr.version or not excluded.subnet_of(cidr.cidr):  # type: ignore[arg-type]
                yield Diagnostic(
                    "HF037",
                    f"except {excluded} is not inside cidr {cidr.cidr}: Cilium rejects the rule",
                    cidr.where,
                    "every except entry must be a sub-prefix of the cidr it belongs to",
                )


def _lint_port(port: PortProtocol) -> Iterator[Diagnostic]:
    first = port.number
    if port.end_port is not None and first is not None and 0 < port.end_port < first:
        yield Diagnostic(
            "HF036",
            f"endPort {port.end_port} is below port {first}: Cilium ignores such an endPort and enforces "
            f"port {first} alone, not a range",
            port.where,
            f"for the range write port: \"{port.end_port}\", endPort: {first}; for one port drop endPort",
        )


def _dns_ports(ports: Sequence[PortProtocol], where_rule: Location) -> Iterator[Diagnostic]:
    if not ports:
        yield Diagnostic(
            "HF035",
            "L7 DNS rules need an explicit port (\"port 53 must be specified for DNS rules\")",
            where_rule,
            'add ports: [{port: "53", protocol: ANY}]',
        )
        return
    # Cilium (pkg/policy/api/rule_validation.go) asks a DNS rule for an explicit port, not 0 and
    # not a range, and nothing more: 5353 (OpenShift's DNS pods) or a named port is as good as 53.
    for port in ports:
        if port.number == 0 or (port.end_port and port.number is not None and port.end_port > port.number):
            yield Diagnostic(
                "HF035",
                f"L7 DNS rules need an explicit single port, not {port}: Cilium rejects the rule",
                port.where,
                'use the port your DNS server listens on, e.g. port: "53"',
            )


def _double_star(fqdn: FQDNSelector) -> Iterator[Diagnostic]:
    pattern = fqdn.match_pattern or ""
    # What 1.19 reads as a multi-label prefix (`**.`, `***.`, ...) is one label before it.
    if fqdn.cilium_version < (1, 19) and multi_label_prefix(pattern, (1, 19)):
        major, minor = fqdn.cilium_version
        yield Diagnostic(
            "HF051",
            f"matchPattern {pattern!r}: before Cilium 1.19 a leading `**.` (or more stars) matches exactly one "
            "label, like "
            f"`*.` (checked for Cilium {major}.{minor}); deeper subdomains are not matched",
            fqdn.where,
            "add a pattern per depth you need, or lint with --cilium-version 1.19 if you run 1.19+",
        )


# -- checks across policies -----------------------------------------------------------------


def _source_covers(general_key: str, specific_key: str) -> bool:
    general_source, general_bare = general_key.split(":", 1)
    specific_source, specific_bare = specific_key.split(":", 1)
    return general_bare == specific_bare and general_source in ("any", specific_source)


def _implied(general: Requirement, specific: frozenset[Requirement]) -> bool:
    """Does every label set meeting all of `specific` also meet `general`? (sufficient test)"""
    if general in specific:
        return True
    same_key = [r for r in specific if _source_covers(general.key, r.key)]
    if general.operator == "In":
        return any(r.operator == "In" and r.values <= general.values for r in same_key)
    if general.operator == "Exists":
        return any(r.operator in ("In", "Exists") for r in same_key)
    # NotIn / DoesNotExist: the specific side must rule the value out on a key at least as broad.
    broad = [r for r in specific if _source_covers(r.key, general.key)]
    if general.operator == "NotIn":
        return any(
            (r.operator == "In" and not (r.values & general.values))
            or r.operator == "DoesNotExist"
            or (r.operator == "NotIn" and general.values <= r.values)
            for r in same_key + broad
        )
    return any(r.operator == "DoesNotExist" for r in broad)


def covers(general: Selector | None, specific: Selector | None) -> bool:
    """True when `general` selects at least every endpoint `specific` selects (a sufficient test)."""
    if general is None or specific is None:
        return general is specific
    if general.namespace is not None and general.namespace != specific.namespace:
        return False  # pinned to a namespace the other selector is not pinned to
    if general.requirement_set <= specific.requirement_set:
        return True
    return all(_implied(r, specific.requirement_set) for r in general.requirement_set)


def _dns_proxy_patterns(peer: PeerRule) -> list[FQDNSelector]:
    """The L7 DNS selectors of an allow rule that sends DNS traffic to Cilium's proxy.

    Any port with `rules.dns` redirects to the proxy (53 for kube-dns, 5353 for OpenShift's DNS,
    a named port): Cilium ties the redirect to the rule, not to port 53.
    """
    if peer.deny:
        return []
    return [
        selector
        for port_rule in peer.ports or ()
        if port_rule.dns is not None and port_rule.ports
        for selector in port_rule.dns
    ]


def _dns_allows(dns: Sequence[FQDNSelector], fqdn: FQDNSelector) -> bool:
    """Would a lookup of a name `fqdn` selects get through these L7 DNS rules (not REFUSED)?"""
    if fqdn.match_name is not None:
        return any(selector.matches(fqdn.match_name) for selector in dns)
    example = (fqdn.match_pattern or "").replace("**.", "x.").replace("*", "x")
    return any(
        selector.is_wildcard_all or selector.match_pattern == fqdn.match_pattern or selector.matches(example)
        for selector in dns
    )


def _fqdn_without_dns_proxy(policy_set: PolicySet) -> Iterator[Diagnostic]:
    dns_rules = [
        (rule.subject, patterns)
        for rule in policy_set.rules
        for peer in rule.egress
        if (patterns := _dns_proxy_patterns(peer))
    ]
    for rule in policy_set.rules:
        for peer in rule.egress + rule.egress_deny:
            if not peer.fqdns:
                continue
            covering = [patterns for subject, patterns in dns_rules if covers(subject, rule.subject)]
            if covering:
                dns = [selector for patterns in covering for selector in patterns]
                refused = [f for f in peer.fqdns if not _dns_allows(dns, f)]
                for fqdn in refused:
                    yield Diagnostic(
                        "HF030",
                        f"{fqdn}: the L7 DNS rules covering these endpoints do not allow looking this name up, "
                        "so the lookup is REFUSED and the IPs are never learned",
                        fqdn.where,
                        "add the name (or a pattern for it) to the rules.dns of the DNS proxy rule",
                    )
                continue
            what = "deny" if peer.deny else "allow"
            yield Diagnostic(
                "HF030",
                f"toFQDNs {what} for endpoints ({rule.subject}) that no L7 DNS rule covers: their DNS traffic "
                "never reaches Cilium's DNS proxy, so the IPs behind these names are never learned"
                + (" and the deny only holds for pre-resolved names" if peer.deny else " and the traffic is dropped"),
                peer.where,
                'add an egress rule for the same endpoints: toPorts: [{ports: [{port: "53", protocol: ANY}], '
                'rules: {dns: [{matchPattern: "*"}]}}] (with toEndpoints selecting kube-dns)',
            )


def _deny_only_default_deny(policy_set: PolicySet) -> Iterator[Diagnostic]:
    """A rule with deny entries and no allows still turns on default-deny (enableDefaultDeny unset)."""
    rules = policy_set.rules
    for rule in rules:
        for direction, allows, denies, on in (
            ("egress", rule.egress, rule.egress_deny, rule.default_deny_egress),
            ("ingress", rule.ingress, rule.ingress_deny, rule.default_deny_ingress),
        ):
            if not denies or allows or not on or all(peer.grants_nothing for peer in denies):
                continue
            allowed_elsewhere = any(
                (other.egress if direction == "egress" else other.ingress) and covers(other.subject, rule.subject)
                for other in rules
                if other is not rule
            )
            if allowed_elsewhere:
                continue  # the endpoints are in default-deny with real allows anyway
            yield Diagnostic(
                "HF053",
                f"this rule only denies, but because it has {direction} entries it also switches its endpoints "
                f"to {direction} default-deny: everything it does not deny is dropped too, since no allow rule "
                "covers these endpoints",
                rule.where,
                f"to block only what is denied, add `enableDefaultDeny: {{{direction}: false}}` to this rule",
            )


def _icmp_key(field: ICMPField) -> tuple[str, str]:
    return field.family, field.type


def _ports_cover(deny: PeerRule, allow: PeerRule) -> bool:
    if deny.icmps:
        # An icmps deny matches ICMP of those types only (pkg/policy/api/icmp.go turns each field
        # into an ICMP port entry): it covers an allow only when that allow is ICMP of those types.
        denied = {_icmp_key(f) for f in deny.icmps}
        return bool(allow.icmps) and all(_icmp_key(f) in denied for f in allow.icmps or ())
    if deny.ports is None:
        return True  # an L3-only deny covers every port
    deny_ports = [p for rule in deny.ports for p in rule.ports]
    if not deny_ports:
        return True
    allow_ports = [p for rule in allow.ports or () for p in rule.ports]
    if not allow_ports:
        return False  # the allow covers every port; the deny covers only some
    return all(any(_port_covers(d, a) for d in deny_ports) for a in allow_ports)


def _port_covers(deny: PortProtocol, allow: PortProtocol) -> bool:
    if deny.protocol != "ANY" and deny.protocol != allow.protocol:
        return False
    if deny.number == 0:
        return True
    if allow.number is None or deny.number is None:
        return deny.port == allow.port
    last = allow.end_port or allow.number
    return all(deny.covers(port) for port in (allow.number, last)) and allow.number != 0


def _peers_cover(deny: PeerRule, allow: PeerRule) -> bool:
    if deny.any_peer:
        return True
    entities = set(deny.entities or ())
    if "all" in entities:
        return True
    allow_external = allow.fqdns is not None or allow.cidrs is not None or bool(
        set(allow.entities or ()) & _EXTERNAL_ENTITIES - {"all"}
    )
    if "world" in entities and allow_external:
        return True
    if deny.fqdns and allow.fqdns:
        return all(
            a.match_name is not None and any(d.matches(a.match_name) for d in deny.fqdns) for a in allow.fqdns
        )
    if deny.cidrs and allow.cidrs:
        deny_nets = [c.cidr for c in deny.cidrs if c.cidr is not None and not c.excepts]
        return all(
            a.cidr is not None
            and any(d.version == a.cidr.version and a.cidr.subnet_of(d) for d in deny_nets)  # type: ignore[arg-type]
            for a in allow.cidrs
        )
    if deny.cidrs and allow.fqdns:
        return any(
            c.cidr is not None and c.cidr.prefixlen == 0 and not c.excepts for c in deny.cidrs
        )
    if deny.endpoints and allow.endpoints:
        return all(any(covers(d, a) for d in deny.endpoints) for a in allow.endpoints)
    return False


def _describe_peer(peer: PeerRule) -> str:
    if peer.any_peer:
        what = "every peer"
    elif peer.fqdns:
        what = "toFQDNs " + ", ".join(f.match_name or f.match_pattern or "" for f in peer.fqdns)
    elif peer.entities:
        what = "entities " + ", ".join(peer.entities)
    elif peer.cidrs:
        what = "CIDRs " + ", ".join(str(c.cidr or c.group_ref or "group selector") for c in peer.cidrs)
    else:
        what = " and ".join(peer.l3_fields)
    if peer.icmps:
        return f"{what} on ICMP " + ", ".join(f"{f.family}/{f.type}" for f in peer.icmps)
    ports = [str(p) for rule in peer.ports or () for p in rule.ports]
    return f"{what} on {', '.join(ports)}" if ports else f"{what} on every port"


def _deny_shadows_allow(policy_set: PolicySet) -> Iterator[Diagnostic]:
    rules = policy_set.rules
    allows = [(rule, peer) for rule in rules for peer in rule.egress + rule.ingress if not peer.grants_nothing]
    for deny_rule in rules:
        for deny in deny_rule.egress_deny + deny_rule.ingress_deny:
            if deny.grants_nothing:  # `{}`, or only requirements: denies no peer
                continue
            shadowed = [
                (rule, peer)
                for rule, peer in allows
                # cheapest and most selective first: most pairs are rules of other endpoints
                if peer.direction == deny.direction
                and covers(deny_rule.subject, rule.subject)
                and covers(deny_rule.node_subject, rule.node_subject)
                and _peers_cover(deny, peer)
                and _ports_cover(deny, peer)
            ]
            if not shadowed:
                continue
            listed = "; ".join(
                f"{peer.where.file}:{peer.where.line} {peer.where.field} ({_describe_peer(peer)})"
                for _rule, peer in shadowed[:5]
            )
            more = f" and {len(shadowed) - 5} more" if len(shadowed) > 5 else ""
            yield Diagnostic(
                "HF050",
                f"this {deny.section} ({_describe_peer(deny)}) takes precedence over every allow: "
                f"{len(shadowed)} allow rule(s) for the same endpoints can never match: {listed}{more}",
                deny.where,
                "narrow the deny to the peers you mean (hushflow's toFQDNs deny, compiled by "
                "`hushflow compile`, denies only the named destinations)",
            )
