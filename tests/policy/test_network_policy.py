"""Kubernetes NetworkPolicy: loading, translation into Cilium rules, and hostile input.

Translation rows follow cilium/cilium pkg/k8s/network_policy.go (ParseNetworkPolicy,
parseNetworkPolicyPeer, parsePodSelector, parsePorts, ipBlockToCIDRRule; the 1.19/1.20 form that
takes the cluster name); validation rows follow kubernetes/kubernetes
pkg/apis/networking/validation/validation.go and the Kubernetes 1.37 OpenAPI schema bundled in
policy/schemas. The cases are written here; none is copied.
"""

from __future__ import annotations

import textwrap

import pytest

from hushflow.policy.loading import load_policies
from hushflow.policy.model import BuildOptions, PeerRule, Rule


def np_doc(spec: str, name: str = "np", ns: str | None = "shop", extra_meta: str = "") -> str:
    namespace = f", namespace: {ns}" if ns else ""
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}{namespace}{extra_meta}}}\n"
            f"spec:\n{textwrap.indent(textwrap.dedent(spec).strip(), '  ')}\n")


def load(tmp_path, text: str, options: BuildOptions | None = None):
    path = tmp_path / "np.yaml"
    path.write_text(text)
    return load_policies([str(path)], options or BuildOptions.for_cluster((1, 19)))


def one_rule(tmp_path, spec: str, **kw) -> Rule:
    loaded = load(tmp_path, np_doc(spec, **kw))
    assert [d for d in loaded.diagnostics if d.level.value == "error"] == []
    (rule,) = loaded.policy_set.rules
    return rule


def peers(entries: tuple[PeerRule, ...]) -> list[tuple[tuple[str, ...], list[str], list[str]]]:
    return [(p.l3_fields, [str(s) for s in p.endpoints or ()],
             [str(x) for port_rule in p.ports or () for x in port_rule.ports]) for p in entries]


NS = "k8s:io.kubernetes.pod.namespace=shop"
LOCAL = "k8s:io.cilium.k8s.policy.cluster=default"

