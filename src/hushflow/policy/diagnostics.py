"""Diagnostics: stable codes, severities, and where each finding points."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hushflow.policy.source import Location


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


@dataclass(frozen=True, slots=True)
class Check:
    code: str
    name: str
    severity: Severity
    summary: str


# The catalogue. Codes are stable: never renumber, only add.
CHECKS: dict[str, Check] = {
    check.code: check
    for check in (
        Check("HF001", "invalid-yaml", Severity.ERROR, "The file is not valid YAML."),
        Check("HF002", "not-an-object", Severity.ERROR, "A document is not a Kubernetes object."),
        Check("HF003", "other-kind", Severity.INFO, "An object that is not a Cilium policy was skipped."),
        Check("HF004", "unreadable", Severity.ERROR, "A file or directory could not be read."),
        Check("HF005", "duplicate-object", Severity.WARNING, "The same object is defined twice."),
        Check(
            "HF006", "not-a-regular-file", Severity.WARNING, "A FIFO, device or socket in a directory was skipped."
        ),
        Check(
            "HF007", "schema-version", Severity.INFO,
            "No CRD schema of the --cilium-version is bundled; the nearest one was used.",
        ),
        Check("HF010", "schema", Severity.ERROR, "The object does not match Cilium's CRD schema."),
        Check("HF011", "empty-policy", Severity.ERROR, "A policy has neither spec nor specs."),
        Check("HF012", "node-selector-in-cnp", Severity.ERROR, "nodeSelector is only valid in a CCNP."),
        Check("HF013", "namespace-overridden", Severity.WARNING, "A CNP endpointSelector names another namespace."),
        Check("HF014", "empty-rule", Severity.ERROR, "A rule whose ingress/egress sections are all empty."),
        Check("HF015", "object-name", Severity.ERROR, "metadata.name or namespace breaks Kubernetes' name rules."),
        Check("HF016", "agent-rejects", Severity.ERROR, "The Cilium agent rejects a rule the CRD schema accepts."),
        Check(
            "HF017", "agent-option-needed", Severity.WARNING,
            "The Cilium agent rejects the rule unless an agent option is set.",
        ),
        Check("HF018", "port-read-as-octal", Severity.WARNING, "The agent reads a port number other than written."),
        Check("HF020", "fqdn-deny", Severity.ERROR, "toFQDNs in egressDeny: Cilium cannot run it."),
        Check("HF021", "l7-in-deny", Severity.ERROR, "L7 rules, serverNames, TLS or listener in a deny rule."),
        Check("HF022", "auth-in-deny", Severity.ERROR, "authentication in a deny rule."),
        Check("HF030", "fqdn-without-dns-proxy", Severity.WARNING, "toFQDNs on endpoints no DNS proxy rule covers."),
        Check("HF031", "several-peer-kinds", Severity.ERROR, "More than one L3 peer kind in one rule."),
        Check("HF032", "icmps-with-toports", Severity.ERROR, "icmps and toPorts in the same rule."),
        Check("HF033", "icmp-in-toports", Severity.ERROR, "ICMP given as a toPorts protocol."),
        Check("HF034", "dns-rule-on-ingress", Severity.ERROR, "L7 DNS rules on ingress."),
        Check("HF035", "dns-rule-port", Severity.ERROR, "L7 DNS rules without one explicit port (not 0, not a range)."),
        Check("HF036", "endport-below-port", Severity.WARNING, "endPort is below port: no range is enforced."),
        Check("HF037", "except-outside-cidr", Severity.ERROR, "An except entry is not inside its cidr."),
        Check("HF038", "l7-protocol", Severity.ERROR, "L7 rules where Cilium cannot apply them."),
        Check("HF039", "server-names-with-l7", Severity.ERROR, "serverNames with L7 rules but no terminatingTLS."),
        Check("HF041", "listener-on-ingress", Severity.ERROR, "A listener in an ingress rule."),
        Check("HF040", "log-value", Severity.ERROR, "log.value is too long or has non-printable characters."),
        Check("HF050", "deny-shadows-allow", Severity.WARNING, "A deny rule makes allow rules unreachable."),
        Check("HF051", "double-star-before-1.19", Severity.WARNING, "`**.` matches one label before Cilium 1.19."),
        Check(
            "HF052", "empty-rule-default-deny", Severity.WARNING,
            "An empty rule turns on default-deny (info for the documented `ingress: [{}]` idiom).",
        ),
        Check("HF054", "to-services-with-ports", Severity.WARNING, "toServices combined with toPorts."),
        Check(
            "HF053", "deny-only-default-deny", Severity.WARNING, "Deny rules alone switch endpoints to default-deny."
        ),
        # ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2, docs/cluster-network-policy.md)
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
        Check("HF076", "same-tier-priority", Severity.WARNING,
              "Two ClusterNetworkPolicies of one tier and priority with different actions in one direction."),
        Check("HF077", "pass-nothing-below", Severity.WARNING,
              "An Admin Pass that no namespaced policy or Baseline entry can decide: it ends at allow."),
        Check("HF078", "baseline-never-decides", Severity.WARNING,
              "A Baseline entry whose endpoints a namespaced policy always selects first."),
    )
}


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    message: str
    location: Location
    hint: str = ""
    severity: Severity | None = None  # None: the check's default

    @property
    def level(self) -> Severity:
        return self.severity or CHECKS[self.code].severity

    @property
    def name(self) -> str:
        return CHECKS[self.code].name

    def sort_key(self) -> tuple[str, int, int, str, str]:
        loc = self.location
        return (loc.file, loc.line, loc.column, self.code, self.message)
