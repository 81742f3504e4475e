"""ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2): schema, CEL rules, lint, hostile input,
and the model's tier decision table.

Sources (docs/cluster-network-policy.md has them all):
- CRD: kubernetes-sigs/network-policy-api v0.2.0 (a17adecd0316b8ff1c3f83939ec0441d68cd6cce),
  config/crd/experimental/policy.networking.k8s.io_clusternetworkpolicies.yaml;
- Cilium's parser: cilium/cilium pkg/k8s/cluster_network_policy.go (0ac689d71fc0, the version
  that reads v0.2.0's `protocols`, tiers and priorities).
"""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from hushflow.engine.tiers import TierConnection as Connection
from hushflow.engine.tiers import decide
from hushflow.policy.cluster_network_policy import build_cluster_network_policy
from hushflow.policy.diagnostics import CHECKS, Severity
from hushflow.policy.labels import endpoint_label_map
from hushflow.policy.loading import load_policies
from hushflow.policy.model import BuildOptions

V120 = BuildOptions(cilium_version=(1, 20))


def kcnp(spec: str, name: str = "p", api_version: str = "policy.networking.k8s.io/v1alpha2") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return f"apiVersion: {api_version}\nkind: ClusterNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n{body}\n"


ADMIN = "tier: Admin\npriority: 10\nsubject: {namespaces: {matchLabels: {team: a}}}\n"
BASELINE = "tier: Baseline\npriority: 10\nsubject: {namespaces: {}}\n"
FROM_PODS = "from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: api}}}}]"


def load(tmp_path, text: str, options: BuildOptions = V120):
    path = tmp_path / "kcnp.yaml"
    path.write_text(text)
    return load_policies([str(path)], options)


def codes_of(loaded, code_prefix: str = "HF") -> list[str]:
    return [d.code for d in loaded.diagnostics if d.code.startswith(code_prefix)]


# Accepted forms of the v0.2.0 experimental CRD (config/crd/experimental/
# policy.networking.k8s.io_clusternetworkpolicies.yaml at a17adecd): one row per field form.
ACCEPTED = [
    ("admin-ingress-accept-pods-tcp-port", ADMIN + f"ingress:\n- action: Accept\n  {FROM_PODS}\n"
     "  protocols: [{tcp: {destinationPort: {number: 80}}}]\n"),
    ("ingress-from-namespaces-deny", ADMIN + "ingress:\n- {action: Deny, from: [{namespaces: {}}]}\n"),
    ("pass-with-rule-name", ADMIN + "ingress:\n- {name: to-tenant, action: Pass, from: [{namespaces: {}}]}\n"),
    ("egress-networks-v4-v6", BASELINE + "egress:\n- {action: Deny, to: [{networks: [0.0.0.0/0, '::/0']}]}\n"),
    ("udp-port-range", ADMIN + "egress:\n- action: Accept\n  to: [{namespaces: {}}]\n"
     "  protocols: [{udp: {destinationPort: {range: {start: 8000, end: 9000}}}}]\n"),
    ("sctp-port", ADMIN + "egress:\n- action: Accept\n  to: [{namespaces: {}}]\n"
     "  protocols: [{sctp: {destinationPort: {number: 5000}}}]\n"),
    ("named-port-to-pods", ADMIN + "egress:\n- action: Accept\n  to: [{pods: {namespaceSelector: {}, podSelector: {}}}]\n"
     "  protocols: [{destinationNamedPort: http}]\n"),
    ("egress-without-protocols-is-every-port", ADMIN + "egress:\n- {action: Deny, to: [{namespaces: {}}]}\n"),
    ("priority-bounds-0", "tier: Admin\npriority: 0\nsubject: {pods: {namespaceSelector: {}, podSelector: {}}}\n"),
    ("priority-bounds-1000", "tier: Baseline\npriority: 1000\nsubject: {namespaces: {}}\n"),
    ("subject-match-expressions", "tier: Admin\npriority: 1\nsubject: {namespaces: {matchExpressions: "
     "[{key: env, operator: In, values: [prod]}]}}\n"),
    ("admin-domain-names-accept", ADMIN + "egress:\n- action: Accept\n  to: [{domainNames: [example.com, '*.example.org']}]\n"),
    ("egress-nodes", ADMIN + "egress:\n- {action: Accept, to: [{nodes: {matchLabels: {role: infra}}}]}\n"),
]


@pytest.mark.parametrize(("spec",), [row[1:] for row in ACCEPTED], ids=[row[0] for row in ACCEPTED])
def test_schema_accepts(tmp_path, spec):
    loaded = load(tmp_path, kcnp(spec))
    errors = [d for d in loaded.diagnostics if d.level == Severity.ERROR]
    assert errors == []
    assert len(loaded.cluster_network_policies) == 1
    assert loaded.policy_set.policies == []  # validated and counted, not yet turned into rules


