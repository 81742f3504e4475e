"""The Network Policy API's ClusterNetworkPolicy, as Cilium 1.20 reads it: schema and lint.

Cilium 1.20 watches `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy objects (the
network-policy-api v0.2.0 release) when the agent runs with `enable-k8s-cluster-network-policy`
(off by default); older Cilium releases ignore the kind. What hushflow knows of it, and where
each fact comes from, is in docs/cluster-network-policy.md.

This module checks one object as the API server and Cilium's parser would, and reports what a
reader is likely to get wrong (`check_cluster_network_policy`). It also models the object as
Cilium's parser does (`build_cluster_network_policy`: one entry per peer with its tier and
priority) and decides a connection through the tiers (`decide`: Admin, then the
NetworkPolicy tier's verdict given by the caller, then Baseline, then the default). The decision
engine does not call it yet; loading only validates and counts the objects.

- Schema: the v0.2.0 *experimental-channel* CRD (a superset of the standard one: it adds the
  `domainNames` and `nodes` egress peers Cilium reads), converted like the Cilium CRDs
  (schemas/README.md). Its CEL rules (`x-kubernetes-validations`), which JSON Schema cannot
  express, are checked here in Python, with the CRD's own messages.
- Lint: HF070-HF075 (docs/lint.md).
- Model and decision: the table in tests/policy/test_cluster_network_policy.py, one row per
  semantic with its source.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Literal

from jsonschema.protocols import Validator

from hushflow.policy.diagnostics import Diagnostic, Severity
from hushflow.policy.labels import NAMESPACE_KEY, NAMESPACE_LABELS_PREFIX, Requirement, Selector
from hushflow.policy.model import CLUSTER_KEY, Direction, PolicyRef
from hushflow.policy.names import subdomain_problem
from hushflow.policy.schema import bundled_schema, describe_error, strict_validator
from hushflow.policy.source import FieldPath, Location
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

@cache
def validator() -> Validator:
    """The v0.2.0 experimental-channel schema (RE2 patterns, int32 and cidr formats as for Cilium's)."""
    return strict_validator(bundled_schema(SCHEMA_FILE))


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
        for problem in describe_error(error):
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


def priority_ties(manifests: Sequence[Manifest]) -> list[Diagnostic]:
    """HF076 across valid ClusterNetworkPolicies: same tier, same priority, and different actions
    in one direction. The CRD's `priority` doc leaves the order of such policies undefined;
    Cilium resolves equal priorities deny over allow (CFP-42904), which the author may not mean.
    Subjects and peers are not compared: the warning says they *may* match the same connection."""
    first_seen: dict[tuple[str, int, str], dict[str, Manifest]] = {}
    found: list[Diagnostic] = []
    for manifest in manifests:
        spec = manifest.data["spec"]
        reported = False
        for section, _index, rule in _rules(spec):
            key = (spec["tier"], spec["priority"], section)
            by_action = first_seen.setdefault(key, {})
            others = [m for action, m in by_action.items() if action != rule["action"] and m is not manifest]
            by_action.setdefault(rule["action"], manifest)
            if others and not reported:
                reported = True
                other = others[0]
                where = other.locate(("metadata", "name"))
                found.append(Diagnostic(
                    "HF076",
                    f"same tier ({spec['tier']}) and priority ({spec['priority']}) as ClusterNetworkPolicy "
                    f"{other.data['metadata'].get('name', '')} at {where.file}:{where.line}, with a different "
                    f"{section} action: the API leaves their order undefined; Cilium lets a Deny win where both "
                    "match (between Pass and Accept no order is documented)",
                    manifest.locate(("spec", "priority")),
                    "give each policy its own priority when their rules can match the same connection",
                ))
    return found


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


# -- the model: rules as Cilium's parser builds them, and the tier decision ----------------------
#
# pkg/k8s/cluster_network_policy.go (0ac689d7) turns each peer of each rule into one policy entry
# with the object's tier, `spec.priority + index/100` and the rule's verdict; the agent evaluates
# tiers Admin -> Normal (CNP, CCNP, NetworkPolicy) -> Baseline -> default (pkg/policy/types,
# `Admin Tier = iota`, Normal, Baseline; cilium#42896). docs/cluster-network-policy.md has the
# sources of every step.

Tier = Literal["Admin", "Baseline"]
Verdict = Literal["allow", "deny", "pass"]
_VERDICTS: dict[str, Verdict] = {"Accept": "allow", "Deny": "deny", "Pass": "pass"}
KUBE_DNS_SELECTOR = ("any:k8s-app", "kube-dns")  # parser: labels.ParseSelectLabel("k8s-app=kube-dns")
KUBE_DNS_PORT_NAMES = ("dns", "dns-tcp")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class KcnpPort:
    """One `protocols` entry: a protocol with one port or a range, or a named port (any protocol)."""

    protocol: str  # TCP, UDP, SCTP, or ANY for a named port
    first: int = 0
    last: int = 0
    name: str | None = None

    def matches(self, protocol: str, port: int, port_name: str | None) -> bool:
        if self.name is not None:
            return port_name is not None and port_name.lower() == self.name.lower()
        return protocol.upper() == self.protocol and self.first <= port <= self.last


@dataclass(frozen=True, slots=True)
class KcnpPeer:
    """One peer: a selector (namespaces, pods or nodes), CIDRs, or domain names; `everything`
    for the wildcard (no `from`/`to`, or a fail-closed Deny)."""

    where: Location
    selector: Selector | None = None
    networks: tuple[IPNetwork, ...] = ()
    domains: tuple[str, ...] = ()
    everything: bool = False

    def matches(self, labels: Mapping[str, str], ip: IPAddress | None, name: str | None, world: bool = True) -> bool:
        """`world`: the peer has no label identity. Networks become CIDR selectors and domain
        names FQDN selectors (pkg/k8s/cluster_network_policy.go), which select only such peers
        under Cilium's default policy-cidr-match-mode (not pods or nodes by their IPs)."""
        if self.everything:
            return True
        if self.selector is not None:
            return self.selector.matches(labels)
        if not world:
            return False
        if self.networks:
            return ip is not None and any(ip in network for network in self.networks)
        return name is not None and any(_domain_matches(domain, name) for domain in self.domains)


@dataclass(frozen=True, slots=True)
class KcnpRule:
    """One policy entry of a ClusterNetworkPolicy, as Cilium's parser makes it."""

    policy: PolicyRef
    tier: Tier
    priority: float  # spec.priority + index/100 (the rule's place in its ingress or egress list)
    verdict: Verdict
    direction: Direction
    subject: Selector
    peer: KcnpPeer
    ports: tuple[KcnpPort, ...] | None  # None: every port and protocol
    rule_name: str
    where: Location
    dns_helper: bool = False  # the kube-dns rule Cilium adds for a domainNames Accept

    def cilium_labels(self) -> tuple[str, ...]:
        return self.policy.cilium_labels()

    @property
    def log_value(self) -> str | None:
        """The API has no log field: such a rule never puts a tag in policy_log."""
        return None


def _domain_matches(domain: str, name: str) -> bool:
    # Parser: "*.x" becomes Cilium's "**.x", one or more labels before x (the API's meaning);
    # anything else is an exact matchName. DNS names compare without case and trailing dot.
    domain, name = domain.lower().rstrip("."), name.lower().rstrip(".")
    if domain.startswith("*."):
        suffix = domain[1:]
        return name.endswith(suffix) and len(name) > len(suffix)
    return name == domain


def _ns_requirements(raw: Mapping[str, Any]) -> list[Requirement]:
    """A namespace selector as Cilium's processNamespaceSelector makes it: the keys become
    namespace-label keys, and an empty selector selects every namespace."""
    written = [Requirement(f"k8s:{NAMESPACE_LABELS_PREFIX}{r.key.split(':', 1)[1]}", r.operator, r.values)
               for r in _k8s_requirements(raw)]
    return written or [Requirement(f"k8s:{NAMESPACE_KEY}", "Exists")]


def _k8s_requirements(raw: Mapping[str, Any], prefix: str = "k8s") -> list[Requirement]:
    out = [Requirement(f"{prefix}:{key}", "In", frozenset({str(value)}))
           for key, value in (raw.get("matchLabels") or {}).items()]
    out.extend(Requirement(f"{prefix}:{e['key']}", e["operator"], frozenset(str(v) for v in e.get("values") or ()))
               for e in raw.get("matchExpressions") or ())
    return out


class _Builder:
    def __init__(self, manifest: Manifest, local_cluster: str | None) -> None:
        self.manifest = manifest
        self.spec: dict[str, Any] = manifest.data["spec"]
        self.local_cluster = local_cluster
        metadata = manifest.data.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        # GetKCNPPolicyLabels: the policy.cilium.io/name (or io.cilium.name) annotation, else the name.
        name = annotations.get("policy.cilium.io/name") or annotations.get("io.cilium.name") or metadata.get("name")
        self.policy = PolicyRef(KIND, str(name or ""), "", str(metadata.get("uid") or ""))

    def pods(self, raw: Mapping[str, Any], path: FieldPath, *, peer: bool) -> Selector:
        pod_reqs = _k8s_requirements(raw.get("podSelector") or {})
        names_cluster = any(r.key == f"k8s:{CLUSTER_KEY}" for r in pod_reqs)
        requirements = _ns_requirements(raw.get("namespaceSelector") or {}) + pod_reqs
        if peer and self.local_cluster and not names_cluster:
            # kcnpParseNamespacedPod: peers are the local cluster's unless the pod selector names one;
            # the subject is built with cluster "" (any).
            requirements.append(Requirement(f"k8s:{CLUSTER_KEY}", "In", frozenset({self.local_cluster})))
        return Selector(tuple(requirements), tuple(pod_reqs), self.manifest.locate(path))

    def namespaces(self, raw: Mapping[str, Any], path: FieldPath) -> Selector:
        requirements = tuple(_ns_requirements(raw))
        return Selector(requirements, requirements, self.manifest.locate(path))

    def nodes(self, raw: Mapping[str, Any], path: FieldPath) -> Selector:
        # kcnpProcessNodeSelector: node labels, `reserved:remote-node` Exists (so never the local
        # host), and the local cluster.
        written = _k8s_requirements(raw, "node")
        requirements = [*written, Requirement("reserved:remote-node", "Exists")]
        if self.local_cluster and not any(r.key == f"node:{CLUSTER_KEY}" for r in written):
            requirements.append(Requirement(f"k8s:{CLUSTER_KEY}", "In", frozenset({self.local_cluster})))
        return Selector(tuple(requirements), tuple(written), self.manifest.locate(path))

    def subject(self) -> Selector:
        raw = self.spec["subject"]
        if "namespaces" in raw:
            return self.namespaces(raw["namespaces"], ("spec", "subject", "namespaces"))
        return self.pods(raw["pods"], ("spec", "subject", "pods"), peer=False)

    @staticmethod
    def ports(raw: list[Any] | None) -> tuple[KcnpPort, ...] | None:
        if not raw:
            return None
        out = []
        for item in raw:
            if "destinationNamedPort" in item:
                out.append(KcnpPort("ANY", name=item["destinationNamedPort"]))
                continue
            (protocol, body), = item.items()
            port = body["destinationPort"]
            if "range" in port:
                out.append(KcnpPort(protocol.upper(), port["range"]["start"], port["range"]["end"]))
            else:
                out.append(KcnpPort(protocol.upper(), port["number"], port["number"]))
        return tuple(out)

    def peer(self, raw: Mapping[str, Any], path: FieldPath) -> KcnpPeer | None:
        where = self.manifest.locate(path)
        if "pods" in raw:
            return KcnpPeer(where, selector=self.pods(raw["pods"], (*path, "pods"), peer=True))
        if "namespaces" in raw:
            return KcnpPeer(where, selector=self.namespaces(raw["namespaces"], (*path, "namespaces")))
        if "nodes" in raw:
            return KcnpPeer(where, selector=self.nodes(raw["nodes"], (*path, "nodes")))
        if "networks" in raw:
            return KcnpPeer(where, networks=tuple(ipaddress.ip_network(n, strict=False) for n in raw["networks"]))
        if "domainNames" in raw:
            return KcnpPeer(where, domains=tuple(raw["domainNames"]))
        return None  # no field Cilium knows: fail closed (see rules)

    def rules(self) -> list[KcnpRule]:
        tier: Tier = "Baseline" if self.spec["tier"] == "Baseline" else "Admin"
        subject = self.subject()
        out: list[KcnpRule] = []
        for section, index, rule in _rules(self.spec):
            direction: Direction = "ingress" if section == "ingress" else "egress"
            base: FieldPath = ("spec", section, index)
            priority = self.spec["priority"] + index / 100
            verdict = _VERDICTS[rule["action"]]
            ports = self.ports(rule.get("protocols"))
            where = self.manifest.locate(base)

            template = KcnpRule(self.policy, tier, priority, verdict, direction, subject,
                                KcnpPeer(where, everything=True), ports, str(rule.get("name") or ""), where)
            peers_key = "from" if direction == "ingress" else "to"
            raw_peers = rule.get(peers_key) or []
            if not raw_peers:  # the CRD forbids it; the parser reads it as every peer
                out.append(template)
                continue
            for p_index, raw_peer in enumerate(raw_peers):
                path = (*base, peers_key, p_index)
                peer = self.peer(raw_peer, path)
                if peer is None:
                    # Fail closed: an Accept matches nothing, a Deny or Pass denies everything.
                    if verdict != "allow":
                        out.append(replace(template, peer=KcnpPeer(self.manifest.locate(path), everything=True),
                                           verdict="deny"))
                    continue
                if peer.domains:
                    # The DNS rule Cilium adds so the proxy sees the lookups: kube-dns, any
                    # namespace, its named ports dns and dns-tcp, same tier and priority.
                    key, value = KUBE_DNS_SELECTOR
                    dns = Selector((Requirement(key, "In", frozenset({value})),), (), peer.where)
                    out.append(replace(template, peer=KcnpPeer(peer.where, selector=dns), verdict="allow",
                                       ports=tuple(KcnpPort("ANY", name=n) for n in KUBE_DNS_PORT_NAMES),
                                       dns_helper=True))
                out.append(replace(template, peer=peer))
        return out


def build_cluster_network_policy(manifest: Manifest, local_cluster: str | None = None) -> list[KcnpRule]:
    """The policy entries of one valid ClusterNetworkPolicy (check_cluster_network_policy said so)."""
    return _Builder(manifest, local_cluster).rules()
