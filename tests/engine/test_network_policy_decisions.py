"""Decision table: Kubernetes NetworkPolicy as Cilium enforces it, alone and beside Cilium's kinds.

Every row is (id, Cilium version, policies, flow, expected outcome, responsible policies). Each
group cites the source it comes from; the cases are written here, none is copied.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from hushflow.engine.attribution import Attributor
from hushflow.engine.explain import explain_flow
from hushflow.engine.pods import load_pods
from hushflow.policy.loading import load_policies
from hushflow.policy.model import BuildOptions, PolicySet
from tests.engine.conftest import WORLD, flow


def mesh_pod(ns: str, app: str, identity: int, cluster: str = "default", ns_labels: dict[str, str] | None = None,
             ) -> dict[str, Any]:
    """A pod as Hubble shows it: its labels, its cluster, and its namespace's labels as Cilium
    attaches them (`k8s:io.cilium.k8s.namespace.labels.<key>`, kubernetes.io/metadata.name always)."""
    namespace_labels = {"kubernetes.io/metadata.name": ns, **(ns_labels or {})}
    labels = [f"k8s:app={app}", f"k8s:io.cilium.k8s.policy.cluster={cluster}", f"k8s:io.kubernetes.pod.namespace={ns}"]
    labels += [f"k8s:io.cilium.k8s.namespace.labels.{k}={v}" for k, v in namespace_labels.items()]
    return {"ID": identity % 4000 + 1, "identity": identity, "namespace": ns, "labels": sorted(labels),
            "pod_name": f"{app}-0", "cluster_name": cluster}


def netpol(name: str, spec: str, ns: str = "shop") -> str:
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\n"
            f"spec:\n{textwrap.indent(textwrap.dedent(spec).strip(), '  ')}\n")


def cnp(name: str, spec: str, ns: str = "shop") -> str:
    return f"apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}"


def ccnp(name: str, spec: str) -> str:
    return f"apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n{spec}"


WEB = mesh_pod("shop", "web", 1001)
DB = mesh_pod("shop", "db", 1002)
DEV_WEB = mesh_pod("dev", "web", 1003)
OPS_ADMIN = mesh_pod("ops", "admin", 1004, ns_labels={"team": "ops"})
OPS_OTHER = mesh_pod("ops", "other", 1005, ns_labels={"team": "ops"})
REMOTE_WEB = mesh_pod("shop", "web", 2001, cluster="east")

DB_FROM_WEB = netpol("db-from-web", """
    podSelector: {matchLabels: {app: db}}
    ingress:
    - from: [{podSelector: {matchLabels: {app: web}}}]
      ports: [{port: 5432}]
""")
DB_FROM_OPS = netpol("db-from-ops", """
    podSelector: {matchLabels: {app: db}}
    ingress:
    - from:
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ops}}
        podSelector: {matchLabels: {app: admin}}
""")
DB_FROM_ANY_NS = netpol("db-from-any-ns", """
    podSelector: {matchLabels: {app: db}}
    ingress: [{from: [{namespaceSelector: {}}]}]
""")
DB_ISOLATED = netpol("db-isolated", "podSelector: {matchLabels: {app: db}}")
DB_EGRESS_ISOLATED = netpol("db-egress-isolated", "podSelector: {matchLabels: {app: db}}\npolicyTypes: [Egress]")
DB_OPEN = netpol("db-open", "podSelector: {matchLabels: {app: db}}\ningress: [{}]")
DB_EMPTY_INGRESS = netpol("db-empty-ingress", "podSelector: {matchLabels: {app: db}}\ningress: []")
WEB_TO_NET = netpol("web-to-net", """
    podSelector: {matchLabels: {app: web}}
    egress:
    - to: [{ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}}]
""")
WEB_TO_RANGE = netpol("web-to-range", """
    podSelector: {matchLabels: {app: web}}
    egress:
    - ports: [{port: 8000, endPort: 8100}]
""")
WEB_TO_UDP_DNS = netpol("web-to-dns", """
    podSelector: {matchLabels: {app: web}}
    egress:
    - ports: [{port: 53, protocol: UDP}]
""")
DB_FROM_NET = netpol("db-from-net", """
    podSelector: {matchLabels: {app: db}}
    ingress: [{from: [{ipBlock: {cidr: 198.51.100.0/24}}]}]