# Rejected forms: (id, spec, message fragment, field path the HF010 points at). Same CRD; the
# CEL rows are its x-kubernetes-validations, which the API server evaluates.
REJECTED = [
    ("tier-required", "priority: 1\nsubject: {namespaces: {}}\n", 'missing required field "tier"', "spec"),
    ("priority-required", "tier: Admin\nsubject: {namespaces: {}}\n", 'missing required field "priority"', "spec"),
    ("subject-required", "tier: Admin\npriority: 1\n", 'missing required field "subject"', "spec"),
    ("tier-enum", "tier: Application\npriority: 1\nsubject: {namespaces: {}}\n", "not one of: Admin, Baseline",
     "spec.tier"),
    ("priority-maximum", "tier: Admin\npriority: 1001\nsubject: {namespaces: {}}\n", "at most 1000", "spec.priority"),
    ("priority-minimum", "tier: Admin\npriority: -1\nsubject: {namespaces: {}}\n", "at least 0", "spec.priority"),
    ("priority-string", "tier: Admin\npriority: '10'\nsubject: {namespaces: {}}\n", "must be an integer",
     "spec.priority"),
    ("action-allow-is-v1alpha1", ADMIN + "ingress:\n- {action: Allow, from: [{namespaces: {}}]}\n",
     "not one of: Accept, Deny, Pass", "spec.ingress[0].action"),
    ("subject-two-fields", "tier: Admin\npriority: 1\nsubject: {namespaces: {}, pods: {namespaceSelector: {}, "
     "podSelector: {}}}\n", "exactly one of namespaces, pods", "spec.subject"),
    ("subject-empty", "tier: Admin\npriority: 1\nsubject: {}\n", "exactly one of namespaces, pods", "spec.subject"),
    ("peer-two-fields", ADMIN + "egress:\n- {action: Deny, to: [{namespaces: {}, networks: [10.0.0.0/8]}]}\n",
     "exactly one of", "spec.egress[0].to[0]"),
    ("ingress-from-required", ADMIN + "ingress:\n- {action: Deny}\n", 'missing required field "from"',
     "spec.ingress[0]"),
    ("egress-to-empty", ADMIN + "egress:\n- {action: Deny, to: []}\n", "at least 1", "spec.egress[0].to"),
    ("ingress-networks-peer", ADMIN + "ingress:\n- {action: Deny, from: [{networks: [10.0.0.0/8]}]}\n",
     'unknown field "networks"', "spec.ingress[0].from[0].networks"),
    ("v0.1-ports-form", ADMIN + "egress:\n- action: Deny\n  to: [{namespaces: {}}]\n"
     "  ports: [{portNumber: {port: 80, protocol: TCP}}]\n", 'unknown field "ports"', "spec.egress[0].ports"),
    ("port-zero", ADMIN + "egress:\n- action: Deny\n  to: [{namespaces: {}}]\n"
     "  protocols: [{tcp: {destinationPort: {number: 0}}}]\n", "at least 1",
     "spec.egress[0].protocols[0].tcp.destinationPort.number"),
    ("port-65536", ADMIN + "egress:\n- action: Deny\n  to: [{namespaces: {}}]\n"
     "  protocols: [{udp: {destinationPort: {number: 65536}}}]\n", "at most 65535",
     "spec.egress[0].protocols[0].udp.destinationPort.number"),
    ("protocol-without-port", ADMIN + "egress:\n- action: Deny\n  to: [{namespaces: {}}]\n"
     "  protocols: [{tcp: {}}]\n", "exactly one of destinationPort", "spec.egress[0].protocols[0].tcp"),
    ("protocol-two-fields", ADMIN + "egress:\n- action: Deny\n  to: [{namespaces: {}}]\n"
     "  protocols: [{tcp: {destinationPort: {number: 80}}, udp: {destinationPort: {number: 80}}}]\n",
     "exactly one of", "spec.egress[0].protocols[0]"),
    ("too-many-rules", ADMIN + "egress:\n" + "- {action: Deny, to: [{namespaces: {}}]}\n" * 26, "at most 25",
     "spec.egress"),
    ("rule-name-too-long", ADMIN + f"ingress:\n- {{name: {'r' * 101}, action: Deny, from: [{{namespaces: {{}}}}]}}\n",
     "at most 100", "spec.ingress[0].name"),
    ("domain-wildcard-inside", ADMIN + "egress:\n- {action: Accept, to: [{domainNames: ['a.*.example.com']}]}\n",
     "is not valid", "spec.egress[0].to[0].domainNames[0]"),
    ("domain-partial-wildcard", ADMIN + "egress:\n- {action: Accept, to: [{domainNames: ['*foo.example.com']}]}\n",
     "is not valid", "spec.egress[0].to[0].domainNames[0]"),
    ("network-too-long", ADMIN + f"egress:\n- {{action: Deny, to: [{{networks: ['{'1' * 44}']}}]}}\n", "at most 43",
     "spec.egress[0].to[0].networks[0]"),
    # CEL: PortRange `self.start < self.end`
    ("cel-range-start-not-below-end", ADMIN + "egress:\n- action: Deny\n  to: [{namespaces: {}}]\n"
     "  protocols: [{tcp: {destinationPort: {range: {start: 90, end: 90}}}}]\n",
     "Start port must be less than End port", "spec.egress[0].protocols[0].tcp.destinationPort.range"),
    # CEL: CIDR `isCIDR(self)`
    ("cel-network-no-prefix", ADMIN + "egress:\n- {action: Deny, to: [{networks: [10.0.0.1]}]}\n",
     "Invalid CIDR format provided", "spec.egress[0].to[0].networks[0]"),
    ("cel-network-leading-zero", ADMIN + "egress:\n- {action: Deny, to: [{networks: [010.0.0.0/8]}]}\n",
     "Invalid CIDR format provided", "spec.egress[0].to[0].networks[0]"),
    # CEL: ClusterNetworkPolicyEgressRule, no named port with networks/nodes/domainNames peers
    ("cel-named-port-with-networks", ADMIN + "egress:\n- action: Deny\n  to: [{networks: [10.0.0.0/8]}]\n"
     "  protocols: [{destinationNamedPort: http}]\n", "cannot be set with namedPorts", "spec.egress[0].protocols"),
    ("cel-named-port-with-domains", ADMIN + "egress:\n- action: Accept\n  to: [{domainNames: [example.com]}]\n"
     "  protocols: [{destinationNamedPort: https}]\n", "cannot be set with namedPorts", "spec.egress[0].protocols"),
]


