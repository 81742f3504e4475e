"""Decisions: one row per semantic rule (deny precedence, specificity, default deny, peers, ports)."""

from __future__ import annotations

import pytest

from hushflow.engine.attribution import Attributor
from tests.engine.conftest import WORLD, dns_answer, flow, pod

APP = pod("shop", "web", 1001)
DB = pod("shop", "db", 1002)
OTHER_NS_DB = pod("other", "db", 1003)
# conftest's pods run in mesh cluster c1; the `cluster` entity selects Cilium's default cluster-name.
LOCAL_OTHER_NS_DB = {**OTHER_NS_DB, "labels": [label.replace("cluster=c1", "cluster=default")
                                               for label in OTHER_NS_DB["labels"]]}
HOST = {"identity": 1}


def cnp(name: str, spec: str, ns: str = "shop") -> str:
    return f"apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}"


def ccnp(name: str, spec: str) -> str:
    return f"apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n{spec}"


WEB = "  endpointSelector: {matchLabels: {app: web}}\n"
FQDN_ALLOW = cnp("fqdn-allow", WEB + '  egress:\n  - toFQDNs: [{matchName: api.stripe.com}]\n'
                 '    toPorts: [{ports: [{port: "443", protocol: TCP}]}]\n')
WORLD_DENY_443 = cnp("deny-world", WEB + '  egressDeny:\n  - toEntities: [world]\n'
                     '    toPorts: [{ports: [{port: "443", protocol: TCP}]}]\n')
DB_ALLOW = cnp("to-db", WEB + '  egress:\n  - toEndpoints: [{matchLabels: {app: db}}]\n'
               '    toPorts: [{ports: [{port: "5432", protocol: TCP}]}]\n')
L4_ONLY = cnp("l4-only", WEB + '  egress:\n  - toPorts: [{ports: [{port: "5432"}]}]\n')
NO_DEFAULT_DENY = cnp("soft", WEB + '  enableDefaultDeny: {egress: false}\n'
                      '  egress:\n  - toEndpoints: [{matchLabels: {app: db}}]\n')
CIDR = cnp("cidr", WEB + "  egress:\n  - toCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.128/25]}]\n")
GROUP = ("apiVersion: cilium.io/v2\nkind: CiliumCIDRGroup\nmetadata: {name: partners, labels: {team: pay}}\n"
         "spec: {externalCIDRs: [198.51.100.0/24]}")
GROUP_REF = cnp("group-ref", WEB + "  egress:\n  - toCIDRSet: [{cidrGroupRef: partners}]\n")
GROUP_SEL = cnp("group-sel", WEB + "  egress:\n  - toCIDRSet: [{cidrGroupSelector: {matchLabels: {team: pay}}}]\n")
ENTITIES = cnp("entities", WEB + "  egress:\n  - toEntities: [host, kube-apiserver]\n")
CLUSTER = cnp("cluster", WEB + "  egress:\n  - toEntities: [cluster]\n")
SAME_NS = cnp("same-ns", WEB + "  egress:\n  - toEndpoints: [{}]\n")
RANGE = cnp("range", WEB + '  egress:\n  - toEntities: [world]\n    toPorts: [{ports: [{port: "8000", endPort: 8100, protocol: ANY}]}]\n')
NAMED = cnp("named", WEB + '  egress:\n  - toEntities: [world]\n    toPorts: [{ports: [{port: "https", protocol: TCP}]}]\n')
ICMP = cnp("icmp", WEB + "  egress:\n  - toEntities: [world]\n    icmps: [{fields: [{type: EchoRequest}, {family: IPv6, type: 128}]}]\n")
SERVICE = cnp("svc", WEB + "  egress:\n  - toServices: [{k8sService: {serviceName: ext-db, namespace: shop}}]\n")
INGRESS = cnp("ingress", "  endpointSelector: {matchLabels: {app: db}}\n  ingress:\n"
              '  - fromEndpoints: [{matchLabels: {app: web}}]\n    toPorts: [{ports: [{port: "5432", protocol: TCP}]}]\n')
FQDN_DENY = cnp("block", WEB + '  egressDeny:\n  - toFQDNs: [{matchPattern: "*.telemetry.example.com"}]\n'
                '    toPorts: [{ports: [{port: "443", protocol: TCP}]}]\n  log: {value: blocked}\n')
OTHER_NS_POLICY = cnp("elsewhere", WEB + "  egressDeny: [{toEntities: [all]}]\n", ns="other")
CLUSTERWIDE_DENY = ccnp("cw", "  endpointSelector: {matchLabels: {app: web}}\n  egressDeny: [{toEntities: [world]}]\n")

