"""What the Cilium agent rejects that the CRD schema lets through (`Rule.Sanitize`).

The API server stores a CNP/CCNP that passes the CRD schema; the agent then runs
`Rule.Sanitize()` (pkg/policy/api/rule_validation.go) and, on an error, enforces none of the
object and marks it invalid in `status.conditions` (`kubectl get cnp` shows VALID False). These
checks are written from Cilium v1.19.4's pkg/policy/api (rule_validation.go, http.go,
selector.go, l4.go; the copy cilium/hubble vendors), and from pkg/iana/svcname.go for what a
named port is. Each finding names the Go function it comes from.

- HF016 (error): the agent rejects the rule, whatever it is configured with.
- HF017 (warning): the agent rejects the rule unless an agent option is set (a port left out
  needs enable-extended-ip-protocols; fromNodes/toNodes need enable-node-selector-labels).
- HF018 (warning): the agent reads a port number other than it is written (leading 0: octal).

The port checks are older than 1.18 (cilium/cilium rule_validation.go at 005aed24 parses ports
the same way), deny rules are validated since cilium#36598 (1.17), and label selectors are
validated in every version; where a version differs (portless protocols), it says so.
The post-1.19 rule_validation.go (Rule.Validate, after cilium#44610 removed Kafka) adds GRE,
IPIP, IPV6, ESP and AH to the protocols without ports.

The checks walk the manifest's raw data (after the schema check passed), so every finding
carries file:line and the field path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import re2

from hushflow.policy.diagnostics import Diagnostic
from hushflow.policy.source import FieldPath
from hushflow.policy.yamlsource import Manifest

EXTENDED_PROTOCOLS_SINCE = (1, 19)  # VRRP/IGMP in l4.go; `port` optional in the CRD
_SECTIONS = ("ingress", "ingressDeny", "egress", "egressDeny")
_SVC_NAME = re2.compile(r"^([a-zA-Z0-9]-?)*[a-zA-Z](-?[a-zA-Z0-9])*$")
_SELECTOR_FIELDS = ("fromEndpoints", "toEndpoints", "fromNodes", "toNodes")
# Protocols without ports ("port must be empty or 0"): VRRP and IGMP in 1.19 (v1.19.4
# PortProtocol.sanitize); from 1.20 every protocol of isExtendedIPProtocol (cilium/cilium
# rule_validation.go after the Kafka removal, PortProtocol.Validate), with the tunnel protocols.
_PORTLESS_PROTOCOLS = {(1, 19): ("VRRP", "IGMP"), (1, 20): ("VRRP", "IGMP", "GRE", "IPIP", "IPV6", "ESP", "AH")}


def portless_protocols(cilium_version: tuple[int, int]) -> tuple[str, ...]:
    known = [version for version in _PORTLESS_PROTOCOLS if version <= cilium_version]
    return _PORTLESS_PROTOCOLS[max(known)] if known else ()


def _go_regexp_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every parse error on stderr
    return options


_RE2_OPTIONS = _go_regexp_options()


def is_service_name(port: str) -> bool:
    """iana.IsSvcName: 1 to 15 letters, digits and single inner hyphens, at least one letter."""
    return 0 < len(port) <= 15 and _SVC_NAME.search(port) is not None


def go_parse_port(text: str) -> tuple[int | None, str]:
    """strconv.ParseUint(text, 0, 16) for a port that is not a service name: (value, "") or
    (None, why). Base 0: a leading "0" means octal; "_" may separate digits (as Python's int
    reads them too). Letters never
    reach this (a string with a letter is a service name, or too long to be one)."""
    digits = text
    if "_" in text:
        if text.startswith("_") or text.endswith("_") or "__" in text:
            return None, "invalid syntax"
        digits = text.replace("_", "")
    if not digits or not digits.isascii() or not digits.isdigit():
        return None, "invalid syntax"
    base = 8 if len(digits) > 1 and digits[0] == "0" else 10
    try:
        value = int(digits, base)
    except ValueError:
        return None, "invalid syntax"
    if value > 65535:
        return None, "value out of range"
    return value, ""


def _rules(data: dict[str, Any]) -> Iterator[tuple[FieldPath, dict[str, Any]]]:
    if isinstance(data.get("spec"), dict):
        yield ("spec",), data["spec"]
    specs = data.get("specs")
    if isinstance(specs, list):
        for index, spec in enumerate(specs):
            if isinstance(spec, dict):
                yield ("specs", index), spec


def _items(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict):
                yield index, item


def agent_problems(manifest: Manifest, cilium_version: tuple[int, int]) -> list[Diagnostic]:
    """Every HF016/HF017/HF018 of one CNP/CCNP."""
    out: list[Diagnostic] = []
    for rule_path, rule in _rules(manifest.data):
        for key in ("endpointSelector", "nodeSelector"):
            if isinstance(rule.get(key), dict):
                out.extend(_selector(manifest, (*rule_path, key), rule[key]))
        for section in _SECTIONS:
            for index, entry in _items(rule.get(section)):
                entry_path = (*rule_path, section, index)
                for field in _SELECTOR_FIELDS:
                    for i, selector in _items(entry.get(field)):
                        out.extend(_selector(manifest, (*entry_path, field, i), selector))
                for field in ("fromNodes", "toNodes"):
                    if isinstance(entry.get(field), list) and entry[field]:
                        out.append(Diagnostic(
                            "HF017",
                            f"{field}: the agent rejects the rule (IngressCommonRule/EgressCommonRule sanitize: "
                            "\"FromNodes/ToNodes rules can only be applied when the enable-node-selector-labels "
                            "flag is set\") unless it runs with enable-node-selector-labels",
                            manifest.locate((*entry_path, field)),
                            "set the Helm value nodeSelectorLabels=true (agent flag enable-node-selector-labels), "
                            "or select the nodes with the remote-node/host entities",
                        ))
                for field in ("toCIDRSet", "fromCIDRSet"):
                    for i, cidr_rule in _items(entry.get(field)):
                        if isinstance(cidr_rule.get("cidrGroupSelector"), dict):
                            out.extend(_selector(
                                manifest, (*entry_path, field, i, "cidrGroupSelector"), cidr_rule["cidrGroupSelector"]
                            ))
                for j, port_rule in _items(entry.get("toPorts")):
                    out.extend(_port_rule(manifest, (*entry_path, "toPorts", j), port_rule, cilium_version))
    return out


def _port_rule(
    manifest: Manifest, path: FieldPath, port_rule: dict[str, Any], cilium_version: tuple[int, int]
) -> Iterator[Diagnostic]:
    for k, port in _items(port_rule.get("ports")):
        yield from _port(manifest, (*path, "ports", k), port, cilium_version)
    rules = port_rule.get("rules")
    if not isinstance(rules, dict):
        return
    has_l7 = any(rules.get(kind) for kind in ("http", "kafka", "dns", "l7"))
    if isinstance(port_rule.get("listener"), dict) and has_l7:
        yield Diagnostic(
            "HF016",
            "a listener together with L7 rules: the agent rejects the rule (PortRule.sanitize: "
            "\"Listener is not allowed with L7 rules\")",
            manifest.locate((*path, "listener")),
            "the listener's Envoy configuration does the L7 work: drop `rules`, or drop the listener",
        )
    for h, http in _items(rules.get("http")):
        for field in ("path", "method"):
            pattern = http.get(field)
            if isinstance(pattern, str) and pattern:
                try:
                    re2.compile(pattern, _RE2_OPTIONS)
                except re2.error as error:
                    reason = error.args[0].decode("utf-8", "replace") if error.args and isinstance(
                        error.args[0], bytes) else str(error)
                    yield Diagnostic(
                        "HF016",
                        f"http {field} {pattern!r} is not a valid regular expression ({reason}): the agent "
                        "rejects the rule (PortRuleHTTP.Sanitize compiles it as a Go regexp)",
                        manifest.locate((*path, "rules", "http", h, field)),
                        f"{field} is a regular expression (RE2 syntax), matched against the whole {field}",
                    )
        for m, match in _items(http.get("headerMatches")):
            secret = match.get("secret")
            if isinstance(secret, dict) and secret.get("name") == "":
                yield Diagnostic(
                    "HF016",
                    "headerMatches secret with an empty name: the agent rejects the rule "
                    "(PortRuleHTTP.Sanitize: \"Secret name missing\")",
                    manifest.locate((*path, "rules", "http", h, "headerMatches", m, "secret", "name")),
                    "name the Secret that holds the header value",
                )


def _port(
    manifest: Manifest, path: FieldPath, port: dict[str, Any], cilium_version: tuple[int, int]
) -> Iterator[Diagnostic]:
    """PortProtocol.sanitize."""
    value = port.get("port")
    protocol = str(port.get("protocol") or "ANY").upper()
    if value is None or value == "":
        if cilium_version >= EXTENDED_PROTOCOLS_SINCE:  # before 1.19 the schema requires it
            yield Diagnostic(
                "HF017",
                "no port: the agent rejects the rule (PortProtocol.sanitize: \"port must be specified\") "
                "unless it runs with enable-extended-ip-protocols",
                manifest.locate(path),
                'write the port (port: "0" for every port), or enable extended IP protocols in the agent',
            )
        return
    if not isinstance(value, str):
        return  # the schema reports it
    if is_service_name(value):
        return
    where = manifest.locate((*path, "port"))
    if value != "0" and protocol in portless_protocols(cilium_version):
        yield Diagnostic(
            "HF016",
            f"port {value!r} with protocol {protocol}: the agent rejects the rule (PortProtocol.sanitize: "
            f"\"port must be empty or 0\"); {protocol} has no ports",
            where,
            'drop the port, or write port: "0"',
        )
        return
    number, why = go_parse_port(value)
    if number is None:
        named = any(c.isalpha() for c in value)
        hint = (
            "a named port is at most 15 letters, digits and inner hyphens (IANA service name rules)"
            if named
            else "a port number is 0 to 65535; a range is port plus endPort"
        )
        yield Diagnostic(
            "HF016",
            f"port {value!r} is neither a port number (0-65535) nor a port name: the agent rejects the rule "
            f"(PortProtocol.sanitize: unable to parse port: {why}); the CRD pattern lets it through",
            where,
            hint,
        )
        return
    digits = value.replace("_", "")
    if digits != str(number):
        yield Diagnostic(
            "HF018",
            f"port {value!r} is read by the agent as {number} (strconv.ParseUint base 0: a leading 0 "
            "means octal, '_' separates digits), not as it reads in decimal",
            where,
            f'write port: "{number}" if that is what you mean, else the decimal number without leading zeros',
        )


def _selector(manifest: Manifest, path: FieldPath, selector: dict[str, Any]) -> Iterator[Diagnostic]:
    """EndpointSelector.Sanitize -> the Kubernetes label selector validation: In/NotIn need
    values, Exists/DoesNotExist take none."""
    for e, expression in _items(selector.get("matchExpressions")):
        operator = expression.get("operator")
        values = expression.get("values")
        count = len(values) if isinstance(values, list) else 0
        where = manifest.locate((*path, "matchExpressions", e))
        if operator in ("In", "NotIn") and count == 0:
            yield Diagnostic(
                "HF016",
                f"matchExpressions operator {operator} without values: the agent rejects the rule "
                "(EndpointSelector.Sanitize: invalid label selector: values must be specified when "
                "`operator` is 'In' or 'NotIn')",
                where,
                "list the values, or use Exists / DoesNotExist",
            )
        elif operator in ("Exists", "DoesNotExist") and count > 0:
            yield Diagnostic(
                "HF016",
                f"matchExpressions operator {operator} with values: the agent rejects the rule "
                "(EndpointSelector.Sanitize: invalid label selector: values may not be specified when "
                "`operator` is 'Exists' or 'DoesNotExist')",
                where,
                "drop `values`, or use In / NotIn",
            )