# (id, spec, ingress peers, egress peers, default-deny ingress, default-deny egress)
TRANSLATION = [
    # policyTypes and the default deny they switch on (ParseNetworkPolicy: an empty ingress gets a
    # deny-all entry unless policyTypes names only Egress; an empty egress only when it names Egress).
    ("no-rules-isolates-ingress", "podSelector: {}", [((), [], [])], [], True, False),
    ("egress-only-type", "podSelector: {}\npolicyTypes: [Egress]", [], [((), [], [])], False, True),
    ("both-types-no-rules", "podSelector: {}\npolicyTypes: [Ingress, Egress]", [((), [], [])], [((), [], [])],
     True, True),
    ("egress-rules-imply-no-ingress-deny-with-type", "podSelector: {}\npolicyTypes: [Egress]\negress: [{}]",
     [], [((), [], [])], False, True),
    ("egress-rules-without-types-still-isolate-ingress", "podSelector: {}\negress: [{}]",
     [((), [], [])], [((), [], [])], True, True),
    # Cilium builds rules of a direction policyTypes omits (no policyTypes check on the rule lists).
    ("ingress-rules-kept-when-types-egress", "podSelector: {}\npolicyTypes: [Egress]\ningress: [{}]",
     [((), [], [])], [((), [], [])], True, True),
    # `ingress: []` is no entry; `ingress: [{}]` and `from: []` match every peer.
    ("empty-ingress-list", "podSelector: {}\ningress: []", [((), [], [])], [], True, False),
    ("from-empty-list", "podSelector: {}\ningress: [{from: []}]", [((), [], [])], [], True, False),
    # peers (parseNetworkPolicyPeer): pod selector pinned to the namespace, namespace selector
    # prefixed, empty namespace selector = every namespace; the local cluster added (1.19).
    ("pod-selector-peer", "podSelector: {}\ningress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]",
     [(("fromEndpoints",), [f"k8s:app=web, {LOCAL}, {NS}"], [])], [], True, False),
    ("namespace-selector-peer",
     "podSelector: {}\negress: [{to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ops}}}]}]",
     [((), [], [])],
     [(("toEndpoints",), [f"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=ops, {LOCAL}"], [])],
     True, True),
    ("empty-namespace-selector", "podSelector: {}\negress: [{to: [{namespaceSelector: {}}]}]",
     [((), [], [])], [(("toEndpoints",), [f"k8s:io.kubernetes.pod.namespace, {LOCAL}"], [])], True, True),
    ("both-selectors-and",
     "podSelector: {}\negress: [{to: [{namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchLabels: {app: x}}}]}]",
     [((), [], [])],
     [(("toEndpoints",), [f"k8s:io.cilium.k8s.namespace.labels.team=a, k8s:app=x, {LOCAL}"], [])], True, True),
    ("cluster-named-kept",
     "podSelector: {}\negress: [{to: [{podSelector: {matchLabels: {io.cilium.k8s.policy.cluster: east}}}]}]",
     [((), [], [])], [(("toEndpoints",), [f"k8s:io.cilium.k8s.policy.cluster=east, {NS}"], [])], True, True),
    # ipBlock (ipBlockToCIDRRule): a CIDR rule; egress has no endpoint part. An ingress ipBlock peer
    # is also parsed as a pod selector when the local cluster is added (see network_policy.py).
    ("egress-ipblock", "podSelector: {}\negress: [{to: [{ipBlock: {cidr: 192.0.2.0/24}}]}]",
     [((), [], [])], [(("toCIDRSet",), [], [])], True, True),
    ("ingress-ipblock-local-cluster", "podSelector: {}\ningress: [{from: [{ipBlock: {cidr: 192.0.2.0/24}}]}]",
     [(("fromEndpoints", "fromCIDRSet"), [f"{LOCAL}, {NS}"], [])], [], True, False),
    # ports (parsePorts): TCP by default, all ports when only a protocol, endPort, named ports.
    ("ports", "podSelector: {}\ningress: [{ports: [{port: 80}, {protocol: UDP}, {port: 8000, endPort: 8100}, "
     "{port: http, protocol: SCTP}]}]",
     [((), [], ["80/TCP", "0/UDP", "8000-8100/TCP", "http/SCTP"])], [], True, False),
]


@pytest.mark.parametrize(("spec", "ingress", "egress", "deny_in", "deny_out"), [c[1:] for c in TRANSLATION],
                         ids=[c[0] for c in TRANSLATION])
def test_translation(tmp_path, spec, ingress, egress, deny_in, deny_out):
    rule = one_rule(tmp_path, spec)
    assert peers(rule.ingress) == ingress
    assert peers(rule.egress) == egress
    assert (rule.default_deny_ingress, rule.default_deny_egress) == (deny_in, deny_out)
    assert rule.ingress_deny == rule.egress_deny == ()


def test_subject_and_labels(tmp_path):
    """podSelector + the policy namespace (parsePodSelector overwrites a namespace matchLabel);
    the derived-from labels of GetPolicyLabelsv1 (utils.go GetPolicyLabels), uid included."""
    rule = one_rule(tmp_path, "podSelector: {matchLabels: {app: db, io.kubernetes.pod.namespace: other}}",
                    extra_meta=", uid: 1234-abcd")
    assert str(rule.subject) == "k8s:app=db, k8s:io.kubernetes.pod.namespace=shop"
    assert rule.policy.kind == "NetworkPolicy"
    assert rule.cilium_labels() == (
        "k8s:io.cilium.k8s.policy.derived-from=NetworkPolicy", "k8s:io.cilium.k8s.policy.name=np",
        "k8s:io.cilium.k8s.policy.namespace=shop", "k8s:io.cilium.k8s.policy.uid=1234-abcd",
    )


