"""ClusterNetworkPolicy tiers in the decision engine, attribution and explain, end to end.

Each row loads real YAML (a CiliumNetworkPolicy beside ClusterNetworkPolicies) and decides a flow
the way `hushflow run` and `observe --enrich` do. The precedence they check, from
docs/cluster-network-policy.md and its sources: the Admin tier decides before the
CNP/CCNP/NetworkPolicy tier (pkg/policy/types/policyentry.go tier constants, CFP-42904), Pass
hands the connection to the next tier, Baseline decides only where no CNP/CCNP/NetworkPolicy
selects the endpoint in that direction, and Cilium before 1.20 does not enforce the kind at all.
"""

from __future__ import annotations

import copy
import textwrap
from typing import Any

import pytest

from hushflow.engine.attribution import Attributor
from hushflow.engine.explain import render
from hushflow.policy.loading import load_policies
from hushflow.policy.model import BuildOptions
from tests.engine.conftest import WORLD, flow, pod

WEB = pod("shop", "web", 1001)
DB = pod("shop", "db", 1002)
OUT = "198.51.100.7"

CNP_ALLOW_443 = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-out, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toCIDR: [198.51.100.0/24]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
"""
CNP_DENY_443 = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-no-out, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egressDeny:
  - toCIDR: [198.51.100.0/24]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
"""


def kcnp(name: str, tier: str, priority: int, action: str, rule_name: str = "") -> str:
    named = f"name: {rule_name}, " if rule_name else ""
    return textwrap.dedent(f"""\
        apiVersion: policy.networking.k8s.io/v1alpha2
        kind: ClusterNetworkPolicy
        metadata: {{name: {name}}}
        spec:
          tier: {tier}
          priority: {priority}
          subject: {{namespaces: {{}}}}
          egress:
          - {{{named}action: {action}, to: [{{networks: [198.51.100.0/24]}}],
             protocols: [{{tcp: {{destinationPort: {{number: 443}}}}}}]}}
        """)


def attributor(tmp_path, docs: list[str], version: tuple[int, int] = (1, 20)) -> Attributor:
    path = tmp_path / "policies.yaml"
    path.write_text("---\n".join(docs))
    loaded = load_policies([str(path)], BuildOptions.for_cluster(version, "c1"))
    errors = [d for d in loaded.diagnostics if d.level.value == "error"]
    assert not errors, errors
    return Attributor(loaded.policy_set, cilium_version=version)


def out_flow(verdict: str = "FORWARDED", drop: str | None = None, src: dict[str, Any] = WEB) -> dict[str, Any]:
    return flow(src, WORLD, dst_ip=OUT, port=443, verdict=verdict, drop=drop, event_type=1 if drop else 5)


# (id, policies, source endpoint, Cilium version, outcome, tier, responsible policy kind/name)
ROWS = [
    ("admin-deny-beats-cnp-allow", [CNP_ALLOW_443, kcnp("no-smtp", "Admin", 10, "Deny")], WEB, (1, 20),
     "denied", "Admin", ("ClusterNetworkPolicy", "no-smtp")),
    ("admin-accept-beats-cnp-deny", [CNP_DENY_443, kcnp("let-out", "Admin", 10, "Accept")], WEB, (1, 20),
     "allowed", "Admin", ("ClusterNetworkPolicy", "let-out")),
    ("admin-pass-hands-on-to-the-cnp-deny", [CNP_DENY_443, kcnp("hand-on", "Admin", 10, "Pass")], WEB, (1, 20),
     "denied", "NetworkPolicy", ("CiliumNetworkPolicy", "web-no-out")),
    ("lowest-priority-decides", [kcnp("late-accept", "Admin", 20, "Accept"), kcnp("early-deny", "Admin", 5, "Deny")],
     WEB, (1, 20), "denied", "Admin", ("ClusterNetworkPolicy", "early-deny")),
    ("baseline-decides-where-no-cnp-selects", [CNP_ALLOW_443, kcnp("baseline-deny", "Baseline", 10, "Deny")], DB,
     (1, 20), "denied", "Baseline", ("ClusterNetworkPolicy", "baseline-deny")),
    ("baseline-ignored-where-a-cnp-selects", [CNP_ALLOW_443, kcnp("baseline-deny", "Baseline", 10, "Deny")], WEB,
     (1, 20), "allowed", "NetworkPolicy", ("CiliumNetworkPolicy", "web-out")),
    ("not-enforced-before-1.20", [CNP_ALLOW_443, kcnp("no-smtp", "Admin", 10, "Deny")], WEB, (1, 19),
     "allowed", "NetworkPolicy", ("CiliumNetworkPolicy", "web-out")),
]