# (id, policies, event, expected outcome, names of the responsible policies)
CASES = [
    ("deny-beats-allow", [FQDN_ALLOW, WORLD_DENY_443],
     flow(APP, WORLD, dst_ip="54.1.1.1", names=["api.stripe.com"], verdict="DROPPED", drop="POLICY_DENY"),
     "denied", ["deny-world"]),
    ("fqdn-allow-from-destination-names", [FQDN_ALLOW], flow(APP, WORLD, dst_ip="54.1.1.1", names=["api.stripe.com"]),
     "allowed", ["fqdn-allow"]),
    ("fqdn-other-name-default-deny", [FQDN_ALLOW], flow(APP, WORLD, dst_ip="54.1.1.1", names=["evil.com"]),
     "default-deny", []),
    ("fqdn-wrong-port", [FQDN_ALLOW], flow(APP, WORLD, dst_ip="54.1.1.1", names=["api.stripe.com"], port=80),
     "default-deny", []),
    ("l3l4-before-l4-only", [DB_ALLOW, L4_ONLY], flow(APP, DB, port=5432), "allowed", ["to-db"]),
    ("l4-only-any-peer", [L4_ONLY], flow(APP, WORLD, dst_ip="8.8.8.8", port=5432), "allowed", ["l4-only"]),
    ("no-policy-not-enforced", [INGRESS], flow(APP, DB, port=1), "not-enforced", []),
    ("default-deny-off", [NO_DEFAULT_DENY], flow(APP, WORLD, dst_ip="8.8.8.8"), "not-enforced", []),
    ("namespace-scoped-selector", [DB_ALLOW], flow(APP, OTHER_NS_DB, port=5432), "default-deny", []),
    ("policy-in-other-namespace-ignored", [OTHER_NS_POLICY], flow(APP, WORLD, dst_ip="8.8.8.8"), "not-enforced", []),
    ("clusterwide-applies-everywhere", [CLUSTERWIDE_DENY], flow(APP, WORLD, dst_ip="8.8.8.8"), "denied", ["cw"]),
    ("to-endpoints-empty-is-same-namespace", [SAME_NS], flow(APP, DB), "allowed", ["same-ns"]),
    ("to-endpoints-empty-not-other-namespace", [SAME_NS], flow(APP, OTHER_NS_DB), "default-deny", []),
    ("cidr-inside", [CIDR], flow(APP, WORLD, dst_ip="192.0.2.10"), "allowed", ["cidr"]),
    ("cidr-except", [CIDR], flow(APP, WORLD, dst_ip="192.0.2.200"), "default-deny", []),
    ("cidr-never-matches-pods", [CIDR], flow(APP, DB, dst_ip="192.0.2.10"), "default-deny", []),
    ("cidr-group-ref", [GROUP, GROUP_REF], flow(APP, WORLD, dst_ip="198.51.100.7"), "allowed", ["group-ref"]),
    ("cidr-group-selector", [GROUP, GROUP_SEL], flow(APP, WORLD, dst_ip="198.51.100.7"), "allowed", ["group-sel"]),
    ("entity-host-by-identity", [ENTITIES], flow(APP, HOST, dst_ip="10.1.0.1"), "allowed", ["entities"]),
    ("entity-kube-apiserver", [ENTITIES], flow(APP, {"identity": 7, "labels": ["reserved:kube-apiserver"]}),
     "allowed", ["entities"]),
    ("entity-cluster-not-world", [CLUSTER], flow(APP, WORLD, dst_ip="8.8.8.8"), "default-deny", []),
    ("entity-cluster-pod", [CLUSTER], flow(APP, LOCAL_OTHER_NS_DB), "allowed", ["cluster"]),
    # pkg/policy/api/entity.go: `cluster` is k8s:io.cilium.k8s.policy.cluster=<local>, not any namespaced pod.
    ("entity-cluster-not-other-mesh-cluster", [CLUSTER], flow(APP, OTHER_NS_DB), "default-deny", []),
    # pkg/policy/rules.go: an entry with only fromRequires/toRequires grants nothing.
    ("requires-only-grants-nothing", [cnp("req", WEB + "  egress:\n  - toRequires: [{matchLabels: {app: db}}]\n")],
     flow(APP, DB), "default-deny", []),
    ("port-range-udp-any", [RANGE], flow(APP, WORLD, dst_ip="8.8.8.8", port=8050, proto="UDP"), "allowed", ["range"]),
    ("port-range-outside", [RANGE], flow(APP, WORLD, dst_ip="8.8.8.8", port=8101), "default-deny", []),
    ("named-port-unresolvable", [NAMED], flow(APP, WORLD, dst_ip="8.8.8.8", port=443), "default-deny", []),
    ("icmp-named-type", [ICMP], flow(APP, WORLD, dst_ip="8.8.8.8", port=8, proto="ICMPv4"), "allowed", ["icmp"]),
    ("icmp-v6-number", [ICMP], flow(APP, WORLD, dst_ip="2001:db8::1", port=128, proto="ICMPv6"), "allowed", ["icmp"]),
    ("icmp-other-type", [ICMP], flow(APP, WORLD, dst_ip="8.8.8.8", port=0, proto="ICMPv4"), "default-deny", []),
    ("tcp-not-matched-by-icmps", [ICMP], flow(APP, WORLD, dst_ip="8.8.8.8", port=8), "default-deny", []),
    ("to-services", [SERVICE], flow(APP, WORLD, dst_ip="192.0.2.1", destination_service={"name": "ext-db",
                                                                                        "namespace": "shop"}),
     "allowed", ["svc"]),
    ("ingress-enforced-at-destination", [INGRESS], flow(APP, DB, port=5432, direction="INGRESS"), "allowed",
     ["ingress"]),
    ("ingress-other-source", [INGRESS], flow(OTHER_NS_DB, DB, port=5432, direction="INGRESS"), "default-deny", []),
    ("hushflow-fqdn-deny", [FQDN_DENY, FQDN_ALLOW],
     flow(APP, WORLD, dst_ip="198.51.100.1", names=["ingest.telemetry.example.com"], verdict="DROPPED",
          drop="POLICY_DENY"), "denied", ["block"]),
    # A deny-only rule still switches egress to default-deny (enableDefaultDeny unset): Cilium's trap.
    ("hushflow-fqdn-deny-apex-not-matched", [FQDN_DENY],
     flow(APP, WORLD, dst_ip="198.51.100.1", names=["telemetry.example.com"]), "default-deny", []),
    ("deny-only-without-default-deny", [FQDN_DENY.replace("  log:", "  enableDefaultDeny: {egress: false}\n  log:")],
     flow(APP, WORLD, dst_ip="198.51.100.1", names=["telemetry.example.com"]), "not-enforced", []),
]