def test_default_namespace_and_name_annotation(tmp_path):
    """ExtractNamespaceOrDefault; annotation policy.cilium.io/name names the policy (pkg/annotation)."""
    rule = one_rule(tmp_path, "podSelector: {}", ns=None,
                    extra_meta=", annotations: {policy.cilium.io/name: shown-name}")
    assert (rule.policy.namespace, rule.policy.name) == ("default", "shown-name")
    assert str(rule.subject) == "k8s:io.kubernetes.pod.namespace=default"


def test_without_local_cluster_no_cluster_label_and_ingress_ipblock_is_cidr_only(tmp_path):
    loaded = load(tmp_path, np_doc("podSelector: {}\ningress: [{from: [{ipBlock: {cidr: 192.0.2.0/24}}, "
                                   "{podSelector: {}}]}]"), BuildOptions.for_cluster((1, 18)))
    (rule,) = loaded.policy_set.rules
    assert peers(rule.ingress) == [(("fromCIDRSet",), [], []), (("fromEndpoints",), [NS], [])]


def test_positions_point_at_the_fields(tmp_path):
    loaded = load(tmp_path, np_doc("podSelector: {}\ningress:\n- from:\n  - podSelector: {matchLabels: {a: b}}\n"
                                   "  ports:\n  - port: 80"))
    (rule,) = loaded.policy_set.rules
    (entry,) = rule.ingress
    assert (entry.where.line, entry.endpoints[0].where.line, entry.ports[0].where.line) == (8, 8, 10)
    assert rule.where.line == 4


# (id, spec or whole document, the field path the error points at, words of the message)
HOSTILE = [
    ("unknown-field", "podSelector: {}\ningress: [{fromm: []}]", "spec.ingress[0].fromm", "unknown field"),
    ("wrong-type", "podSelector: {}\ningress: {from: []}", "spec.ingress", "must be an array"),
    ("port-wrong-type", "podSelector: {}\ningress: [{ports: [{port: [1]}]}]", "spec.ingress[0].ports[0].port",
     "must be a number or a port name, not an array"),
    ("port-fraction", "podSelector: {}\ningress: [{ports: [{port: 1.5}]}]", "spec.ingress[0].ports[0].port",
     "must be a number or a port name, not a fractional number"),
    ("endport-int32", "podSelector: {}\ningress: [{ports: [{port: 1, endPort: 99999999999}]}]",
     "spec.ingress[0].ports[0].endPort", "not a valid int32"),
    ("spec-not-object", None, "spec", "must be an object, not an array"),
    ("metadata-wrong-type", "podSelector: {}\ningress: [{ports: [{port: 1, endPort: x}]}]",
     "spec.ingress[0].ports[0].endPort", "must be an integer, not a string"),
    ("bad-protocol", "podSelector: {}\ningress: [{ports: [{protocol: ICMP}]}]",
     "spec.ingress[0].ports[0].protocol", "not one of"),
    ("port-range", "podSelector: {}\ningress: [{ports: [{port: 70000}]}]", "spec.ingress[0].ports[0].port",
     "out of range"),
    ("bad-port-name", "podSelector: {}\ningress: [{ports: [{port: Web_Port}]}]", "spec.ingress[0].ports[0].port",
     "not a port name"),
    ("endport-named", "podSelector: {}\ningress: [{ports: [{port: http, endPort: 90}]}]",
     "spec.ingress[0].ports[0].endPort", "numeric port"),
    ("endport-below", "podSelector: {}\ningress: [{ports: [{port: 90, endPort: 80}]}]",
     "spec.ingress[0].ports[0].endPort", "between"),
    ("empty-peer", "podSelector: {}\ningress: [{from: [{}]}]", "spec.ingress[0].from[0]", "must specify a peer"),
    ("ipblock-and-selector", "podSelector: {}\negress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]",
     "spec.egress[0].to[0]", "both ipBlock"),
    ("bad-cidr", "podSelector: {}\negress: [{to: [{ipBlock: {cidr: 10.0.0.300/8}}]}]",
     "spec.egress[0].to[0].ipBlock.cidr", "not a valid CIDR"),
    ("except-outside", "podSelector: {}\negress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]",
     "spec.egress[0].to[0].ipBlock.except[0]", "strict subset"),
    ("except-equal", "podSelector: {}\negress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}]",
     "spec.egress[0].to[0].ipBlock.except[0]", "strict subset"),
    ("bad-policy-type", "podSelector: {}\npolicyTypes: [Ingres]", "spec.policyTypes[0]", "not one of"),
    ("bad-operator", "podSelector: {matchExpressions: [{key: app, operator: Has}]}",
     "spec.podSelector.matchExpressions[0].operator", "not one of"),
    ("in-without-values", "podSelector: {}\negress: [{to: [{podSelector: {matchExpressions: [{key: a, operator: In}]}}]}]",
     "spec.egress[0].to[0].podSelector.matchExpressions[0].values", "must be specified"),
    ("exists-with-values", "podSelector: {}\negress: [{to: [{namespaceSelector: {matchExpressions: "
     "[{key: a, operator: Exists, values: [x]}]}}]}]",
     "spec.egress[0].to[0].namespaceSelector.matchExpressions[0].values", "may not be specified"),
    ("bad-label-key", "podSelector: {matchLabels: {'a b': x}}", "spec.podSelector.matchLabels.a b", "label key"),
    ("bad-label-value", "podSelector: {matchLabels: {app: 'x y'}}", "spec.podSelector.matchLabels.app",
     "label value"),
    ("cnp-fields-in-np", "podSelector: {}\ningress: [{fromEndpoints: [{}]}]", "spec.ingress[0].fromEndpoints",
     "unknown field"),
]


