"""Kubernetes NetworkPolicy (networking.k8s.io/v1), translated into Cilium rules as Cilium does.

Cilium does not enforce a NetworkPolicy as such: the agent turns each one into Cilium rules
(cilium/cilium `pkg/k8s/network_policy.go`, `ParseNetworkPolicy`, `parseNetworkPolicyPeer`,
`parsePodSelector`, `parsePorts`, `ipBlockToCIDRRule`; read at the version that takes the
cluster name and builds `types.PolicyEntries`, the 1.19/1.20 form). This module builds the same
rules in hushflow's model (`Rule`, `PeerRule`, ...), so the engine, explain, attribution and lint
need no special case. What Cilium does, and so what the model holds:

- the subject is `podSelector` (keys with the `k8s:` source) plus
  `k8s:io.kubernetes.pod.namespace=<policy namespace>` (a `matchLabels` entry for that key is
  overwritten); a policy without a namespace is in `default` (`ExtractNamespaceOrDefault`);
- a peer `podSelector` alone selects pods of the policy's namespace; a `namespaceSelector` has
  every key prefixed with `io.cilium.k8s.namespace.labels.` (the namespace's labels as Cilium
  attaches them to pods, `kubernetes.io/metadata.name` among them) and is ANDed with the
  peer's `podSelector`, with no namespace pinned; an empty `namespaceSelector: {}` becomes
  `k8s:io.kubernetes.pod.namespace Exists` (every namespace);
- with policy-default-local-cluster (`BuildOptions.local_cluster`) the peer pod selector gets
  `k8s:io.cilium.k8s.policy.cluster=<local>` unless it names that key itself. In that code an
  *ingress* peer is parsed even when it holds only an `ipBlock` (egress checks for a selector
  first), so with the option on an ingress `ipBlock` peer also selects the pods of the policy's
  namespace in the local cluster; hushflow models that as read (tests cite it);
- `ipBlock` becomes a CIDR rule with its `except` list (`fromCIDRSet`/`toCIDRSet`): it selects
  CIDR identities (addresses outside the cluster), never a pod by its IP;
- a rule with no `from`/`to` (absent or `[]`) matches every peer (Cilium's wildcard selector:
  an L3-less entry); its `ports` apply to each peer entry, one port rule per port; a port
  defaults to all ports ("0"), its protocol to TCP; `endPort` is kept; a named port is a port
  name the pod specs resolve (hushflow.engine.pods);
- every entry is an allow with default-deny on: a direction with entries is default-deny. With
  no ingress entry, ingress still gets a deny-everything entry when policyTypes names Ingress or
  does not name Egress (so a policy with neither ingress nor egress rules isolates ingress);
  with no egress entry, egress gets one when policyTypes names Egress. Rules in a direction
  policyTypes does not name are still enforced (Cilium builds them regardless);
- the rules carry `k8s:io.cilium.k8s.policy.derived-from=NetworkPolicy`, `name` (the
  `policy.cilium.io/name` or `io.cilium.name` annotation, else metadata.name), `namespace` and
  `uid` (`GetPolicyLabelsv1`, `pkg/k8s/apis/cilium.io/utils/utils.go` GetPolicyLabels): Hubble
  names such a policy kind "NetworkPolicy" in `*_allowed_by`.

Validation is the API server's: the bundled JSON schema (schemas/README.md: Kubernetes 1.37's
OpenAPI, strict) and kubernetes/kubernetes `pkg/apis/networking/validation/validation.go`
(ValidateNetworkPolicyPeer: a peer names something, an ipBlock stands alone; ValidateIPBlock:
the cidr and each except parse, every except lies strictly inside the cidr;
ValidateNetworkPolicyPort: TCP/UDP/SCTP, a port number 1-65535 or an IANA service name, endPort
only with a numeric port and not below it; policyTypes only Ingress/Egress, at most two).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from jsonschema import ValidationError

from hushflow.policy.diagnostics import Diagnostic
from hushflow.policy.labels import NAMESPACE_KEY, NAMESPACE_LABELS_PREFIX, Requirement, Selector
from hushflow.policy.model import (
    CLUSTER_KEY,
    BuildOptions,
    CIDRPeer,
    Direction,
    PeerRule,
    Policy,
    PolicyRef,
    PortProtocol,
    PortRule,
    Rule,
)
from hushflow.policy.names import subdomain_problem
from hushflow.policy.schema import bundled_schema, describe_error, strict_validator  # shared wording and RE2 patterns
from hushflow.policy.source import FieldPath, Location
from hushflow.policy.yamlsource import Manifest

NETWORK_POLICY = "NetworkPolicy"
API_VERSION = "networking.k8s.io/v1"
SCHEMA_FILE = "k8s-v1.37-networkpolicy_networking_v1.json"
# pkg/annotation/k8s.go: PolicyName, then PolicyNameAlias.
NAME_ANNOTATIONS = ("policy.cilium.io/name", "io.cilium.name")
_PROTOCOLS = ("TCP", "UDP", "SCTP")
# IANA_SVC_NAME (k8s.io/apimachinery validation.IsValidPortName): 1-15 characters, lowercase
# letters, digits and '-', at least one letter, no leading, trailing or double '-'.
_SVC_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_PEER_FIELD = {"ingress": ("from", "fromEndpoints", "fromCIDRSet"), "egress": ("to", "toEndpoints", "toCIDRSet")}


@cache
def _validator() -> Any:
    """The bundled schema with its `$defs` inlined (it has no cycles): resolving `$ref` on every
    object costs jsonschema about twice the time of the inlined form."""
    schema = bundled_schema(SCHEMA_FILE)
    return strict_validator(_inline(schema, schema.get("$defs", {})))


def _inline(node: Any, defs: Mapping[str, Any], depth: int = 0) -> Any:
    if depth > 32:
        raise ValueError("the bundled NetworkPolicy schema refers to itself")
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            siblings = {k: v for k, v in node.items() if k not in ("$ref", "description")}
            return {**_inline(defs[ref.removeprefix("#/$defs/")], defs, depth + 1), **siblings}
        return {k: _inline(v, defs, depth) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs, depth) for v in node]
    return node


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _port_name_problem(name: str) -> str | None:
    if len(name) > 15:
        return "must be at most 15 characters"
    if not _SVC_NAME.fullmatch(name):
        return "must consist of lowercase letters, digits and '-' (not at either end, never doubled)"
    if not any("a" <= c <= "z" for c in name):
        return "must contain at least one letter"
    return None


def _network(text: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if not isinstance(text, str) or "/" not in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def check_network_policy(manifest: Manifest, diagnostics: list[Diagnostic]) -> bool:
    """Schema-check one NetworkPolicy, then what the API server's validation refuses beyond the
    schema; every problem is an HF010 at its field. True when its model can be built safely."""
    data = manifest.data
    problems = 0
    for error in _validator().iter_errors(data):
        for path, message, hint in _schema_problems(error):
            problems += 1
            diagnostics.append(Diagnostic("HF010", message, manifest.locate(path), hint))
    if problems:
        return False
    found: list[tuple[FieldPath, str, str]] = []
    spec = _dict(data.get("spec"))
    types = _list(spec.get("policyTypes"))
    for index, value in enumerate(types):
        if value not in ("Ingress", "Egress"):
            found.append((("spec", "policyTypes", index), f"{value!r} is not one of: Ingress, Egress", ""))
    if len(types) > 2:
        found.append((("spec", "policyTypes"), f"has {len(types)} items; at most 2 allowed", ""))
    found.extend(_selector_problems(spec.get("podSelector"), ("spec", "podSelector")))
    for section, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, entry in enumerate(_list(spec.get(section))):
            entry = _dict(entry)
            for j, port in enumerate(_list(entry.get("ports"))):
                found.extend(_port_problems(_dict(port), ("spec", section, i, "ports", j)))
            for j, peer in enumerate(_list(entry.get(peers_key))):
                peer_path = ("spec", section, i, peers_key, j)
                found.extend(_peer_problems(_dict(peer), peer_path))
                for key in ("podSelector", "namespaceSelector"):
                    found.extend(_selector_problems(_dict(peer).get(key), (*peer_path, key)))
    for path, message, hint in found:
        diagnostics.append(Diagnostic(
            "HF010", message, manifest.locate(path), hint or "the API server refuses the NetworkPolicy"
        ))
    return not found


def _schema_problems(error: ValidationError) -> list[tuple[FieldPath, str, str]]:
    """The shared wording (schema.py), and Kubernetes' nullable types (`["array", "null"]`:
    null is the same as absent) worded by their one real type."""
    expected = error.validator_value
    if error.validator == "type" and isinstance(expected, list):
        real = [t for t in expected if t != "null"] or expected
        words = " or ".join(f"{'an' if t[:1] in 'aeiou' else 'a'} {t}" for t in real)
        return [(tuple(error.absolute_path), f"must be {words}, not {_type_name(error.instance)}", "")]
    if error.validator == "oneOf" and tuple(error.absolute_path)[-1:] == ("port",):  # IntOrString
        return [(tuple(error.absolute_path), f"must be a number or a port name, not {_type_name(error.instance)}", "")]
    return [(p.path, p.message, p.hint) for p in describe_error(error)]


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a fractional number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "null" if value is None else "an object"


def _port_problems(port: Mapping[str, Any], path: FieldPath) -> list[tuple[FieldPath, str, str]]:
    out: list[tuple[FieldPath, str, str]] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in _PROTOCOLS:
        out.append(((*path, "protocol"), f"{protocol!r} is not one of: {', '.join(_PROTOCOLS)}", ""))
    number = port.get("port")
    if isinstance(number, bool):
        number = None
    if isinstance(number, int) and not 1 <= number <= 65535:
        out.append(((*path, "port"), f"{number} is out of range: must be between 1 and 65535", ""))
    elif isinstance(number, str):
        problem = _port_name_problem(number)
        if problem is not None:
            out.append(((*path, "port"), f"{number!r} is not a port name: it {problem}",
                        "a port is a number (unquoted) or a container port's name"))
    end = port.get("endPort")
    if end is not None:
        if not isinstance(number, int):
            out.append(((*path, "endPort"), "endPort needs a numeric port", "write `port: <first>` before endPort"))
        elif not number <= end <= 65535:
            out.append(((*path, "endPort"), f"endPort {end} must be between port {number} and 65535", ""))
    return out


_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
# A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters,
# alphanumerics with '-', '_' or '.' inside (k8s.io/apimachinery validation.IsQualifiedName).
_NAME_PART = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def _key_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (subdomain_problem(prefix) is not None):
        return f"its prefix {prefix!r} is not a DNS-1123 subdomain"
    if not name or len(name) > 63 or not _NAME_PART.fullmatch(name):
        return "its name must be 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    return None


def _value_problem(value: str) -> str | None:
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        return "must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    return None


def _selector_problems(raw: Any, path: FieldPath) -> list[tuple[FieldPath, str, str]]:
    """ValidateLabelSelector (apimachinery metav1 validation): label keys and values, operators,
    and values only with In/NotIn (at least one there)."""
    selector = _dict(raw)
    out: list[tuple[FieldPath, str, str]] = []
    for key, value in _dict(selector.get("matchLabels")).items():
        problem = _key_problem(str(key))
        if problem is not None:
            out.append(((*path, "matchLabels", str(key)), f"label key {key!r} is not valid: {problem}", ""))
        problem = _value_problem(str(value or ""))
        if problem is not None:
            out.append(((*path, "matchLabels", str(key)), f"label value {value!r} {problem}", ""))
    for index, expression in enumerate(_list(selector.get("matchExpressions"))):
        expression = _dict(expression)
        where = (*path, "matchExpressions", index)
        problem = _key_problem(str(expression.get("key", "")))
        if problem is not None:
            out.append(((*where, "key"), f"label key {expression.get('key')!r} is not valid: {problem}", ""))
        operator, values = expression.get("operator"), _list(expression.get("values"))
        if operator not in _OPERATORS:
            out.append(((*where, "operator"), f"{operator!r} is not one of: {', '.join(_OPERATORS)}", ""))
        elif operator in ("In", "NotIn") and not values:
            out.append(((*where, "values"), f"must be specified when operator is {operator}", ""))
        elif operator in ("Exists", "DoesNotExist") and values:
            out.append(((*where, "values"), f"may not be specified when operator is {operator}", ""))
    return out


def _peer_problems(peer: Mapping[str, Any], path: FieldPath) -> list[tuple[FieldPath, str, str]]:
    present = [key for key in ("podSelector", "namespaceSelector", "ipBlock") if peer.get(key) is not None]
    if not present:
        return [(path, "must specify a peer (podSelector, namespaceSelector or ipBlock)", "")]
    if "ipBlock" in present and len(present) > 1:
        return [(path, "may not specify both ipBlock and another peer",
                 "write the ipBlock and the selectors as two entries (either one matches)")]
    block = _dict(peer.get("ipBlock"))
    if "ipBlock" not in present:
        return []
    cidr = _network(block.get("cidr"))
    if cidr is None:
        return [((*path, "ipBlock", "cidr"), f"{block.get('cidr')!r} is not a valid CIDR",
                 "write a prefix such as 192.0.2.0/24 or 2001:db8::/32")]
    out: list[tuple[FieldPath, str, str]] = []
    for k, text in enumerate(_list(block.get("except"))):
        inner = _network(text)
        where = (*path, "ipBlock", "except", k)
        if inner is None:
            out.append((where, f"{text!r} is not a valid CIDR", ""))
        elif inner.version != cidr.version or not inner.subnet_of(cidr) or inner == cidr:  # type: ignore[arg-type]
            out.append((where, f"{text!r} must be a strict subset of cidr {block.get('cidr')!r}", ""))
    return out


class _Translator:
    """The Cilium rule of one valid NetworkPolicy."""

    def __init__(self, manifest: Manifest, options: BuildOptions) -> None:
        self.manifest = manifest
        self.options = options
        metadata = _dict(manifest.data.get("metadata"))
        self.namespace = str(metadata.get("namespace") or "default")
        annotations = _dict(metadata.get("annotations"))
        name = next((str(annotations[k]) for k in NAME_ANNOTATIONS if annotations.get(k)), "")
        self.ref = PolicyRef(
            NETWORK_POLICY, name or str(metadata.get("name", "")), self.namespace, str(metadata.get("uid") or "")
        )

    def at(self, path: FieldPath) -> Location:
        return self.manifest.locate(path)

    @staticmethod
    def _requirements(raw: Mapping[str, Any], prefix: str = "") -> list[Requirement]:
        """A Kubernetes label selector as Cilium's `k8s:` requirements (keys get `prefix`)."""
        out = [
            Requirement(f"k8s:{prefix}{key}", "In", frozenset({"" if value is None else str(value)}))
            for key, value in _dict(raw.get("matchLabels")).items()
        ]
        for expression in _list(raw.get("matchExpressions")):
            expression = _dict(expression)
            values = frozenset(str(v) for v in _list(expression.get("values")))
            out.append(Requirement(f"k8s:{prefix}{expression.get('key', '')}", expression.get("operator", "In"),
                                   values))
        return out

    def _pod_selector(self, raw: Mapping[str, Any], path: FieldPath) -> Selector:
        written = self._requirements(raw)
        kept = [r for r in written if not (r.key == f"k8s:{NAMESPACE_KEY}" and r.operator == "In"
                                           and NAMESPACE_KEY in _dict(raw.get("matchLabels")))]
        kept.append(Requirement(f"k8s:{NAMESPACE_KEY}", "In", frozenset({self.namespace})))
        return Selector(tuple(kept), tuple(written), self.at(path))

    def _peer_selector(self, peer: Mapping[str, Any], path: FieldPath) -> Selector:
        pods_raw = peer.get("podSelector")
        pods = _dict(pods_raw)
        pod_reqs = self._requirements(pods)
        names_cluster = any(r.key == f"k8s:{CLUSTER_KEY}" and (r.operator != "In" or r.values != frozenset({""}))
                            for r in pod_reqs)
        if self.options.local_cluster and not names_cluster:
            pod_reqs.append(Requirement(f"k8s:{CLUSTER_KEY}", "In", frozenset({self.options.local_cluster})))
        namespaces = peer.get("namespaceSelector")
        if namespaces is not None:
            ns_reqs = self._requirements(_dict(namespaces), NAMESPACE_LABELS_PREFIX)
            written = tuple(ns_reqs + self._requirements(pods))
            if not ns_reqs:
                ns_reqs = [Requirement(f"k8s:{NAMESPACE_KEY}", "Exists")]
            return Selector(tuple(ns_reqs + pod_reqs), written, self.at((*path, "namespaceSelector")))
        written = tuple(self._requirements(pods))
        pod_reqs = [r for r in pod_reqs if not (r.key == f"k8s:{NAMESPACE_KEY}" and NAMESPACE_KEY in pods.get(
            "matchLabels", {}) and r.operator == "In")]
        pod_reqs.append(Requirement(f"k8s:{NAMESPACE_KEY}", "In", frozenset({self.namespace})))
        where = (*path, "podSelector") if pods_raw is not None else path
        return Selector(tuple(pod_reqs), written, self.at(where))

    def _ports(self, raw: list[Any], path: FieldPath) -> tuple[PortRule, ...] | None:
        if not raw:
            return None
        out = []
        for index, item in enumerate(raw):
            item = _dict(item)
            port = item.get("port")
            text = "0" if port is None else str(port).lower()
            end = item.get("endPort")
            where = self.at((*path, index))
            protocol = str(item.get("protocol") or "TCP")
            out.append(PortRule((PortProtocol(text, end if isinstance(end, int) else None, protocol, where),), where))
        return tuple(out)

    def _entries(self, direction: Direction, spec: Mapping[str, Any]) -> list[PeerRule]:
        peers_key, endpoints_field, cidr_field = _PEER_FIELD[direction]
        entries: list[PeerRule] = []
        for i, raw in enumerate(_list(spec.get(direction))):
            raw = _dict(raw)
            path: FieldPath = ("spec", direction, i)
            ports = self._ports(_list(raw.get("ports")), (*path, "ports"))
            peers = _list(raw.get(peers_key))
            if not peers:  # absent or []: every peer (Cilium's wildcard selector)
                entries.append(PeerRule(direction, False, self.at(path), ports=ports))
                continue
            for j, peer in enumerate(peers):
                peer = _dict(peer)
                peer_path = (*path, peers_key, j)
                has_selector = peer.get("podSelector") is not None or peer.get("namespaceSelector") is not None
                endpoints: tuple[Selector, ...] | None = None
                # pkg/k8s/network_policy.go: an ingress peer is parsed unconditionally (see above).
                if has_selector or (direction == "ingress" and self.options.local_cluster):
                    endpoints = (self._peer_selector(peer, peer_path),)
                cidrs: tuple[CIDRPeer, ...] | None = None
                block = peer.get("ipBlock")
                if isinstance(block, dict):
                    excepts = tuple(n for n in (_network(e) for e in _list(block.get("except"))) if n is not None)
                    cidrs = (CIDRPeer(_network(block.get("cidr")), None, None, excepts,
                                      self.at((*peer_path, "ipBlock"))),)
                fields = tuple(name for name, value in ((endpoints_field, endpoints), (cidr_field, cidrs))
                               if value is not None)
                # What the user wrote: one peer kind (the API server refuses ipBlock with a selector).
                written = (cidr_field,) if cidrs is not None else (endpoints_field,)
                entries.append(PeerRule(
                    direction, False, self.at(peer_path), endpoints=endpoints, cidrs=cidrs, ports=ports,
                    l3_fields=fields, l3_nonempty=written, cluster_name=self.options.cluster_name,
                ))
        return entries

    def policy(self) -> Policy:
        data = self.manifest.data
        spec = _dict(data.get("spec"))
        types = _list(spec.get("policyTypes"))
        ingress = self._entries("ingress", spec)
        egress = self._entries("egress", spec)
        implied = ("spec", "policyTypes") if types else ("spec",)
        if not ingress and ("Ingress" in types or "Egress" not in types):
            ingress = [PeerRule("ingress", False, self.at(implied), is_empty=True)]
        if not egress and "Egress" in types:
            egress = [PeerRule("egress", False, self.at(implied), is_empty=True)]
        rule = Rule(
            policy=self.ref,
            where=self.at(("spec",)),
            subject=self._pod_selector(_dict(spec.get("podSelector")), ("spec", "podSelector")),
            node_subject=None,
            ingress=tuple(ingress),
            egress=tuple(egress),
            default_deny_ingress=bool(ingress),
            default_deny_egress=bool(egress),
        )
        return Policy(self.ref, (rule,), self.manifest.locate())


def build_network_policy(manifest: Manifest, options: BuildOptions | None = None) -> Policy:
    """The Cilium rule of one NetworkPolicy that `check_network_policy` accepted."""
    return _Translator(manifest, options or BuildOptions()).policy()
