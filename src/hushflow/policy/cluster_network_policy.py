"""The Network Policy API's ClusterNetworkPolicy, as Cilium 1.20 reads it: schema and lint.

Cilium 1.20 watches `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy objects (the
network-policy-api v0.2.0 release) when the agent runs with `enable-k8s-cluster-network-policy`
(off by default); older Cilium releases ignore the kind. What hushflow knows of it, and where
each fact comes from, is in docs/cluster-network-policy.md.

This module checks one object as the API server and Cilium's parser would, and reports what a
reader is likely to get wrong. It does not build rules: the decision engine does not know the
tiers yet, so a ClusterNetworkPolicy is validated, counted and reported, never enforced by
hushflow's model.

- Schema: the v0.2.0 *experimental-channel* CRD (a superset of the standard one: it adds the
  `domainNames` and `nodes` egress peers Cilium reads), converted like the Cilium CRDs
  (schemas/README.md). Its CEL rules (`x-kubernetes-validations`), which JSON Schema cannot
  express, are checked here in Python, with the CRD's own messages.
- Lint: HF070-HF075 (docs/lint.md).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from jsonschema.protocols import Validator

from hushflow.policy.diagnostics import CHECKS, Check, Diagnostic, Severity
from hushflow.policy.names import subdomain_problem
from hushflow.policy.schema import _FORMATS, _CiliumValidator, _describe
from hushflow.policy.source import FieldPath
from hushflow.policy.yamlsource import Manifest

KIND = "ClusterNetworkPolicy"
API_VERSION = "policy.networking.k8s.io/v1alpha2"
# Cilium 1.20 is the first release with a ClusterNetworkPolicy watcher (cilium#47227 documents
# "available starting with Cilium 1.20"); pkg/k8s/cluster_network_policy.go parses it.
ENFORCED_FROM = (1, 20)
BUNDLE_VERSION = "v0.2.0"
SCHEMA_FILE = "npa-v0.2.0-experimental-clusternetworkpolicy_v1alpha2.json"
STANDARD_SCHEMA_FILE = "npa-v0.2.0-standard-clusternetworkpolicy_v1alpha2.json"
# Egress peers only the experimental-channel CRD has (the standard one, which Cilium's docs
# install, prunes or rejects them).
EXPERIMENTAL_PEERS = ("domainNames", "nodes")
TIERS = ("Admin", "Baseline")
ACTIONS = ("Accept", "Deny", "Pass")
_PORT_PROTOCOLS = ("tcp", "udp", "sctp")

# The codes of this kind. They are registered in the catalogue when this module is imported
# (policy.loading imports it), so a Diagnostic with one of them has a severity and a name.
CLUSTER_NETWORK_POLICY_CHECKS = (
    Check("HF070", "cnp-kind-not-enforced", Severity.WARNING,
          "A ClusterNetworkPolicy linted for a Cilium version that does not enforce the kind."),
    Check("HF071", "cnp-kind-needs-agent-option", Severity.INFO,
          "Cilium enforces ClusterNetworkPolicy only with enable-k8s-cluster-network-policy."),
    Check("HF072", "domain-names-not-accept", Severity.ERROR,
          "domainNames in a Deny or Pass rule: Cilium refuses the whole policy."),
    Check("HF073", "domain-names-in-baseline", Severity.WARNING,
          "domainNames in the Baseline tier: the API means them for the Admin tier only."),
    Check("HF074", "pass-in-baseline", Severity.WARNING,
          "Pass in the Baseline tier: no tier follows, only the cluster default."),
    Check("HF075", "experimental-peer", Severity.INFO,
          "domainNames or nodes: fields only the experimental-channel CRD has."),
)
for _check in CLUSTER_NETWORK_POLICY_CHECKS:
    CHECKS.setdefault(_check.code, _check)


@cache
def _schema(file_name: str) -> dict[str, Any]:
    text = resources.files("hushflow.policy").joinpath("schemas", file_name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def validator() -> Validator:
    """The v0.2.0 experimental-channel schema (RE2 patterns, int32 and cidr formats as for Cilium's)."""
    return _CiliumValidator(_schema(SCHEMA_FILE), format_checker=_FORMATS)


def _schema_problems(data: dict[str, Any]) -> Iterator[tuple[FieldPath, str, str]]:
    for error in validator().iter_errors(data):
        if error.validator in ("maxProperties", "minProperties"):
            # Subjects, peers, protocols and ports are one-of unions written as objects: the CRD
            # says "exactly one field" with min/maxProperties 1.
            fields = ", ".join(sorted((error.schema.get("properties") or {}).keys()))
            count = len(error.instance) if isinstance(error.instance, dict) else 0
            yield (tuple(error.absolute_path), f"sets {count} fields; exactly one of {fields} is required",
                   "keep exactly one")
            continue
        for problem in _describe(error):
            yield problem.path, problem.message, problem.hint


def _rules(spec: dict[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    for section in ("ingress", "egress"):
        for index, rule in enumerate(spec.get(section) or []):
            yield section, index, rule


def _cel_problems(spec: dict[str, Any]) -> Iterator[tuple[FieldPath, str]]:
    """The CRD's x-kubernetes-validations, on an object the schema accepted (the API server
    evaluates CEL only on schema-valid values)."""
    for section, index, rule in _rules(spec):
        base: FieldPath = ("spec", section, index)
        protocols = rule.get("protocols") or []
        for p_index, protocol in enumerate(protocols):
            for name in _PORT_PROTOCOLS:
                port_range = ((protocol.get(name) or {}).get("destinationPort") or {}).get("range")
                if port_range is not None and not port_range["start"] < port_range["end"]:
                    # CRD: PortRange `self.start < self.end`
                    yield (*base, "protocols", p_index, name, "destinationPort", "range"), (
                        f"Start port must be less than End port (start {port_range['start']}, "
                        f"end {port_range['end']})"
                    )
        if section != "egress":
            continue
        peers = rule.get("to") or []
        for t_index, peer in enumerate(peers):
            for n_index, network in enumerate(peer.get("networks") or []):
                if not _is_cidr(network):
                    # CRD: CIDR `isCIDR(self)`
                    yield (*base, "to", t_index, "networks", n_index), (
                        f"Invalid CIDR format provided: {network!r} (write a prefix such as 10.0.0.0/8 or fd00::/8)"
                    )
        named = any("destinationNamedPort" in protocol for protocol in protocols)
        ipish = any(key in peer for peer in peers for key in ("networks", "nodes", "domainNames"))
        if named and ipish:
            # CRD: ClusterNetworkPolicyEgressRule, networks/nodes/domainNames with namedPorts
            yield (*base, "protocols"), (
                "networks/nodes/domainNames peer cannot be set with namedPorts since there are no "
                "namedPorts for networks/nodes/domainNames"
            )


def _is_cidr(text: str) -> bool:
    """Kubernetes' CEL isCIDR: an IPv4 or IPv6 prefix (host bits may be set), no zone, no
    leading zeros in IPv4 octets."""
    if "/" not in text or "%" in text:
        return False
    address, _, length = text.partition("/")
    if not length.isdigit() or (len(length) > 1 and length.startswith("0")):
        return False
    try:
        ipaddress.ip_network(text, strict=False)
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _lint(manifest: Manifest, spec: dict[str, Any]) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    tier = spec["tier"]
    for section, index, rule in _rules(spec):
        base: FieldPath = ("spec", section, index)
        action = rule["action"]
        if tier == "Baseline" and action == "Pass":
            found.append(Diagnostic(
                "HF074",
                "Pass in the Baseline tier: Pass hands the connection to the next tier, and after Baseline there "
                "is only the cluster default (allow); this rule only keeps lower Baseline rules from matching",
                manifest.locate((*base, "action")),
                "write Accept if the traffic is meant to be allowed; Pass is for the Admin tier, to let "
                "NetworkPolicy and Baseline decide",
            ))
        for t_index, peer in enumerate(rule.get("to") or []) if section == "egress" else ():
            path = (*base, "to", t_index)
            for key in EXPERIMENTAL_PEERS:
                if key in peer:
                    found.append(Diagnostic(
                        "HF075",
                        f"{key} is an experimental-channel field of network-policy-api {BUNDLE_VERSION}: the "
                        "standard-channel CRD (the one Cilium's documentation installs) has no such field, so the "
                        "API server rejects or prunes it there",
                        manifest.locate((*path, key)),
                        "install the experimental-channel CRD"
                        + ("; Cilium also needs enable-node-selector-labels for nodes peers, else it refuses "
                           "the policy" if key == "nodes" else ""),
                    ))
            if "domainNames" not in peer:
                continue
            if action != "Accept":
                found.append(Diagnostic(
                    "HF072",
                    f"domainNames in a {action} rule: the API allows domainNames only in Accept rules, and "
                    "Cilium refuses the whole policy (\"egress.to.domainNames is only supported for "
                    "egress.action=Accept\"), so none of its rules is enforced",
                    manifest.locate((*path, "domainNames")),
                    "Accept the domains, then Deny the rest with a later rule (e.g. to networks 0.0.0.0/0 and ::/0)",
                ))
            if tier == "Baseline":
                found.append(Diagnostic(
                    "HF073",
                    "domainNames in the Baseline tier: the Network Policy API restricts domainNames to the Admin "
                    "tier (NPEP-133, network-policy-api#366); the v0.2.0 CRD does not check it yet and Cilium "
                    "1.20 enforces it, but a later CRD rejects it",
                    manifest.locate((*path, "domainNames")),
                    "move the rule to an Admin-tier ClusterNetworkPolicy",
                ))
    return found


def check_cluster_network_policy(
    manifest: Manifest, cilium_version: tuple[int, int]
) -> tuple[list[Diagnostic], bool]:
    """Diagnostics of one ClusterNetworkPolicy, and whether the object is valid (the API server
    would store it and Cilium would parse it)."""
    found: list[Diagnostic] = []
    data = manifest.data
    valid = True
    metadata = data.get("metadata")
    if isinstance(metadata, dict) and "name" in metadata:
        problem = subdomain_problem(metadata["name"])
        if problem is not None:
            valid = False
            found.append(Diagnostic(
                "HF015", f"metadata.name {metadata['name']!r} is not a DNS-1123 subdomain: it {problem}",
                manifest.locate(("metadata", "name")), "the API server refuses the object",
            ))
    if cilium_version < ENFORCED_FROM:
        found.append(Diagnostic(
            "HF070",
            f"ClusterNetworkPolicy is not enforced by Cilium {cilium_version[0]}.{cilium_version[1]}: Cilium "
            f"reads {API_VERSION} from 1.20 on, so this policy allows and denies nothing in that cluster",
            manifest.locate(("kind",)),
            "lint with the --cilium-version the cluster runs, or express the rules as a CiliumClusterwideNetworkPolicy",
        ))
    schema_problems = list(_schema_problems(data))
    found.extend(Diagnostic("HF010", message, manifest.locate(path), hint) for path, message, hint in schema_problems)
    if schema_problems:
        return found, False
    spec = data["spec"]
    cel = list(_cel_problems(spec))
    for path, message in cel:
        found.append(Diagnostic("HF010", message, manifest.locate(path)))
    if cel:
        return found, False
    lint = _lint(manifest, spec)
    found.extend(lint)
    valid = valid and not any(d.level == Severity.ERROR for d in lint)
    return found, valid


def agent_option_note(manifest: Manifest, cilium_version: tuple[int, int]) -> Diagnostic | None:
    """Once per run, for the first ClusterNetworkPolicy: from 1.20, Cilium enforces the kind only
    with enable-k8s-cluster-network-policy (daemon flag, default false; Helm
    k8sClusterNetworkPolicy.enabled)."""
    if cilium_version < ENFORCED_FROM:
        return None
    return Diagnostic(
        "HF071",
        "Cilium enforces ClusterNetworkPolicy only when the agent runs with enable-k8s-cluster-network-policy=true "
        "(Helm k8sClusterNetworkPolicy.enabled; off by default in 1.20) and the network-policy-api CRD is installed",
        manifest.locate(),
        "check `kubectl -n kube-system get configmap cilium-config -o yaml` for enable-k8s-cluster-network-policy",
    )
