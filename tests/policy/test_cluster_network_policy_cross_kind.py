"""Lint across kinds: ClusterNetworkPolicy entries the other kinds make pointless (Cilium 1.20
tiers, docs/cluster-network-policy.md): a Baseline entry for endpoints a CNP/CCNP/NetworkPolicy
always selects first (HF078: Baseline is consulted only where none does, CFP-42904 and
pkg/policy/types/policyentry.go tiers), and an Admin Pass nothing after it can decide (HF077:
it ends at the cluster default, allow)."""

from __future__ import annotations

import pytest

from hushflow.policy.lint import lint_paths
from hushflow.policy.model import BuildOptions

CCNP_ALL_EGRESS = ("apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: all-out}\n"
                   "spec:\n  endpointSelector: {}\n  egress: [{toEntities: [world]}]\n")
CNP_SHOP = ("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: shop-out, namespace: shop}\n"
            "spec:\n  endpointSelector: {}\n  egress: [{toEntities: [world]}]\n")


def kcnp(name: str, tier: str, action: str, subject: str = "{namespaces: {}}") -> str:
    return (f"apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: {name}}}\n"
            f"spec:\n  tier: {tier}\n  priority: 5\n  subject: {subject}\n  egress:\n"
            f"  - {{action: {action}, to: [{{networks: [192.0.2.0/24]}}]}}\n")


TEAM_A = "{namespaces: {matchLabels: {team: a}}}"

# (id, documents, the code expected once, or None)
ROWS = [
    ("baseline-under-a-clusterwide-policy", [CCNP_ALL_EGRESS, kcnp("base", "Baseline", "Deny")], "HF078"),
    ("baseline-beside-a-namespaced-policy-still-decides-elsewhere", [CNP_SHOP, kcnp("base", "Baseline", "Deny")],
     None),
    ("pass-with-nothing-after-it", [kcnp("hand-on", "Admin", "Pass", TEAM_A)], "HF077"),
    ("pass-with-a-baseline-after-it", [kcnp("hand-on", "Admin", "Pass", TEAM_A), kcnp("base", "Baseline", "Deny")],
     None),
    ("pass-with-a-namespaced-policy-after-it", [CNP_SHOP, kcnp("hand-on", "Admin", "Pass", TEAM_A)], None),
]


@pytest.mark.parametrize(("docs", "code"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_cross_kind_tier_checks(tmp_path, docs, code):
    path = tmp_path / "p.yaml"
    path.write_text("---\n".join(docs))
    report = lint_paths([str(path)], BuildOptions.for_cluster((1, 20)))
    found = [d for d in report.diagnostics if d.code in ("HF077", "HF078")]
    if code is None:
        assert found == []
        return
    (diagnostic,) = found
    assert diagnostic.code == code and diagnostic.location.file == str(path)
    assert diagnostic.location.line > 1  # the entry itself, under its document's header