@pytest.mark.parametrize(("docs", "src", "version", "outcome", "tier", "responsible"),
                         [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_the_tiers_decide_in_cilium_s_order(tmp_path, docs, src, version, outcome, tier, responsible):
    verdict = "FORWARDED" if outcome == "allowed" else "DROPPED"
    event = out_flow(verdict, None if outcome == "allowed" else "POLICY_DENY", src)
    attribution = attributor(tmp_path, docs, version).observe(event)
    assert attribution is not None
    assert attribution.decision.outcome == outcome
    assert attribution.decision.tier == tier
    assert attribution.agrees
    field = "egress_allowed_by" if outcome == "allowed" else "egress_denied_by"
    (entry,) = event["flow"][field]
    assert (entry["kind"], entry["name"]) == responsible


def test_a_drop_an_admin_deny_decides_is_attributed_to_it_as_hubble_names_it(tmp_path):
    event = out_flow("DROPPED", "POLICY_DENY")
    att = attributor(tmp_path, [CNP_ALLOW_443, kcnp("no-smtp", "Admin", 10, "Deny", "block-out")]).observe(event)
    assert att is not None and att.filled == ("egress_denied_by",)
    assert event["flow"]["egress_denied_by"] == [{
        "name": "no-smtp",
        "labels": ["k8s:io.cilium.k8s.policy.derived-from=ClusterNetworkPolicy", "k8s:io.cilium.k8s.policy.name=no-smtp",
                   ],
        "kind": "ClusterNetworkPolicy",
    }]
    assert "policy_log" not in event["flow"]  # the API has no log field


def test_explain_names_the_tier_the_priority_and_the_rule(tmp_path):
    a = attributor(tmp_path, [CNP_DENY_443, kcnp("let-out", "Admin", 7, "Accept", "out-443")])
    event = copy.deepcopy(out_flow())
    att = a.observe(event, explain=True)
    assert att is not None and att.connection is not None
    text = render(a, event["flow"], att.connection, att, "flows.jsonl:1")
    assert "decided in the Admin tier by ClusterNetworkPolicy let-out (priority 7, rule out-443)" in text
    assert "policies.yaml:" in text  # where the deciding entry is written
    # A Pass ends its tier: the Accept after it (priority 7) is never reached, the CNP deny decides.
    passed = attributor(tmp_path, [CNP_DENY_443, kcnp("hand-on", "Admin", 3, "Pass"),
                                   kcnp("let-out", "Admin", 7, "Accept")])
    event = copy.deepcopy(out_flow("DROPPED", "POLICY_DENY"))
    att = passed.observe(event, explain=True)
    assert att is not None and att.connection is not None
    text = render(passed, event["flow"], att.connection, att, "flows.jsonl:1")
    assert "handed on by ClusterNetworkPolicy hand-on (Pass, priority 3)" in text
    assert att.decision.outcome == "denied" and att.decision.tier == "NetworkPolicy"


CNP_NAMED_PORT = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-named, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: https, protocol: TCP}]}]
"""


def kcnp_to_db(action: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: policy.networking.k8s.io/v1alpha2
        kind: ClusterNetworkPolicy
        metadata: {{name: admin}}
        spec:
          tier: Admin
          priority: 1
          subject: {{namespaces: {{}}}}
          egress:
          - action: {action}
            to: [{{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: db}}}}}}}}]
        """)


@pytest.mark.parametrize(("action", "outcome", "tier"), [("Deny", "denied", "Admin"), ("Pass", "unknown", "NetworkPolicy")])
def test_an_unknown_cnp_verdict_is_still_decided_by_the_admin_tier(tmp_path, action, outcome, tier):
    """A named port hushflow cannot resolve (no pod specs) leaves the CNP tier unknown; the Admin
    tier decides before it all the same, and a Pass leaves the unknown as it is (Baseline is not
    consulted)."""
    a = attributor(tmp_path, [CNP_NAMED_PORT, kcnp_to_db(action)])
    att = a.observe(flow(WEB, DB, port=443, verdict="DROPPED", drop="POLICY_DENY", event_type=1))
    assert att is not None
    assert (att.decision.outcome, att.decision.tier) == (outcome, tier)


def test_a_networks_peer_does_not_select_pods_by_their_ip(tmp_path):
    """Cilium turns `networks` into CIDR selectors, which select only peers without a label
    identity under the default policy-cidr-match-mode: an Admin Deny of 10.0.0.0/8 denies the
    world there, not the pods whose IPs are in it."""
    deny_ten = kcnp("no-ten", "Admin", 1, "Deny").replace("198.51.100.0/24", "10.0.0.0/8")
    a = attributor(tmp_path, [CNP_ALLOW_443.replace("toCIDR: [198.51.100.0/24]", "toEntities: [all]"), deny_ten])
    to_pod = a.observe(flow(WEB, DB, dst_ip="10.0.0.2", port=443))
    to_world = a.observe(flow(WEB, WORLD, dst_ip="10.0.0.3", port=443))
    assert to_pod is not None and to_world is not None
    assert (to_pod.decision.outcome, to_pod.decision.tier) == ("allowed", "NetworkPolicy")
    assert (to_world.decision.outcome, to_world.decision.tier) == ("denied", "Admin")