@pytest.mark.parametrize(("docs", "event", "outcome", "responsible"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decision(policies, docs, event, outcome, responsible):
    attributor = Attributor(policies(*docs))
    attribution = attributor.observe(event)
    assert attribution is not None
    assert attribution.decision.outcome == outcome
    assert sorted({m.rule.policy.name for m in attribution.decision.responsible}) == responsible


def test_fqdn_learned_from_dns_answers_and_expiring(policies):
    attributor = Attributor(policies(FQDN_ALLOW))
    attributor.observe(dns_answer(APP, "api.stripe.com", ["54.1.1.1"], ttl=30))
    within = attributor.observe(flow(APP, WORLD, dst_ip="54.1.1.1", time="2026-01-01T00:00:20Z"))
    after = attributor.observe(flow(APP, WORLD, dst_ip="54.1.1.1", time="2026-01-01T00:00:31Z"))
    assert within.decision.outcome == "allowed"
    assert after.decision.outcome == "default-deny"  # TTL 30 s ran out; time comes from the flows


def test_dns_answer_of_one_endpoint_selects_for_all(policies):
    # Cilium merges every endpoint's answers into one cache that all selectors read.
    attributor = Attributor(policies(FQDN_ALLOW))
    attributor.observe(dns_answer(pod("other", "x"), "api.stripe.com", ["54.1.1.1"]))
    assert attributor.observe(flow(APP, WORLD, dst_ip="54.1.1.1")).decision.outcome == "allowed"


def test_fqdn_never_selects_in_cluster_peers(policies):
    attributor = Attributor(policies(FQDN_ALLOW))
    attributor.observe(dns_answer(APP, "api.stripe.com", ["10.0.0.2"]))
    assert attributor.observe(flow(APP, DB, dst_ip="10.0.0.2")).decision.outcome == "default-deny"


def test_explain_mode_gives_reasons(policies):
    attributor = Attributor(policies(FQDN_DENY))
    event = flow(APP, WORLD, dst_ip="198.51.100.1", names=["x.telemetry.example.com"], verdict="DROPPED",
                 drop="POLICY_DENY")
    (match,) = attributor.observe(event, explain=True).decision.denies
    assert "port 443/TCP is covered by 443/TCP" in match.why
    assert any("x.telemetry.example.com, selected by matchPattern: *.telemetry.example.com" in w for w in match.why)