""")

CNP_DENY_WEB = cnp("deny-web", "  endpointSelector: {matchLabels: {app: db}}\n"
                   "  ingressDeny:\n  - fromEndpoints: [{matchLabels: {app: web}}]\n")
CNP_ALLOW_WEB = cnp("cnp-allow-web", "  endpointSelector: {matchLabels: {app: db}}\n"
                    "  ingress:\n  - fromEndpoints: [{matchLabels: {app: web}}]\n")
CNP_DB_EGRESS = cnp("db-egress", "  endpointSelector: {matchLabels: {app: db}}\n"
                    "  egress:\n  - toEntities: [world]\n")
CNP_WEB_TO_DB = cnp("web-to-db", "  endpointSelector: {matchLabels: {app: web}}\n"
                    "  egress:\n  - toEndpoints: [{matchLabels: {app: db}}]\n")
CCNP_DENY_NET = ccnp("deny-net", "  endpointSelector: {}\n  egressDeny:\n  - toCIDR: [192.0.2.0/26]\n")


def ingress(src: dict[str, Any], dst: dict[str, Any], port: int = 5432, **kw: Any) -> dict[str, Any]:
    return flow(src, dst, direction="INGRESS", port=port, **kw)


def to_world(ip: str, port: int = 443, **kw: Any) -> dict[str, Any]:
    return flow(WEB, WORLD, dst_ip=ip, port=port, **kw)


V18, V19 = (1, 18), (1, 19)

# (id, version, policies, flow, outcome, responsible policies)
CASES = [
    # -- peers, subject and ports ------------------------------------------------------------------
    # cilium/cilium pkg/k8s/network_policy.go: parsePodSelector (the subject and a pod peer are
    # pinned to the policy namespace), parseNetworkPolicyPeer (namespaceSelector keys become
    # io.cilium.k8s.namespace.labels.<key>, ANDed with podSelector; {} = every namespace),
    # parsePorts (TCP by default, endPort kept).
    ("pod-peer-allowed", V19, [DB_FROM_WEB], ingress(WEB, DB), "allowed", ["db-from-web"]),
    ("pod-peer-other-port", V19, [DB_FROM_WEB], ingress(WEB, DB, port=80), "default-deny", []),
    ("pod-peer-protocol-defaults-to-tcp", V19, [DB_FROM_WEB], ingress(WEB, DB, proto="UDP"), "default-deny", []),
    ("pod-peer-pinned-to-namespace", V19, [DB_FROM_WEB], ingress(DEV_WEB, DB), "default-deny", []),
    ("namespace-and-pod-selector", V19, [DB_FROM_OPS], ingress(OPS_ADMIN, DB), "allowed", ["db-from-ops"]),
    ("namespace-and-pod-selector-and-not-or", V19, [DB_FROM_OPS], ingress(OPS_OTHER, DB), "default-deny", []),
    ("namespace-selector-by-metadata-name", V19, [DB_FROM_OPS], ingress(mesh_pod("dev", "admin", 1006), DB),
     "default-deny", []),
    ("empty-namespace-selector-any-namespace", V19, [DB_FROM_ANY_NS], ingress(DEV_WEB, DB), "allowed",
     ["db-from-any-ns"]),
    ("empty-namespace-selector-not-world", V19, [DB_FROM_ANY_NS], ingress(WORLD, DB, src_ip="198.51.100.9"),
     "default-deny", []),
    ("end-port-range-inside", V19, [WEB_TO_RANGE], to_world("203.0.113.5", port=8050), "allowed", ["web-to-range"]),
    ("end-port-range-outside", V19, [WEB_TO_RANGE], to_world("203.0.113.5", port=8101), "default-deny", []),
    ("protocol-udp", V19, [WEB_TO_UDP_DNS], to_world("203.0.113.5", port=53, proto="UDP"), "allowed",
     ["web-to-dns"]),
    # policy-default-local-cluster: parseNetworkPolicyPeer adds the cluster to a peer that names
    # none (on by default from 1.19, pkg/clustermesh/types/option.go).
    ("local-cluster-1.19-remote-peer", V19, [DB_FROM_WEB], ingress(REMOTE_WEB, DB), "default-deny", []),
    ("local-cluster-1.18-remote-peer", V18, [DB_FROM_WEB], ingress(REMOTE_WEB, DB), "allowed", ["db-from-web"]),
    # -- ipBlock ------------------------------------------------------------------------------------
    # pkg/k8s/network_policy.go ipBlockToCIDRRule: cidr and except as a CIDR rule, which selects
    # addresses outside the cluster (CIDR identities), never a pod by its IP.
    ("ipblock-inside", V19, [WEB_TO_NET], to_world("192.0.2.5"), "allowed", ["web-to-net"]),
    ("ipblock-except", V19, [WEB_TO_NET], to_world("192.0.2.200"), "default-deny", []),
    ("ipblock-outside", V19, [WEB_TO_NET], to_world("203.0.113.5"), "default-deny", []),
    ("ipblock-not-a-pod-in-range", V19, [WEB_TO_NET], flow(WEB, DB, dst_ip="192.0.2.7"), "default-deny", []),
    # An ingress ipBlock peer is parsed as a pod peer too when the local cluster is added (1.19).
    ("ingress-ipblock-1.19-local-pods", V19, [DB_FROM_NET], ingress(WEB, DB), "allowed", ["db-from-net"]),
    ("ingress-ipblock-1.18-cidr-only", V18, [DB_FROM_NET], ingress(WEB, DB), "default-deny", []),
    ("ingress-ipblock-world", V18, [DB_FROM_NET], ingress(WORLD, DB, src_ip="198.51.100.9"), "allowed",
     ["db-from-net"]),
    # -- policyTypes and default deny -------------------------------------------------------------
    # pkg/k8s/network_policy.go ParseNetworkPolicy: no ingress entry and policyTypes not only
    # Egress -> a deny-all ingress entry; no egress entry and Egress named -> a deny-all egress
    # entry; every entry has DefaultDeny. `ingress: [{}]` / `from: []` -> the wildcard selector.
    ("no-rules-isolates-ingress", V19, [DB_ISOLATED], ingress(WEB, DB), "default-deny", []),
    ("no-rules-leaves-egress", V19, [DB_ISOLATED], flow(DB, WORLD, dst_ip="203.0.113.5"), "not-enforced", []),
    ("egress-type-isolates-egress", V19, [DB_EGRESS_ISOLATED], flow(DB, WORLD, dst_ip="203.0.113.5"),
     "default-deny", []),
    ("egress-type-leaves-ingress", V19, [DB_EGRESS_ISOLATED], ingress(WEB, DB), "not-enforced", []),
    ("ingress-empty-rule-allows-all", V19, [DB_OPEN], ingress(WORLD, DB, src_ip="198.51.100.9"), "allowed",
     ["db-open"]),
    ("ingress-empty-list-allows-nothing", V19, [DB_EMPTY_INGRESS], ingress(WEB, DB), "default-deny", []),
    # -- across kinds -------------------------------------------------------------------------------
    # Cilium merges the rules of every kind into one repository (pkg/policy/repository.go); allows
    # add up, and a deny wins over any allow on the same traffic (pkg/policy/l4.go, deny
    # precedence; the NetworkPolicy entries are all Verdict Allow).
    ("cnp-deny-beats-np-allow", V19, [DB_FROM_WEB, CNP_DENY_WEB], ingress(WEB, DB), "denied", ["deny-web"]),
    ("ccnp-deny-beats-np-ipblock", V19, [WEB_TO_NET, CCNP_DENY_NET], to_world("192.0.2.5"), "denied", ["deny-net"]),
    ("np-allow-outside-ccnp-deny", V19, [WEB_TO_NET, CCNP_DENY_NET], to_world("192.0.2.70"), "allowed",
     ["web-to-net"]),
    ("cnp-allow-adds-to-np", V19, [DB_FROM_WEB, CNP_ALLOW_WEB], ingress(WEB, DB, port=80), "allowed",
     ["cnp-allow-web"]),
    ("np-allow-adds-to-cnp", V19, [DB_FROM_OPS, CNP_ALLOW_WEB], ingress(OPS_ADMIN, DB), "allowed", ["db-from-ops"]),
    ("np-ingress-deny-all-cnp-egress-allows", V19, [DB_ISOLATED, CNP_DB_EGRESS],
     flow(DB, WORLD, dst_ip="203.0.113.5"), "allowed", ["db-egress"]),
    ("cnp-egress-np-ingress-still-isolated", V19, [DB_ISOLATED, CNP_DB_EGRESS], ingress(WEB, DB), "default-deny", []),
    ("np-egress-deny-all-cnp-allows", V19, [DB_EGRESS_ISOLATED, CNP_DB_EGRESS],
     flow(DB, WORLD, dst_ip="203.0.113.5"), "allowed", ["db-egress"]),
    ("cnp-ingress-np-egress-isolation-elsewhere", V19, [netpol("web-egress", "podSelector: {matchLabels: {app: web}}\n"
                                                                "policyTypes: [Egress]"), CNP_WEB_TO_DB],
     flow(WEB, DB, port=5432), "allowed", ["web-to-db"]),
]


def build(tmp_path, docs: list[str], version: tuple[int, int]) -> PolicySet:
    path = tmp_path / "policies.yaml"
    path.write_text("\n---\n".join(d.strip() for d in docs) + "\n")
    loaded = load_policies([str(path)], BuildOptions.for_cluster(version))
    assert not [d for d in loaded.diagnostics if d.level.value == "error"], loaded.diagnostics
    return loaded.policy_set


@pytest.mark.parametrize(("version", "docs", "event", "outcome", "responsible"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_network_policy_decisions(tmp_path, version, docs, event, outcome, responsible):
    attribution = Attributor(build(tmp_path, docs, version)).observe(event)
    assert attribution is not None
    assert attribution.decision.outcome == outcome
    assert sorted({m.rule.policy.name for m in attribution.decision.responsible}) == responsible


def test_allowed_by_names_the_network_policy_as_hubble_does(tmp_path):
    """Hubble reads the kind from the derived-from label (pkg/k8s/apis/cilium.io/utils/utils.go
    GetPolicyFromLabels); the rule carries name, namespace and derived-from=NetworkPolicy."""
    event = ingress(WEB, DB)
    Attributor(build(tmp_path, [DB_FROM_WEB], V19)).observe(event)
    (entry,) = event["flow"]["ingress_allowed_by"]
    assert entry == {
        "name": "db-from-web", "namespace": "shop", "kind": "NetworkPolicy",
        "labels": ["k8s:io.cilium.k8s.policy.derived-from=NetworkPolicy", "k8s:io.cilium.k8s.policy.name=db-from-web",
                   "k8s:io.cilium.k8s.policy.namespace=shop"],
    }


def test_explain_names_the_kind_and_the_line(tmp_path):
    attributor = Attributor(build(tmp_path, [DB_FROM_WEB], V19))
    text = explain_flow(attributor, ingress(WEB, DB), "flows.json:1")
    assert text is not None
    assert "allow NetworkPolicy shop/db-from-web" in text
    assert f"{tmp_path / 'policies.yaml'}:7 spec.ingress[0].from[0]" in text
    assert "destination labels match podSelector (k8s:app=db, k8s:io.kubernetes.pod.namespace=shop)" in text
    denied = explain_flow(attributor, ingress(WEB, DB, port=80, verdict="DROPPED", drop="POLICY_DENIED"), "f:2")
    assert denied is not None and "- NetworkPolicy shop/db-from-web  (" in denied  # the default-deny rule


PODS = """\
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
spec:
  containers:
  - {name: db, ports: [{name: pg, containerPort: 5432}]}
status: {phase: Running, podIP: 10.0.0.2}
"""


def test_named_port_resolves_from_the_pod_spec(tmp_path):
    """parsePorts keeps a named port as its name; the agent resolves it from the selected pod's
    container ports (pkg/k8s/apis/cilium.io/named_ports.go); hushflow from the pod specs given."""
    policy = netpol("db-pg", "podSelector: {matchLabels: {app: db}}\ningress: [{ports: [{port: pg}]}]")
    pods_file = tmp_path / "pods.yaml"
    pods_file.write_text(PODS)
    pods = load_pods([str(pods_file)])
    assert not pods.problems
    with_pods = Attributor(build(tmp_path, [policy], V19), pods=pods.index)
    event = ingress(WEB, {**DB, "pod_name": "db-0"})
    assert with_pods.observe(event).decision.outcome == "allowed"
    assert with_pods.observe(ingress(WEB, {**DB, "pod_name": "db-0"}, port=5433)).decision.outcome == "default-deny"
    without = Attributor(build(tmp_path, [policy], V19))
    assert without.observe(ingress(WEB, DB)).decision.outcome == "unknown"
