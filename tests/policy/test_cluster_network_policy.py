"""ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2): schema, CEL rules, lint, hostile input.

Sources (docs/cluster-network-policy.md has them all):
- CRD: kubernetes-sigs/network-policy-api v0.2.0 (a17adecd0316b8ff1c3f83939ec0441d68cd6cce),
  config/crd/experimental/policy.networking.k8s.io_clusternetworkpolicies.yaml;
- Cilium's parser: cilium/cilium pkg/k8s/cluster_network_policy.go (0ac689d71fc0, the version
  that reads v0.2.0's `protocols`, tiers and priorities).
"""

from __future__ import annotations

import textwrap

import pytest

from hushflow.policy.diagnostics import CHECKS, Severity
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
