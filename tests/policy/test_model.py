"""The model applies Cilium's implicit rules (reference §A.2, §A.6) and keeps sources."""

from __future__ import annotations

import textwrap

import pytest

from hushflow.policy.labels import endpoint_label_map
from hushflow.policy.loading import load_policies
from hushflow.policy.model import BuildOptions, PolicyRef


def load(tmp_path, text, options=None):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    loaded = load_policies([str(path)], options)
    assert not [d for d in loaded.diagnostics if d.level.value == "error"], loaded.diagnostics
    return loaded.policy_set


def labels(*items):
    return endpoint_label_map(items)


CNP = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: shop, uid: u-1}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEndpoints: [{}]
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": db}}]
  - toEndpoints: [{matchLabels: {"reserved:host": ""}}]
  - toEndpoints: [{matchLabels: {"io.cilium.k8s.namespace.labels.team": pay}}]
"""


def test_cnp_subject_is_scoped_to_the_policy_namespace(tmp_path):
    rule = load(tmp_path, CNP).rules[0]
    assert rule.subject.matches(labels("k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"))
    assert not rule.subject.matches(labels("k8s:app=web", "k8s:io.kubernetes.pod.namespace=other"))
    assert not rule.subject.matches(labels("k8s:app=api", "k8s:io.kubernetes.pod.namespace=shop"))


@pytest.mark.parametrize(
    ("index", "peer", "selected"),
    [
        ("empty-selector-same-namespace", ["k8s:io.kubernetes.pod.namespace=shop"], True),
        ("empty-selector-not-other-namespace", ["k8s:io.kubernetes.pod.namespace=db"], False),
        ("explicit-namespace-kept", ["k8s:io.kubernetes.pod.namespace=db"], True),
        ("reserved-selector-left-alone", ["reserved:host"], True),
        ("namespace-labels-key-not-scoped", ["k8s:io.cilium.k8s.namespace.labels.team=pay",
                                             "k8s:io.kubernetes.pod.namespace=billing"], True),
    ],
)
def test_cnp_peer_namespace_rules(tmp_path, index, peer, selected):
    position = {
        "empty-selector-same-namespace": 0,
        "empty-selector-not-other-namespace": 0,
        "explicit-namespace-kept": 1,
        "reserved-selector-left-alone": 2,
        "namespace-labels-key-not-scoped": 3,
    }[index]
    rule = load(tmp_path, CNP).rules[0]
    (selector,) = rule.egress[position].endpoints
    assert selector.matches(labels(*peer)) is selected


def test_ccnp_peer_needs_some_namespace(tmp_path):
    text = """
    apiVersion: cilium.io/v2
    kind: CiliumClusterwideNetworkPolicy
    metadata: {name: c}
    spec:
      endpointSelector: {}
      ingress: [{fromEndpoints: [{}]}]
    """
    rule = load(tmp_path, text).rules[0]
    (selector,) = rule.ingress[0].endpoints
    assert selector.matches(labels("k8s:io.kubernetes.pod.namespace=any"))
    assert not selector.matches(labels("reserved:world"))
    assert rule.subject.matches(labels("reserved:host")) and rule.policy.namespace == ""


def test_label_sources(tmp_path):
    text = """
    apiVersion: cilium.io/v2
    kind: CiliumClusterwideNetworkPolicy
    metadata: {name: c}
    spec:
      endpointSelector:
        matchLabels: {"k8s:app": web, tier: front}
        matchExpressions: [{key: env, operator: NotIn, values: [dev]}, {key: "$host", operator: DoesNotExist}]
      egress: [{toEntities: [world]}]
    """
    rule = load(tmp_path, text).rules[0]
    assert rule.subject.matches(labels("k8s:app=web", "container:tier=front"))  # any: source
    assert not rule.subject.matches(labels("container:app=web", "k8s:tier=front"))  # k8s: only
    assert not rule.subject.matches(labels("k8s:app=web", "k8s:tier=front", "k8s:env=dev"))
    assert not rule.subject.matches(labels("k8s:app=web", "k8s:tier=front", "reserved:host"))


@pytest.mark.parametrize(
    ("spec", "ingress", "egress"),
    [
        ("ingress: [{fromEntities: [world]}]", True, False),
        ("egressDeny: [{toEntities: [world]}]", False, True),
        ("egress: [{toEntities: [world]}]\nenableDefaultDeny: {egress: false}", False, False),
        ("egress: [{toEntities: [world]}]\nenableDefaultDeny: {ingress: true}", True, True),
    ],
)
def test_default_deny_per_direction(tmp_path, spec, ingress, egress):
    text = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\nspec:\n  endpointSelector: {}\n"
    text += textwrap.indent(spec, "  ") + "\n"
    rule = load(tmp_path, text).rules[0]
    assert (rule.default_deny_ingress, rule.default_deny_egress) == (ingress, egress)


def test_specs_log_and_fqdn_deny_extension(tmp_path):
    text = """
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: p, namespace: ns}
    spec:
      endpointSelector: {}
      egress: [{toEntities: [world]}]
    specs:
    - endpointSelector: {}
      egressDeny:
      - toFQDNs: [{matchPattern: "*.t.example.com"}]
        toPorts: [{ports: [{port: "443", protocol: TCP}]}]
      log: {value: blocked}
    """
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    loaded = load_policies([str(path)])
    assert [d.code for d in loaded.diagnostics] == ["HF020"]
    first, second = loaded.policy_set.rules
    assert first.where.field == "spec" and second.where.field == "specs[0]"
    (deny,) = second.egress_deny
    assert deny.deny and deny.fqdns[0].matches("a.t.example.com")
    assert not deny.fqdns[0].matches("t.example.com")
    assert deny.where.line == 11 and second.log_value == "blocked"
    assert str(deny.ports[0].ports[0]) == "443/TCP"


def test_policy_labels_as_hubble_prints_them():
    ref = PolicyRef("CiliumNetworkPolicy", "allow-ingress-payments", "payments", "79008596")
    assert ref.cilium_labels() == (
        "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy",
        "k8s:io.cilium.k8s.policy.name=allow-ingress-payments",
        "k8s:io.cilium.k8s.policy.namespace=payments",
        "k8s:io.cilium.k8s.policy.uid=79008596",
    )
    assert "k8s:io.cilium.k8s.policy.uid=" not in " ".join(PolicyRef("CiliumNetworkPolicy", "a", "b").cilium_labels())


def test_local_cluster_option(tmp_path):
    text = CNP.replace("uid: u-1", "uid: u-1")
    rule = load(tmp_path, text, BuildOptions(local_cluster="prod")).rules[0]
    (selector,) = rule.egress[0].endpoints
    ns = "k8s:io.kubernetes.pod.namespace=shop"
    assert selector.matches(labels(ns, "k8s:io.cilium.k8s.policy.cluster=prod"))
    assert not selector.matches(labels(ns, "k8s:io.cilium.k8s.policy.cluster=other"))


def test_an_l7_dns_rule_is_a_dns_proxy_selector_and_tofqdns_is_not(tmp_path):
    """pkg/fqdn/dnsproxy/proxy.go: the DNS proxy's select-all lets any query name through, while
    toFQDNs' select-all (pkg/fqdn/matchpattern) matches only names of DNS characters."""
    policy_set = load(tmp_path, """
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: p, namespace: n}
        spec:
          endpointSelector: {}
          egress:
          - toEndpoints: [{matchLabels: {"k8s:k8s-app": kube-dns}}]
            toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*"}]}}]
          - toFQDNs: [{matchPattern: "*"}]
    """)
    (rule,) = policy_set.rules
    (dns,) = rule.egress[0].ports[0].dns
    (fqdn,) = rule.egress[1].fqdns
    assert dns.dns_proxy and not fqdn.dns_proxy
    assert dns.matches("odd name!.example") and not fqdn.matches("odd name!.example")


@pytest.mark.parametrize(
    ("port", "number", "name"),
    [
        ("443", 443, None),
        ("0", 0, None),
        ("0100", 64, None),  # ParseUint base 0: a leading zero is octal (lint warns, HF018)
        ("8_080", 8080, None),  # base 0 takes "_" between digits
        ("http-8080", None, "http-8080"),  # a letter makes a service name (pkg/iana)
        ("0x1f", None, "0x1f"),  # a valid service name before it could be hex
    ],
)
def test_a_port_is_read_as_the_agent_reads_it(port: str, number: int | None, name: str | None) -> None:
    """pkg/policy/api/l4.go (PortProtocol sanitize): a name when it is an IANA service name,
    else strconv.ParseUint(port, 0, 16). The decision engine matches what the agent enforces."""
    from hushflow.policy.model import PortProtocol

    proto = PortProtocol(port, None, "TCP", None)  # type: ignore[arg-type]
    assert (proto.number, proto.name) == (number, name)
    if number:
        assert proto.covers(number)
    if port == "0100":
        assert not proto.covers(100)  # what the YAML seems to say is not what is enforced