@pytest.mark.parametrize(("spec", "field", "words"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_input_is_an_error_at_its_field(tmp_path, spec, field, words):
    text = np_doc(spec) if spec is not None else np_doc("podSelector: {}").replace("spec:\n  podSelector: {}", "spec: []")
    loaded = load(tmp_path, text)
    errors = [d for d in loaded.diagnostics if d.level.value == "error"]
    assert errors, loaded.diagnostics
    assert loaded.policy_set.policies == []
    assert any(d.location.field == field and words in d.message for d in errors), [
        (d.location.field, d.message) for d in errors]
    assert all(d.location.file.endswith("np.yaml") and d.location.line > 0 for d in errors)


@pytest.mark.parametrize(("name", "ns", "field"), [
    ("Bad_Name", "shop", "metadata.name"), ("ok", "Shop!", "metadata.namespace"), ("a" * 254, "shop", "metadata.name"),
])
def test_name_rules(tmp_path, name, ns, field):
    loaded = load(tmp_path, np_doc("podSelector: {}", name=name, ns=ns))
    assert [d.location.field for d in loaded.diagnostics if d.code == "HF015"] == [field]
    assert loaded.policy_set.policies == []


def test_wrong_api_version_and_other_kinds_still_skipped(tmp_path):
    text = np_doc("podSelector: {}").replace("networking.k8s.io/v1", "networking.k8s.io/v1beta1")
    text += "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
    loaded = load(tmp_path, text)
    assert [d.code for d in loaded.diagnostics] == ["HF010", "HF003"]
    assert loaded.policy_set.policies == []


def test_lint_cli_exits_2_with_file_line(tmp_path):
    from click.testing import CliRunner

    from hushflow.cli.lint import lint

    path = tmp_path / "np.yaml"
    path.write_text(np_doc("podSelector: {}\ningress: [{from: [{}]}]"))
    result = CliRunner().invoke(lint, [str(path)])
    assert result.exit_code == 1, result.output  # lint's exit code for error findings, as for a CNP
    assert f"{path}:6:" in result.output and "must specify a peer" in result.output
    assert "Traceback" not in result.output


DENY_WEB = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: deny-web, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: web}}]
"""


def test_lint_sees_a_cnp_deny_shadowing_a_network_policy_allow(tmp_path):
    """HF050 across kinds: Cilium's deny wins over every allow whatever kind wrote it."""
    from hushflow.policy.lint import lint_paths

    path = tmp_path / "p.yaml"
    allow = np_doc("podSelector: {matchLabels: {app: db}}\ningress:\n- from: [{podSelector: {matchLabels: {app: web}}}]\n"
                   "  ports: [{port: 5432}]", name="db-from-web")
    path.write_text(allow + "---\n" + DENY_WEB)
    report = lint_paths([str(path)], BuildOptions.for_cluster((1, 19)))
    (shadow,) = [d for d in report.diagnostics if d.code == "HF050"]
    assert f"{path}:7 spec.ingress[0].from[0] (fromEndpoints on 5432/TCP)" in shadow.message
    assert shadow.location.line == 16