@pytest.mark.parametrize(("spec", "fragment", "where"), [row[1:] for row in REJECTED], ids=[row[0] for row in REJECTED])
def test_schema_rejects(tmp_path, spec, fragment, where):
    loaded = load(tmp_path, kcnp(spec))
    hits = [d for d in loaded.diagnostics if d.code == "HF010" and fragment in d.message]
    assert hits, [(d.code, d.message) for d in loaded.diagnostics]
    assert hits[0].location.line > 0 and hits[0].location.file.endswith("kcnp.yaml")
    assert where == _dotted(hits[0].location.path)
    assert loaded.cluster_network_policies == []


def _dotted(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def test_other_api_version_is_refused(tmp_path):
    """v1alpha1 is AdminNetworkPolicy's group version; ClusterNetworkPolicy is served as v1alpha2 only."""
    loaded = load(tmp_path, kcnp(ADMIN, api_version="policy.networking.k8s.io/v1alpha1"))
    assert [(d.code, d.location.path) for d in loaded.diagnostics if d.code == "HF010"] == [("HF010", ("apiVersion",))]


# Lint rows: (id, spec, code, field path, cilium version). Sources per row in the comment.
LINT = [
    # Cilium 1.20 is the first release with the kind (cilium#47227's docs; pkg/k8s/cluster_network_policy.go).
    ("not-enforced-before-1.20", ADMIN, "HF070", "kind", (1, 19)),
    # daemon flag enable-k8s-cluster-network-policy, default false (cilium#47227).
    ("needs-agent-option", ADMIN, "HF071", "", (1, 20)),
    # pkg/k8s/cluster_network_policy.go: "egress.to.domainNames is only supported for egress.action=Accept".
    ("domain-names-in-deny", ADMIN + "egress:\n- {action: Deny, to: [{domainNames: [example.com]}]}\n", "HF072",
     "spec.egress[0].to[0].domainNames", (1, 20)),
    ("domain-names-in-pass", ADMIN + "egress:\n- {action: Pass, to: [{domainNames: [example.com]}]}\n", "HF072",
     "spec.egress[0].to[0].domainNames", (1, 20)),
    # NPEP-133 as network-policy-api#366 updated it: domainNames for the Admin tier only.
    ("domain-names-in-baseline", BASELINE + "egress:\n- {action: Accept, to: [{domainNames: [example.com]}]}\n",
     "HF073", "spec.egress[0].to[0].domainNames", (1, 20)),
    # CRD `tier` and `action` docs: Pass goes to the next tier; after Baseline only the default is left.
    ("pass-in-baseline", BASELINE + "ingress:\n- {action: Pass, from: [{namespaces: {}}]}\n", "HF074",
     "spec.ingress[0].action", (1, 20)),
    # v0.2.0 standard vs experimental CRD: domainNames and nodes are experimental-channel fields.
    ("experimental-domain-names", ADMIN + "egress:\n- {action: Accept, to: [{domainNames: [example.com]}]}\n",
     "HF075", "spec.egress[0].to[0].domainNames", (1, 20)),
    ("experimental-nodes", ADMIN + "egress:\n- {action: Accept, to: [{nodes: {}}]}\n", "HF075",
     "spec.egress[0].to[0].nodes", (1, 20)),
]

# The near-identical rows that must stay silent for that code.
QUIET = [
    ("enforced-from-1.20", ADMIN, "HF070", (1, 20)),
    ("no-agent-note-before-1.20", ADMIN, "HF071", (1, 19)),
    ("domain-names-in-accept", ADMIN + "egress:\n- {action: Accept, to: [{domainNames: [example.com]}]}\n", "HF072",
     (1, 20)),
    ("domain-names-in-admin", ADMIN + "egress:\n- {action: Accept, to: [{domainNames: [example.com]}]}\n", "HF073",
     (1, 20)),
    ("pass-in-admin", ADMIN + "ingress:\n- {action: Pass, from: [{namespaces: {}}]}\n", "HF074", (1, 20)),
    ("deny-in-baseline", BASELINE + "ingress:\n- {action: Deny, from: [{namespaces: {}}]}\n", "HF074", (1, 20)),
    ("standard-peer", ADMIN + "egress:\n- {action: Accept, to: [{networks: [10.0.0.0/8]}]}\n", "HF075", (1, 20)),
]


@pytest.mark.parametrize(("spec", "code", "where", "version"), [row[1:] for row in LINT], ids=[row[0] for row in LINT])
def test_lint_triggers(tmp_path, spec, code, where, version):
    loaded = load(tmp_path, kcnp(spec), BuildOptions(cilium_version=version))
    hits = [d for d in loaded.diagnostics if d.code == code]
    assert len(hits) == 1, [(d.code, d.message) for d in loaded.diagnostics]
    assert _dotted(hits[0].location.path) == where and hits[0].location.line > 0
    assert hits[0].level == CHECKS[code].severity


@pytest.mark.parametrize(("spec", "code", "version"), [row[1:] for row in QUIET], ids=[row[0] for row in QUIET])
def test_lint_quiet(tmp_path, spec, code, version):
    loaded = load(tmp_path, kcnp(spec), BuildOptions(cilium_version=version))
    assert code not in codes_of(loaded), [(d.code, d.message) for d in loaded.diagnostics]


def test_domain_names_in_deny_makes_the_policy_invalid(tmp_path):
    """Cilium's parser returns an error for the whole object, so none of its rules is enforced."""
    loaded = load(tmp_path, kcnp(ADMIN + "egress:\n- {action: Deny, to: [{domainNames: [example.com]}]}\n"))
    assert loaded.cluster_network_policies == []


def test_agent_option_note_is_given_once_per_run(tmp_path):
    text = kcnp(ADMIN, name="a") + "---\n" + kcnp(ADMIN, name="b")
    assert codes_of(load(tmp_path, text)).count("HF071") == 1


def test_the_kind_is_no_longer_skipped_as_other(tmp_path):
    """Before: HF003 "skipped ClusterNetworkPolicy: not a Cilium policy"."""
    loaded = load(tmp_path, kcnp(ADMIN))
    assert "HF003" not in codes_of(loaded)
    assert loaded.objects == 1 and len(loaded.cluster_network_policies) == 1


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("Upper", "lowercase"), ("a/b", "lowercase"), ("x" * 254, "253"), ("'5'", None)],
    ids=["uppercase", "slash", "too-long", "digit-string-ok"],
)
def test_kubernetes_name_rules(tmp_path, name, fragment):
    loaded = load(tmp_path, kcnp(ADMIN, name=name))
    hits = [d for d in loaded.diagnostics if d.code == "HF015"]
    if fragment is None:
        assert hits == []
    else:
        assert len(hits) == 1 and fragment in hits[0].message and hits[0].location.path == ("metadata", "name")


