"""The policy model: Cilium rules as Cilium enforces them, each with where it was written.

Building the model applies Cilium's implicit rules (reference §A.2), so that later stages
match what Cilium enforces rather than what the YAML says:
- a CNP's `endpointSelector` always selects the policy's namespace;
- a CNP's `from/toEndpoints` get the policy namespace unless they name a namespace, use a
  namespace-labels key or select reserved labels; a CCNP's get `namespace Exists`;
- keys without a source mean `any:`, `$key` means `reserved:key`;
- `enableDefaultDeny` defaults per direction to "this rule has entries in that direction";
- with policy-default-local-cluster (on by default from Cilium 1.19) every peer endpoint
  selector that names no cluster gets `k8s:io.cilium.k8s.policy.cluster=<local cluster>`
  (pkg/k8s/apis/cilium.io/utils/utils.go, addClusterFilterByDefault);
- `fromRequires`/`toRequires` (Cilium <= 1.18) are kept as requirement selectors: they grant
  nothing themselves and narrow the `from/toEndpoints` of every rule selecting the same
  endpoint (pkg/policy/rules.go); from 1.19 the CRD keeps them as empty-only fields (maxItems 0,
  cilium#43167) and the agent ignores them (`requires_problems`).

hushflow's one extension of the language: `toFQDNs` inside `egressDeny`, modelled exactly
like an allow rule's `toFQDNs` (`PeerRule.fqdns` on a deny rule).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hushflow.policy.agent_validation import go_parse_port
from hushflow.policy.fqdn import DEFAULT_CILIUM_VERSION, FQDNSelector
from hushflow.policy.labels import (
    NAMESPACE_KEY,
    NAMESPACE_LABELS_PREFIX,
    Label,
    Requirement,
    Selector,
    parse_label,
    written_requirements,
)
from hushflow.policy.source import FieldPath, Location
from hushflow.policy.yamlsource import Manifest

CNP = "CiliumNetworkPolicy"
CCNP = "CiliumClusterwideNetworkPolicy"
CIDR_GROUP = "CiliumCIDRGroup"
POLICY_KINDS = (CNP, CCNP)

Direction = Literal["ingress", "egress"]
# Cilium's default `cluster-name` (pkg/defaults: ClusterName).
DEFAULT_CLUSTER_NAME = "default"
CLUSTER_KEY = "io.cilium.k8s.policy.cluster"
LOCAL_CLUSTER_DEFAULT_SINCE = (1, 19)  # policy-default-local-cluster on by default
REQUIRES_REMOVED_IN = (1, 19)  # cilium#42615/#43167: FromRequires/ToRequires empty-only, ignored
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The L3 peer fields of each rule section, in the order Cilium's docs list them.
L3_FIELDS: dict[Direction, tuple[str, ...]] = {
    "ingress": ("fromEndpoints", "fromCIDR", "fromCIDRSet", "fromEntities", "fromGroups", "fromNodes"),
    "egress": (
        "toEndpoints",
        "toCIDR",
        "toCIDRSet",
        "toEntities",
        "toServices",
        "toGroups",
        "toNodes",
        "toFQDNs",
    ),
}
SECTIONS: tuple[tuple[str, Direction, bool], ...] = (
    ("ingress", "ingress", False),
    ("ingressDeny", "ingress", True),
    ("egress", "egress", False),
    ("egressDeny", "egress", True),
)


@dataclass(frozen=True, slots=True)
class PolicyRef:
    """The policy object a rule comes from, as Hubble names it in `*_allowed_by`/`*_denied_by`."""

    kind: str
    name: str
    namespace: str  # "" for a clusterwide policy
    uid: str = ""

    def cilium_labels(self, user_labels: Iterable[Label] = ()) -> tuple[str, ...]:
        """The sorted label set Cilium attaches to every rule of this policy (reference §A.1)."""
        prefix = "k8s:io.cilium.k8s.policy."
        labels = [f"{prefix}derived-from={self.kind}", f"{prefix}name={self.name}"]
        if self.namespace:  # a namespaced kind: CiliumNetworkPolicy, NetworkPolicy (GetPolicyLabels)
            labels.append(f"{prefix}namespace={self.namespace}")
        if self.uid:  # assigned by the API server: unknown for policies read from files
            labels.append(f"{prefix}uid={self.uid}")
        labels.extend(str(label) if label.value else f"{label}=" for label in user_labels)
        return tuple(sorted(labels))

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class PortProtocol:
    port: str  # a number ("0" = all ports) or an IANA/named port, lowercased
    end_port: int | None
    protocol: str  # TCP, UDP, SCTP, VRRP, IGMP or ANY
    where: Location

    @property
    def number(self) -> int | None:
        """The port number as the agent reads it: strconv.ParseUint(port, 0, 16), so "0100" is
        octal 64 and "8_080" is 8080 (pkg/policy/api/l4.go; lint warns, HF018); None for a name."""
        port = self.port
        if port.isdigit() and (port[0] != "0" or len(port) == 1):
            return int(port)
        if self.name is not None:
            return None
        return go_parse_port(port)[0]

    @property
    def name(self) -> str | None:
        """The named port (lowercased, as Cilium compares it), or None for a number: a port with
        a letter is a service name (pkg/iana), anything else is parsed as a number."""
        port = self.port
        return port if any("a" <= c <= "z" for c in port) else None

    def covers(self, port: int) -> bool:
        first = self.number
        if first is None:
            return False  # a named port resolves from pod specs (hushflow.engine.pods), not here
        if first == 0:
            return True
        last = self.end_port if self.end_port and self.end_port >= first else first
        return first <= port <= last

    def __str__(self) -> str:
        port = f"{self.port}-{self.end_port}" if self.end_port else self.port
        return f"{port}/{self.protocol}"


@dataclass(frozen=True, slots=True)
class PortRule:
    ports: tuple[PortProtocol, ...]
    where: Location
    dns: tuple[FQDNSelector, ...] | None = None  # L7 `rules.dns`
    l7_kinds: tuple[str, ...] = ()  # every L7 rule type present: http, dns, kafka, l7proto
    server_names: tuple[str, ...] = ()
    tls: tuple[str, ...] = ()  # terminatingTLS / originatingTLS when present
    listener: bool = False


@dataclass(frozen=True, slots=True)
class CIDRPeer:
    cidr: IPNetwork | None
    group_ref: str | None
    group_selector: Selector | None
    excepts: tuple[IPNetwork, ...]
    where: Location


@dataclass(frozen=True, slots=True)
class ServicePeer:
    name: str | None
    namespace: str | None
    selector: Selector | None
    where: Location


@dataclass(frozen=True, slots=True)
class ICMPField:
    family: str  # IPv4 or IPv6
    type: str  # a number or a CamelCase name
    where: Location


@dataclass(frozen=True, slots=True, eq=False)  # identity: each one stands for one written rule
class PeerRule:
    """One entry of `ingress`, `ingressDeny`, `egress` or `egressDeny`.

    An L3 field that is None was not written; an empty tuple was written empty (selects nothing).
    """

    direction: Direction
    deny: bool
    where: Location
    endpoints: tuple[Selector, ...] | None = None
    cidrs: tuple[CIDRPeer, ...] | None = None
    entities: tuple[str, ...] | None = None
    services: tuple[ServicePeer, ...] | None = None
    fqdns: tuple[FQDNSelector, ...] | None = None
    nodes: tuple[Selector, ...] | None = None
    groups: tuple[Mapping[str, Any], ...] | None = None
    ports: tuple[PortRule, ...] | None = None
    icmps: tuple[ICMPField, ...] | None = None
    authentication: str | None = None
    l3_fields: tuple[str, ...] = ()  # the L3 fields written, e.g. ("toFQDNs",)
    l3_nonempty: tuple[str, ...] = ()  # those written with at least one entry (what Cilium counts)
    is_empty: bool = False  # written as `{}`
    # fromRequires/toRequires: None when not written; () when written but pruned (Cilium >= 1.19).
    requires: tuple[Selector, ...] | None = None
    cluster_name: str = DEFAULT_CLUSTER_NAME  # the local cluster: what the `cluster` entity selects

    @property
    def section(self) -> str:
        return self.direction + ("Deny" if self.deny else "")

    @property
    def any_peer(self) -> bool:
        """No L3 field: the rule applies to every peer (an L4-only rule)."""
        return not self.l3_fields

    @property
    def grants_nothing(self) -> bool:
        """Selects no peer at all: `{}`, or only requirements (Cilium folds `from/toRequires`
        into other selectors; with no L3 field and no port it merges nothing)."""
        if self.is_empty:
            return True
        return self.requires is not None and not self.l3_fields and self.ports is None and self.icmps is None


@dataclass(frozen=True, slots=True, eq=False)  # identity: each one stands for one written rule
class Rule:
    """One Cilium rule: the `spec` of a policy, or one entry of its `specs`."""

    policy: PolicyRef
    where: Location
    subject: Selector | None  # endpointSelector, implicit namespace included
    node_subject: Selector | None  # nodeSelector (host policies, CCNP only)
    ingress: tuple[PeerRule, ...] = ()
    ingress_deny: tuple[PeerRule, ...] = ()
    egress: tuple[PeerRule, ...] = ()
    egress_deny: tuple[PeerRule, ...] = ()
    labels: tuple[Label, ...] = ()
    description: str = ""
    default_deny_ingress: bool = False
    default_deny_egress: bool = False
    log_value: str | None = None

    @property
    def peer_rules(self) -> tuple[PeerRule, ...]:
        return self.ingress + self.ingress_deny + self.egress + self.egress_deny

    def cilium_labels(self) -> tuple[str, ...]:
        return self.policy.cilium_labels(self.labels)


@dataclass(frozen=True, slots=True, eq=False)  # identity: each one stands for one written rule
class Policy:
    ref: PolicyRef
    rules: tuple[Rule, ...]
    where: Location


@dataclass(frozen=True, slots=True)
class CIDRGroup:
    name: str
    labels: Mapping[str, str]
    cidrs: tuple[IPNetwork, ...]
    where: Location


@dataclass(slots=True)
class PolicySet:
    """Everything read from a set of manifests."""

    policies: list[Policy] = field(default_factory=list)
    cidr_groups: list[CIDRGroup] = field(default_factory=list)
    # The entries of the ClusterNetworkPolicies Cilium enforces (1.20+): policy.cluster_network_policy
    # KcnpRule values, decided in their tiers around the rules above (hushflow.engine.tiers).
    cluster_network_rules: list[Any] = field(default_factory=list)

    @property
    def rules(self) -> list[Rule]:
        return [rule for policy in self.policies for rule in policy.rules]


@dataclass(frozen=True, slots=True)
class BuildOptions:
    cilium_version: tuple[int, int] = DEFAULT_CILIUM_VERSION
    # Cilium >= 1.19 adds `k8s:io.cilium.k8s.policy.cluster=<local>` to peer selectors when
    # policy-default-local-cluster is on. None leaves selectors cluster-agnostic.
    local_cluster: str | None = None
    # The cluster the policies run in (Cilium's `cluster-name`): what the `cluster` entity selects.
    cluster_name: str = DEFAULT_CLUSTER_NAME

    @classmethod
    def for_cluster(
        cls, cilium_version: tuple[int, int], cluster_name: str = DEFAULT_CLUSTER_NAME,
        default_local_cluster: bool | None = None,
    ) -> BuildOptions:
        """Options as Cilium sets them: policy-default-local-cluster is off by default in 1.18
        (pkg/clustermesh/types/option.go) and on from 1.19 (the Helm default
        `clustermesh.policyDefaultLocalCluster: true`); ``default_local_cluster`` is the agent's
        `--policy-default-local-cluster` when the cluster sets it either way (None: the default)."""
        if default_local_cluster is None:
            default_local_cluster = cilium_version >= LOCAL_CLUSTER_DEFAULT_SINCE
        local = cluster_name if default_local_cluster else None
        return cls(cilium_version=cilium_version, local_cluster=local, cluster_name=cluster_name)


_CLUSTER_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def cluster_name_problem(name: str) -> str | None:
    """Why `name` is not a cluster name Cilium accepts (lowercase letters, digits and `-`, at most
    32, starting and ending with a letter or digit: pkg/clustermesh/types), else None."""
    if not name or len(name) > 32:
        return f"{name!r} must be 1 to 32 characters"
    if not set(name) <= _CLUSTER_NAME_CHARS or not name[0].isalnum() or not name[-1].isalnum():
        return f"{name!r} may hold only lowercase letters, digits and '-', and starts and ends with a letter or digit"
    return None


def _is_fqdn_selector(item: Any) -> bool:
    return isinstance(item, dict) and all(
        isinstance(item.get(key), str | None) for key in ("matchName", "matchPattern")
    )


class _Builder:
    """Builds the model of one schema-valid manifest."""

    def __init__(self, manifest: Manifest, options: BuildOptions) -> None:
        self.manifest = manifest
        self.options = options
        data = manifest.data
        metadata = data.get("metadata") or {}
        self.kind: str = data.get("kind", "")
        self.namespace: str = str(metadata.get("namespace") or "default") if self.kind == CNP else ""
        self.ref = PolicyRef(
            self.kind, str(metadata.get("name", "")), self.namespace, str(metadata.get("uid", ""))
        )

    def at(self, path: FieldPath = ()) -> Location:
        return self.manifest.locate(path)

    # -- selectors ---------------------------------------------------------------------------

    def subject_selector(self, raw: Mapping[str, Any], path: FieldPath) -> Selector:
        written = written_requirements(raw)
        requirements = list(written)
        if self.kind == CNP:
            # Cilium: a CNP only ever selects endpoints of its own namespace; a namespace the
            # user wrote for that key is overwritten.
            requirements = [r for r in requirements if r.key.split(":", 1)[1] != NAMESPACE_KEY]
            requirements.append(Requirement(f"k8s:{NAMESPACE_KEY}", "In", frozenset({self.namespace})))
        return Selector(tuple(requirements), written, self.at(path))

    def peer_selector(self, raw: Mapping[str, Any], path: FieldPath, requirement: bool = False) -> Selector:
        """A from/toEndpoints selector (or, with `requirement`, a from/toRequires one) with the
        namespace and cluster Cilium adds (utils.go, getEndpointSelector): a selector of
        reserved labels is left alone, except a requirement's."""
        written = written_requirements(raw)
        requirements = list(written)
        reserved = any(r.key.startswith("reserved:") for r in written)
        if reserved and not requirement:
            return Selector(tuple(requirements), written, self.at(path))
        names_namespace = any(r.key in (f"k8s:{NAMESPACE_KEY}", f"any:{NAMESPACE_KEY}") for r in written)
        namespace_labels = any(r.key.split(":", 1)[1].startswith(NAMESPACE_LABELS_PREFIX) for r in written)
        if not names_namespace:
            if self.kind != CNP:
                requirements.append(Requirement(f"k8s:{NAMESPACE_KEY}", "Exists"))
            elif not namespace_labels:
                # Cilium: `toEndpoints: [{}]` in a CNP means "every pod of this namespace".
                requirements.append(Requirement(f"k8s:{NAMESPACE_KEY}", "In", frozenset({self.namespace})))
        names_cluster = any(r.key in (f"k8s:{CLUSTER_KEY}", f"any:{CLUSTER_KEY}") for r in written)
        if self.options.local_cluster and not names_cluster:
            requirements.append(Requirement(f"k8s:{CLUSTER_KEY}", "In", frozenset({self.options.local_cluster})))
        return Selector(tuple(requirements), written, self.at(path))

    def plain_selector(self, raw: Mapping[str, Any], path: FieldPath) -> Selector:
        written = written_requirements(raw)
        return Selector(written, written, self.at(path))

    # -- rule pieces -------------------------------------------------------------------------

    def fqdn_selectors(self, raw: list[Any], path: FieldPath, *, dns_proxy: bool = False) -> tuple[FQDNSelector, ...]:
        """`toFQDNs` entries, or with `dns_proxy` an L7 `rules.dns` list (its select-all lets any
        query name through, as Cilium's DNS proxy does)."""
        out = []
        for index, item in enumerate(raw or []):
            if not _is_fqdn_selector(item):
                continue  # only in a deny rule's L7, which the schema does not check (HF021 names it)
            out.append(
                FQDNSelector(
                    item.get("matchName"),
                    item.get("matchPattern"),
                    self.at((*path, index)),
                    self.options.cilium_version,
                    dns_proxy,
                )
            )
        return tuple(out)

    def port_rules(self, raw: list[Any], path: FieldPath) -> tuple[PortRule, ...]:
        out = []
        for index, item in enumerate(raw):
            item_path = (*path, index)
            ports = tuple(
                PortProtocol(
                    str(port.get("port", "0") or "0").lower(),
                    port.get("endPort"),
                    str(port.get("protocol") or "ANY"),
                    self.at((*item_path, "ports", p_index)),
                )
                for p_index, port in enumerate(item.get("ports") or [])
            )
            # A deny rule's L7 fields are not checked by the schema (HF021 names them): any shape.
            rules = item.get("rules")
            rules = rules if isinstance(rules, dict) else {}
            l7_kinds = tuple(kind for kind in ("http", "dns", "kafka", "l7proto") if rules.get(kind))
            dns = (
                self.fqdn_selectors(rules["dns"], (*item_path, "rules", "dns"), dns_proxy=True)
                if isinstance(rules.get("dns"), list)
                else None
            )
            server_names = item.get("serverNames")
            names = tuple(n for n in server_names if isinstance(n, str)) if isinstance(server_names, list) else ()
            tls = tuple(key for key in ("terminatingTLS", "originatingTLS") if item.get(key))
            out.append(
                PortRule(
                    ports,
                    self.at(item_path),
                    dns,
                    l7_kinds,
                    names,
                    tls,
                    bool(item.get("listener")),
                )
            )
        return tuple(out)

    def cidr_peers(self, raw: Mapping[str, Any], direction: Direction, path: FieldPath) -> tuple[CIDRPeer, ...]:
        plain_field, set_field = ("toCIDR", "toCIDRSet") if direction == "egress" else ("fromCIDR", "fromCIDRSet")
        out: list[CIDRPeer] = []
        for index, text in enumerate(raw.get(plain_field) or []):
            out.append(CIDRPeer(_network(text), None, None, (), self.at((*path, plain_field, index))))
        for index, item in enumerate(raw.get(set_field) or []):
            item_path = (*path, set_field, index)
            selector = item.get("cidrGroupSelector")
            out.append(
                CIDRPeer(
                    _network(item["cidr"]) if item.get("cidr") else None,
                    item.get("cidrGroupRef"),
                    self.plain_selector(selector, (*item_path, "cidrGroupSelector"))
                    if selector is not None
                    else None,
                    tuple(n for n in (_network(e) for e in item.get("except") or []) if n is not None),
                    self.at(item_path),
                )
            )
        return tuple(out)

    def peer_rule(self, raw: Mapping[str, Any], direction: Direction, deny: bool, path: FieldPath) -> PeerRule:
        prefix = "to" if direction == "egress" else "from"
        written = tuple(name for name in L3_FIELDS[direction] if raw.get(name) is not None)
        endpoints = raw.get(f"{prefix}Endpoints")
        nodes = raw.get(f"{prefix}Nodes")
        has_cidrs = raw.get(f"{prefix}CIDR") is not None or raw.get(f"{prefix}CIDRSet") is not None
        services = raw.get("toServices") if direction == "egress" else None
        fqdns = raw.get("toFQDNs") if direction == "egress" else None
        ports = raw.get("toPorts")
        icmps = raw.get("icmps")
        auth = raw.get("authentication")
        # In a deny rule the schema does not check it (HF022 names it): any shape.
        mode = auth.get("mode") if isinstance(auth, dict) else None
        requires = raw.get(f"{prefix}Requires")
        required: tuple[Selector, ...] | None = None
        if isinstance(requires, list):
            # From 1.19 the API server prunes the field (or rejects the policy): nothing narrows.
            required = () if self.options.cilium_version >= REQUIRES_REMOVED_IN else tuple(
                self.peer_selector(sel, (*path, f"{prefix}Requires", i), requirement=True)
                for i, sel in enumerate(requires)
                if isinstance(sel, dict)
            )
        return PeerRule(
            direction=direction,
            deny=deny,
            where=self.at(path),
            endpoints=tuple(
                self.peer_selector(sel or {}, (*path, f"{prefix}Endpoints", i)) for i, sel in enumerate(endpoints)
            )
            if endpoints is not None
            else None,
            cidrs=self.cidr_peers(raw, direction, path) if has_cidrs else None,
            entities=tuple(raw[f"{prefix}Entities"]) if raw.get(f"{prefix}Entities") is not None else None,
            services=tuple(self.service_peer(s, (*path, "toServices", i)) for i, s in enumerate(services))
            if services is not None
            else None,
            fqdns=self.fqdn_selectors(fqdns, (*path, "toFQDNs")) if fqdns is not None else None,
            nodes=tuple(self.plain_selector(sel or {}, (*path, f"{prefix}Nodes", i)) for i, sel in enumerate(nodes))
            if nodes is not None
            else None,
            groups=tuple(raw[f"{prefix}Groups"]) if raw.get(f"{prefix}Groups") is not None else None,
            ports=self.port_rules(ports, (*path, "toPorts")) if ports is not None else None,
            icmps=tuple(
                ICMPField(str(f.get("family") or "IPv4"), str(f.get("type")), self.at((*path, "icmps", i, "fields", j)))
                for i, entry in enumerate(icmps)
                for j, f in enumerate(entry.get("fields") or [])
            )
            if icmps is not None
            else None,
            authentication=mode if isinstance(mode, str) else None,
            l3_fields=written,
            l3_nonempty=tuple(name for name in written if raw.get(name)),
            is_empty=not raw,
            requires=required,
            cluster_name=self.options.cluster_name,
        )

    def service_peer(self, raw: Mapping[str, Any], path: FieldPath) -> ServicePeer:
        if raw.get("k8sService"):
            service = raw["k8sService"]
            return ServicePeer(service.get("serviceName"), service.get("namespace"), None, self.at(path))
        selector = raw.get("k8sServiceSelector") or {}
        return ServicePeer(
            None,
            selector.get("namespace"),
            self.plain_selector(selector.get("selector") or {}, (*path, "k8sServiceSelector", "selector")),
            self.at(path),
        )

    def rule(self, raw: Mapping[str, Any], path: FieldPath) -> Rule:
        sections: dict[str, tuple[PeerRule, ...]] = {}
        for name, direction, deny in SECTIONS:
            entries = raw.get(name) or []
            sections[name] = tuple(
                self.peer_rule(entry or {}, direction, deny, (*path, name, i)) for i, entry in enumerate(entries)
            )
        default_deny = raw.get("enableDefaultDeny") or {}

        def defaults(direction: Direction) -> bool:
            explicit = default_deny.get(direction)
            if explicit is not None:
                return bool(explicit)
            # Cilium: unset means "on if this rule has any entry in that direction".
            return bool(sections[direction] or sections[direction + "Deny"])

        endpoint = raw.get("endpointSelector")
        node = raw.get("nodeSelector")
        log = raw.get("log") or {}
        return Rule(
            policy=self.ref,
            where=self.at(path),
            subject=self.subject_selector(endpoint, (*path, "endpointSelector")) if endpoint is not None else None,
            node_subject=self.plain_selector(node, (*path, "nodeSelector")) if node is not None else None,
            ingress=sections["ingress"],
            ingress_deny=sections["ingressDeny"],
            egress=sections["egress"],
            egress_deny=sections["egressDeny"],
            labels=tuple(_user_label(label) for label in raw.get("labels") or []),
            description=str(raw.get("description") or ""),
            default_deny_ingress=defaults("ingress"),
            default_deny_egress=defaults("egress"),
            log_value=log.get("value"),
        )

    def policy(self) -> Policy:
        data = self.manifest.data
        rules: list[Rule] = []
        if data.get("spec") is not None:
            rules.append(self.rule(data["spec"], ("spec",)))
        for index, spec in enumerate(data.get("specs") or []):
            rules.append(self.rule(spec, ("specs", index)))
        return Policy(self.ref, tuple(rules), self.at())


def _user_label(raw: Mapping[str, Any]) -> Label:
    source = str(raw.get("source") or "unspec")
    return Label(source, str(raw.get("key", "")), str(raw.get("value") or ""))


def _network(text: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def build_policy(manifest: Manifest, options: BuildOptions | None = None) -> Policy:
    """The model of one schema-valid CNP or CCNP."""
    return _Builder(manifest, options or BuildOptions()).policy()


def build_cidr_group(manifest: Manifest) -> CIDRGroup:
    data = manifest.data
    metadata = data.get("metadata") or {}
    spec = data.get("spec") or {}
    cidrs = tuple(n for n in (_network(c) for c in spec.get("externalCIDRs") or []) if n is not None)
    labels = {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()}
    return CIDRGroup(str(metadata.get("name", "")), labels, cidrs, manifest.locate())


def label_strings(labels: Iterable[str]) -> tuple[Label, ...]:
    return tuple(parse_label(text) for text in labels)