def test_lint_no_error_for_an_ingress_ipblock_with_the_local_cluster(tmp_path):
    """The ipBlock peer Cilium also reads as a pod peer (1.19) is one written peer kind: no HF031."""
    from hushflow.policy.lint import lint_paths

    path = tmp_path / "p.yaml"
    path.write_text(np_doc("podSelector: {}\ningress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}}]}]"))
    report = lint_paths([str(path)], BuildOptions.for_cluster((1, 19)))
    assert [d.code for d in report.diagnostics if d.level.value != "info"] == []


def test_compile_counts_network_policies_and_leaves_them_alone(tmp_path):
    from hushflow.app.compile import CompileJob, run_compile

    path = tmp_path / "p.yaml"
    path.write_text(np_doc("podSelector: {}", name="a") + "---\n" + np_doc("podSelector: {}\npolicyTypes: [Egress]",
                                                                              name="b"))
    out = tmp_path / "out"
    report = run_compile(CompileJob([str(path)], out_dir=str(out), resolve=False), now=lambda: 1000.0)
    assert "read 2 NetworkPolicy object(s): left as they are (not written to --out)" in report.lines()
    assert report.output.policies == []
    assert not any("kind: NetworkPolicy" in f.read_text(errors="replace") for f in out.rglob("*") if f.is_file())
    assert path.read_text().count("kind: NetworkPolicy") == 2


@pytest.mark.parametrize(("spec", "grants"), [
    ("podSelector: {}", False),  # the implied deny-everything entry
    ("podSelector: {}\ningress: []", False),
    ("podSelector: {}\ningress: [{}]", True),  # every peer, every port
    ("podSelector: {}\ningress: [null]", True),  # Kubernetes decodes a null item as an empty rule
    ("podSelector: {}\ningress: [{from: [], ports: [null]}]", True),
])
def test_empty_forms_allow_every_peer_or_nothing(tmp_path, spec, grants):
    (entry,) = one_rule(tmp_path, spec).ingress
    assert entry.grants_nothing is not grants
    if grants:
        assert entry.any_peer and all(p.covers(1) and p.protocol == "TCP" for r in entry.ports or () for p in r.ports)


def test_summary_names_it_as_kubectl_does(tmp_path):
    """`hushflow summary` uses kubectl's short names: netpol for a NetworkPolicy, cnp beside it."""
    from hushflow.policy.summary import summarize

    text = np_doc("podSelector: {}\npolicyTypes: [Ingress]\n", name="isolate") + "---\n" + (
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: c, namespace: shop}\n"
        "spec:\n  endpointSelector: {}\n  egress: [{}]\n")
    names = sorted(s.policy for s in summarize(load(tmp_path, text).policy_set))
    assert names == ["cnp/shop/c", "netpol/shop/isolate"]