def test_duplicate_objects_are_reported(tmp_path):
    text = kcnp(ADMIN, name="a") + "---\n" + kcnp(ADMIN, name="a")
    assert "HF005" in codes_of(load(tmp_path, text))


# Hostile input: wrong types anywhere give HF010 with file:line, never an exception.
HOSTILE = [
    ("spec-string", "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
     "metadata: {name: p}\nspec: nope\n"),
    ("spec-list", kcnp("- 1\n- 2\n")),
    ("no-metadata", "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nspec: {}\n"),
    ("metadata-name-int", "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
     "metadata: {name: 5}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}}}\n"),
    ("ingress-int", kcnp(ADMIN + "ingress: 5\n")),
    ("rule-string", kcnp(ADMIN + "egress: [oops]\n")),
    ("subject-list", kcnp("tier: Admin\npriority: 1\nsubject: [namespaces]\n")),
    ("priority-bool", kcnp("tier: Admin\npriority: true\nsubject: {namespaces: {}}\n")),
    ("priority-float", kcnp("tier: Admin\npriority: 1.5\nsubject: {namespaces: {}}\n")),
    ("port-string", kcnp(ADMIN + "egress:\n- action: Deny\n  to: [{namespaces: {}}]\n"
                         "  protocols: [{tcp: {destinationPort: {number: '80'}}}]\n")),
    ("range-strings", kcnp(ADMIN + "egress:\n- action: Deny\n  to: [{namespaces: {}}]\n"
                           "  protocols: [{tcp: {destinationPort: {range: {start: a, end: b}}}}]\n")),
    ("networks-int", kcnp(ADMIN + "egress:\n- {action: Deny, to: [{networks: [10]}]}\n")),
    ("domain-names-map", kcnp(ADMIN + "egress:\n- {action: Accept, to: [{domainNames: {a: b}}]}\n")),
    ("protocols-null-item", kcnp(ADMIN + "egress:\n- {action: Deny, to: [{namespaces: {}}], protocols: [null]}\n")),
    ("selector-values-int", kcnp("tier: Admin\npriority: 1\nsubject: {namespaces: {matchLabels: {a: 1}}}\n")),
]


@pytest.mark.parametrize(("text",), [row[1:] for row in HOSTILE], ids=[row[0] for row in HOSTILE])
def test_hostile_input_is_an_error_with_its_line(tmp_path, text):
    loaded = load(tmp_path, text)
    errors = [d for d in loaded.diagnostics if d.level == Severity.ERROR]
    assert errors, [(d.code, d.message) for d in loaded.diagnostics]
    assert all(d.location.line > 0 and d.location.file.endswith("kcnp.yaml") for d in errors)
    assert loaded.cluster_network_policies == []


def test_lint_command_exits_1_without_a_traceback(tmp_path):
    from click.testing import CliRunner

    from hushflow.cli import main

    path = tmp_path / "kcnp.yaml"
    path.write_text(kcnp("tier: Admin\npriority: [1]\nsubject: {namespaces: {}}\n"))
    result = CliRunner().invoke(main, ["lint", "--cilium-version", "1.20", str(path)])
    assert result.exit_code == 1, result.output
    assert "kcnp.yaml:6" in result.output and "HF010" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


# -- the model and the tier decision ------------------------------------------------------------

def pod(namespace: str, *labels: str, cluster: str = "default", ns_labels: tuple[str, ...] = ()) -> dict[str, str]:
    texts = [f"k8s:{label}" for label in labels]
    texts += [f"k8s:io.kubernetes.pod.namespace={namespace}", f"k8s:io.cilium.k8s.policy.cluster={cluster}",
              f"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name={namespace}"]
    texts += [f"k8s:io.cilium.k8s.namespace.labels.{label}" for label in ns_labels]
    return endpoint_label_map(texts)


WEB = pod("shop", "app=web", ns_labels=("team=a",))
API = pod("shop", "app=api", ns_labels=("team=a",))
WORLD = endpoint_label_map(["reserved:world"])
REMOTE_NODE = endpoint_label_map(["reserved:remote-node", "node:role=infra", "k8s:io.cilium.k8s.policy.cluster=default"])
HOST = endpoint_label_map(["reserved:host", "node:role=infra", "k8s:io.cilium.k8s.policy.cluster=default"])


def rules_of(tmp_path, *policies: str):
    text = "---\n".join(kcnp(spec, name=f"p{i}") for i, spec in enumerate(policies))
    loaded = load(tmp_path, text)
    assert [d for d in loaded.diagnostics if d.level == Severity.ERROR] == []
    return [r for m in loaded.cluster_network_policies for r in build_cluster_network_policy(m, "default")]


def egress(peer=WORLD, port=443, protocol="TCP", subject=WEB, **extra) -> Connection:
    return Connection("egress", subject, peer, protocol, port, **extra)


def ingress(peer=API, port=80, protocol="TCP", subject=WEB, **extra) -> Connection:
    return Connection("ingress", subject, peer, protocol, port, **extra)


SHOP = "subject: {namespaces: {matchLabels: {team: a}}}\n"


def admin(priority: int, rules: str, subject: str = SHOP) -> str:
    return f"tier: Admin\npriority: {priority}\n{subject}{rules}"


def baseline(priority: int, rules: str, subject: str = SHOP) -> str:
    return f"tier: Baseline\npriority: {priority}\n{subject}{rules}"


ALL_OUT = "to: [{networks: [0.0.0.0/0]}]"
V4 = ipaddress.ip_address("203.0.113.7")

# (id, policies, connection, NetworkPolicy-tier verdict, expected (tier, verdict, deciding policy)).
# Sources: T = pkg/policy/types/policyentry.go (fdc510fe: Admin, Normal, Baseline tiers; lower
# Priority first); P = pkg/k8s/cluster_network_policy.go (0ac689d7); C = CFP-42904
# (cilium/design-cfps d5b6870); A = network-policy-api v0.2.0 CRD field docs; #42896/#43917 = the
# engine's tiers and Pass.
DECISIONS = [
    # T, C ("Admin tier policies will always override" CNP/CCNP): an Admin Accept beats a CNP deny.
    ("admin-accept-beats-cnp-deny", [admin(10, f"egress:\n- {{action: Accept, {ALL_OUT}}}\n")],
     egress(peer_ip=V4), "deny", ("Admin", "allow", "p0")),
    # T, C: and an Admin Deny beats a CNP/NetworkPolicy allow.
    ("admin-deny-beats-cnp-allow", [admin(10, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n")],
     egress(peer_ip=V4), "allow", ("Admin", "deny", "p0")),
    # A (action Pass), #42896: Pass hands the connection to the NetworkPolicy tier.
    ("admin-pass-then-cnp-decides", [admin(10, f"egress:\n- {{action: Pass, {ALL_OUT}}}\n")],
     egress(peer_ip=V4), "deny", ("NetworkPolicy", "deny", None)),
    # A, #43917: Pass skips the rest of its tier, here a later Admin Deny, and nothing below decides.
    ("admin-pass-skips-lower-admin-deny",
     [admin(5, f"egress:\n- {{action: Pass, {ALL_OUT}}}\n"), admin(9, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n")],
     egress(peer_ip=V4), None, ("default", "allow", None)),
    # T, A (priority): the lower value decides first, whatever the file order.
    ("lower-priority-first",
     [admin(20, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n"), admin(3, f"egress:\n- {{action: Accept, {ALL_OUT}}}\n")],
     egress(peer_ip=V4), None, ("Admin", "allow", "p1")),
    # P (priority + index/100), A (egress doc): within one object the written order decides,
    # even an Accept before a Deny (no tie, so no deny-over-allow).
    ("rule-order-within-a-policy",
     [admin(10, f"egress:\n- {{action: Accept, {ALL_OUT}}}\n- {{action: Deny, {ALL_OUT}}}\n")],
     egress(peer_ip=V4), None, ("Admin", "allow", "p0")),
    # C ("the existing precedence rules (deny over allow) ... for other tiers as well"): ties.
    ("same-priority-deny-wins",
     [admin(10, f"egress:\n- {{action: Accept, {ALL_OUT}}}\n"), admin(10, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n")],
     egress(peer_ip=V4), None, ("Admin", "deny", "p1")),
    # A (tier): a NetworkPolicy-tier policy that selects the pod decides before Baseline.
    ("cnp-allow-beats-baseline-deny", [baseline(10, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n")],
     egress(peer_ip=V4), "allow", ("NetworkPolicy", "allow", None)),
    ("cnp-default-deny-beats-baseline-accept", [baseline(10, f"egress:\n- {{action: Accept, {ALL_OUT}}}\n")],
     egress(peer_ip=V4), "deny", ("NetworkPolicy", "deny", None)),
    # A (tier): Baseline decides for pods no NetworkPolicy-tier policy selects.
    ("baseline-deny-for-unselected-pods", [baseline(10, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n")],
     egress(peer_ip=V4), None, ("Baseline", "deny", "p0")),
    # A (tier): Pass in Baseline leaves only the default (lint HF074).
    ("baseline-pass-is-default-allow",
     [baseline(1, f"egress:\n- {{action: Pass, {ALL_OUT}}}\n"), baseline(2, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n")],
     egress(peer_ip=V4), None, ("default", "allow", None)),
    # A (tier, last paragraph): nothing matched in any tier: every pod may talk.
    ("nothing-matches-default-allow", [admin(1, "egress:\n- {action: Deny, to: [{networks: [10.0.0.0/8]}]}\n")],
     egress(peer_ip=V4), None, ("default", "allow", None)),
    # P (DefaultDeny = false): an Accept for one port switches nothing else to deny.
    ("accept-is-no-default-deny",
     [admin(1, f"egress:\n- action: Accept\n  {ALL_OUT}\n  protocols: [{{tcp: {{destinationPort: {{number: 443}}}}}}]\n")],
     egress(peer_ip=V4, port=8443), None, ("default", "allow", None)),
    # P (subject): a namespaces subject selects on namespace labels; another namespace is untouched.
    ("subject-by-namespace-labels", [admin(1, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n")],
     egress(peer_ip=V4, subject=pod("other", "app=web", ns_labels=("team=b",))), None, ("default", "allow", None)),
    # P (kcnpParseNamespacedPod): a pods subject ANDs the namespace and pod selectors.
    ("subject-pods-and-namespace",
     [admin(1, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n",
            "subject: {pods: {namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchLabels: {app: api}}}}\n")],
     egress(peer_ip=V4, subject=WEB), None, ("default", "allow", None)),
    # P: direction: an ingress rule does not decide egress.
    ("ingress-rule-not-for-egress", [admin(1, "ingress:\n- {action: Deny, from: [{namespaces: {}}]}\n")],
     egress(peer=API), None, ("default", "allow", None)),
    # P: an ingress pods peer matches its pods; the subject is the destination.
    ("ingress-from-pods", [admin(1, f"ingress:\n- action: Deny\n  {FROM_PODS}\n")],
     ingress(peer=API), None, ("Admin", "deny", "p0")),
    # P (kcnpParseNamespacedPod with the cluster name): peers are the local cluster's pods.
    ("peer-pods-local-cluster-only", [admin(1, f"ingress:\n- action: Deny\n  {FROM_PODS}\n")],
     ingress(peer=pod("shop", "app=api", cluster="mesh-2")), None, ("default", "allow", None)),
    # P (kcnpParseCIDRSelectors): networks match the peer's address.
    ("networks-contain-the-peer", [admin(1, "egress:\n- {action: Deny, to: [{networks: [10.0.0.0/8]}]}\n")],
     egress(peer_ip=ipaddress.ip_address("10.1.2.3")), None, ("Admin", "deny", "p0")),
    ("networks-v6-peer-outside-v4", [admin(1, "egress:\n- {action: Deny, to: [{networks: [0.0.0.0/0]}]}\n")],
     egress(peer_ip=ipaddress.ip_address("2001:db8::1")), None, ("default", "allow", None)),
    # P (kcnpParseFQDNSelectors: "*." becomes "**."), A (DomainName doc): one or more labels.
    ("domain-wildcard-many-labels",
     [admin(1, "egress:\n- {action: Accept, to: [{domainNames: ['*.example.com']}]}\n"),
      admin(2, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n")],
     egress(peer_ip=V4, peer_name="a.b.example.com."), None, ("Admin", "allow", "p0")),
    ("domain-wildcard-not-the-apex",
     [admin(1, "egress:\n- {action: Accept, to: [{domainNames: ['*.example.com']}]}\n"),
      admin(2, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n")],
     egress(peer_ip=V4, peer_name="example.com"), None, ("Admin", "deny", "p1")),
    # P: the DNS rule Cilium adds for a domainNames Accept (kube-dns, named ports dns/dns-tcp).
    ("domain-accept-allows-dns-lookups",
     [admin(1, "egress:\n- {action: Accept, to: [{domainNames: [example.com]}]}\n"),
      admin(2, "egress:\n- {action: Deny, to: [{namespaces: {}}]}\n")],
     egress(peer=pod("kube-system", "k8s-app=kube-dns"), port=53, protocol="UDP", port_name="dns"), None,
     ("Admin", "allow", "p0")),
    # P (kcnpParseProtocols): protocol and port range.
    ("udp-range-matches", [admin(1, "egress:\n- action: Deny\n  " + ALL_OUT + "\n"
                                 "  protocols: [{udp: {destinationPort: {range: {start: 5000, end: 6000}}}}]\n")],
     egress(peer_ip=V4, port=5999, protocol="UDP"), None, ("Admin", "deny", "p0")),
    ("tcp-port-not-udp", [admin(1, "egress:\n- action: Deny\n  " + ALL_OUT + "\n"
                                "  protocols: [{tcp: {destinationPort: {number: 53}}}]\n")],
     egress(peer_ip=V4, port=53, protocol="UDP"), None, ("default", "allow", None)),
    # P: a named port has protocol ANY and matches the destination pod's port name.
    ("named-port", [admin(1, "ingress:\n- action: Deny\n  " + FROM_PODS + "\n  protocols: [{destinationNamedPort: http}]\n")],
     ingress(peer=API, port=8080, protocol="TCP", port_name="http"), None, ("Admin", "deny", "p0")),
    # P (kcnpProcessNodeSelector): nodes peers need reserved:remote-node: never the local host.
    ("nodes-peer-remote-node", [admin(1, "egress:\n- {action: Deny, to: [{nodes: {matchLabels: {role: infra}}}]}\n")],
     egress(peer=REMOTE_NODE), None, ("Admin", "deny", "p0")),
    ("nodes-peer-not-local-host", [admin(1, "egress:\n- {action: Deny, to: [{nodes: {matchLabels: {role: infra}}}]}\n")],
     egress(peer=HOST), None, ("default", "allow", None)),
]


@pytest.mark.parametrize(("policies", "connection", "np_tier", "expected"), [row[1:] for row in DECISIONS],
                         ids=[row[0] for row in DECISIONS])
def test_tier_decision_table(tmp_path, policies, connection, np_tier, expected):
    decision = decide(rules_of(tmp_path, *policies), connection, np_tier)
    name = decision.rule.policy.name if decision.rule else None
    assert (decision.tier, decision.verdict, name) == expected


def test_fail_closed_peer_rules():
    """P: a peer with no field Cilium knows (an experimental field the standard CRD pruned):
    an Accept matches nothing, a Deny or a Pass denies every peer (the Pass becomes a Deny)."""
    from hushflow.policy.yamlsource import LoadResult, load_text

    result = LoadResult()
    load_text(kcnp(admin(1, "egress:\n- {action: Accept, to: [{}]}\n- {action: Pass, to: [{}]}\n")), "f.yaml", result)
    rules = build_cluster_network_policy(result.manifests[0], "default")
    assert [(r.verdict, r.peer.everything, r.priority) for r in rules] == [("deny", True, 1.01)]


def test_rules_carry_the_labels_hubble_shows(tmp_path):
    """P (GetKCNPPolicyLabels) and utils.go GetPolicyLabels: derived-from, name (the
    policy.cilium.io/name annotation first), no namespace."""
    text = ("apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
            "metadata: {name: p, uid: u-1, annotations: {policy.cilium.io/name: shown}}\n"
            "spec:\n" + textwrap.indent(admin(1, "ingress:\n- {action: Deny, from: [{namespaces: {}}]}\n"), "  "))
    (manifest,) = load(tmp_path, text).cluster_network_policies
    (rule,) = build_cluster_network_policy(manifest)
    assert rule.cilium_labels() == (
        "k8s:io.cilium.k8s.policy.derived-from=ClusterNetworkPolicy",
        "k8s:io.cilium.k8s.policy.name=shown",
        "k8s:io.cilium.k8s.policy.uid=u-1",
    )
    assert (rule.tier, rule.priority, rule.policy.kind) == ("Admin", 1, "ClusterNetworkPolicy")


# HF076: the CRD's `priority` doc: policies of one tier and priority that match the same
# connection are applied in no defined order; Cilium resolves them deny over allow (CFP-42904).
TIES = [
    ("accept-and-deny-same-priority", admin(10, f"egress:\n- {{action: Accept, {ALL_OUT}}}\n"),
     admin(10, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n"), True),
    ("pass-and-accept-same-priority", admin(10, "ingress:\n- {action: Pass, from: [{namespaces: {}}]}\n"),
     admin(10, "ingress:\n- {action: Accept, from: [{namespaces: {}}]}\n"), True),
    ("same-action", admin(10, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n"),
     admin(10, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n"), False),
    ("other-priority", admin(10, f"egress:\n- {{action: Accept, {ALL_OUT}}}\n"),
     admin(11, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n"), False),
    ("other-tier", admin(10, f"egress:\n- {{action: Accept, {ALL_OUT}}}\n"),
     baseline(10, f"egress:\n- {{action: Deny, {ALL_OUT}}}\n"), False),
    ("other-direction", admin(10, f"egress:\n- {{action: Accept, {ALL_OUT}}}\n"),
     admin(10, "ingress:\n- {action: Deny, from: [{namespaces: {}}]}\n"), False),
]


@pytest.mark.parametrize(("first", "second", "warned"), [row[1:] for row in TIES], ids=[row[0] for row in TIES])
def test_hf076_same_tier_and_priority(tmp_path, first, second, warned):
    loaded = load(tmp_path, kcnp(first, name="a") + "---\n" + kcnp(second, name="b"))
    hits = [d for d in loaded.diagnostics if d.code == "HF076"]
    if not warned:
        assert hits == []
        return
    assert len(hits) == 1 and hits[0].location.path == ("spec", "priority") and hits[0].location.line > 7
    assert "ClusterNetworkPolicy a" in hits[0].message and "kcnp.yaml:" in hits[0].message


def _bundled(name: str) -> str:
    from importlib import resources

    return resources.files("hushflow.policy").joinpath("schemas", name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["npa-v0.2.0-experimental-clusternetworkpolicy_v1alpha2.json",
                                  "npa-v0.2.0-standard-clusternetworkpolicy_v1alpha2.json"])
def test_bundled_schema_is_the_conversion_of_itself(name):
    """schemas/README.md: each file is scripts/cilium_crd_schema.py's output, a fixed point of it."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[2] / "scripts" / "cilium_crd_schema.py"
    spec = importlib.util.spec_from_file_location("cilium_crd_schema", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = _bundled(name)
    assert module.convert(text, "v1alpha2") == text


def test_experimental_schema_adds_only_domain_names_and_nodes():
    """v0.2.0's two channels differ in the egress peers (and their docs): hushflow validates with
    the superset and reports the two fields as HF075."""
    import json

    def peer_fields(name: str) -> set[str]:
        schema = json.loads(_bundled(name))
        egress = schema["properties"]["spec"]["properties"]["egress"]["items"]
        return set(egress["properties"]["to"]["items"]["properties"])

    experimental = peer_fields("npa-v0.2.0-experimental-clusternetworkpolicy_v1alpha2.json")
    standard = peer_fields("npa-v0.2.0-standard-clusternetworkpolicy_v1alpha2.json")
    assert experimental - standard == {"domainNames", "nodes"} and standard <= experimental
