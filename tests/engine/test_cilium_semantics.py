"""Decision table: the policy semantics of issue 12, one row per semantic, each from Cilium's source.

Every row is (id, Cilium version, cluster name, policies, flow, expected outcome, responsible
policies). The cases are written here from the semantics; none is copied from Cilium.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from click.testing import CliRunner

from hushflow.cli.lint import lint
from hushflow.engine.attribution import Attributor
from hushflow.policy.loading import load_policies
from hushflow.policy.model import BuildOptions, PolicySet
from hushflow.policy.requires import requires_problems
from hushflow.policy.yamlsource import load_manifests
from tests.engine.conftest import WORLD, flow


def mesh_pod(ns: str, app: str, identity: int, cluster: str = "default", **extra: str) -> dict[str, Any]:
    labels = [f"k8s:app={app}", f"k8s:io.cilium.k8s.policy.cluster={cluster}", f"k8s:io.kubernetes.pod.namespace={ns}"]
    labels += [f"k8s:{k}={v}" for k, v in extra.items()]
    return {"ID": identity % 4000 + 1, "identity": identity, "namespace": ns, "labels": sorted(labels),
            "pod_name": f"{app}-0", "cluster_name": cluster}


def cnp(name: str, spec: str, ns: str = "shop") -> str:
    return f"apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}"


def ccnp(name: str, spec: str) -> str:
    return f"apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n{spec}"


WEB_SEL = "  endpointSelector: {matchLabels: {app: web}}\n"
DB_SEL = "  endpointSelector: {matchLabels: {app: db}}\n"
WEB = mesh_pod("shop", "web", 1001)
DB = mesh_pod("shop", "db", 1002)
REMOTE_DB = mesh_pod("shop", "db", 2002, cluster="east")  # the same workload in another mesh cluster
PROD_WEB = mesh_pod("shop", "web", 1003, env="prod")
DEV_WEB = mesh_pod("shop", "web", 1004, env="dev")

TO_DB = cnp("to-db", WEB_SEL + "  egress:\n  - toEndpoints: [{matchLabels: {app: db}}]\n")
TO_EAST_DB = cnp("to-east-db", WEB_SEL + "  egress:\n  - toEndpoints: [{matchLabels: "
                 "{app: db, io.cilium.k8s.policy.cluster: east}}]\n")
TO_DB_ANY_CLUSTER = cnp("to-db-any", WEB_SEL + "  egress:\n  - toEndpoints: [{matchLabels: {app: db}, "
                        "matchExpressions: [{key: io.cilium.k8s.policy.cluster, operator: Exists}]}]\n")
CCNP_TO_DB = ccnp("cw-to-db", WEB_SEL + "  egress:\n  - toEndpoints: [{matchLabels: {app: db}}]\n")
TO_CLUSTER = cnp("to-cluster", WEB_SEL + "  egress:\n  - toEntities: [cluster]\n")

FROM_WEB = cnp("from-web", DB_SEL + "  ingress:\n  - fromEndpoints: [{matchLabels: {app: web}}]\n")
REQUIRE_PROD = cnp("require-prod", DB_SEL + "  ingress:\n  - fromRequires: [{matchLabels: {env: prod}}]\n")
REQUIRE_PROD_L4 = cnp("require-prod-l4", DB_SEL + "  ingress:\n  - fromRequires: [{matchLabels: {env: prod}}]\n"
                      '    toPorts: [{ports: [{port: "5432", protocol: TCP}]}]\n')
FROM_WORLD = cnp("from-world", DB_SEL + "  ingress:\n  - fromEntities: [world]\n")
DENY_FROM_WEB = cnp("deny-web", DB_SEL + "  ingressDeny:\n  - fromEndpoints: [{matchLabels: {app: web}}]\n"
                    "    fromRequires: [{matchLabels: {env: dev}}]\n")
TO_PROD_ONLY = cnp("to-prod", WEB_SEL + "  egress:\n  - toRequires: [{matchLabels: {env: prod}}]\n")
TO_ANY_WEB = cnp("to-web", WEB_SEL + "  egress:\n  - toEndpoints: [{matchLabels: {app: web}}]\n")


def ingress(src: dict[str, Any], dst: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return flow(src, dst, direction="INGRESS", port=5432, **kw)


V18, V19 = (1, 18), (1, 19)

# (id, version, cluster name, policies, flow, outcome, responsible policies)
CASES = [
    # -- policy-default-local-cluster ------------------------------------------------------------
    # pkg/k8s/apis/cilium.io/utils/utils.go (getEndpointSelector, addClusterFilterByDefault) and
    # pkg/clustermesh/types/option.go (LocalClusterNameForPolicies; off by default in 1.18, the
    # Helm value clustermesh.policyDefaultLocalCluster is true from 1.19).
    ("local-cluster-1.19-remote-pod-default-denied", V19, "default", [TO_DB], flow(WEB, REMOTE_DB),
     "default-deny", []),
    ("local-cluster-1.19-local-pod-allowed", V19, "default", [TO_DB], flow(WEB, DB), "allowed", ["to-db"]),
    ("local-cluster-1.18-any-cluster", V18, "default", [TO_DB], flow(WEB, REMOTE_DB), "allowed", ["to-db"]),
    ("local-cluster-named-cluster-kept", V19, "default", [TO_EAST_DB], flow(WEB, REMOTE_DB),
     "allowed", ["to-east-db"]),
    ("local-cluster-named-cluster-not-local", V19, "default", [TO_EAST_DB], flow(WEB, DB), "default-deny", []),
    ("local-cluster-expression-on-cluster-key", V19, "default", [TO_DB_ANY_CLUSTER], flow(WEB, REMOTE_DB),
     "allowed", ["to-db-any"]),
    ("local-cluster-clusterwide-too", V19, "default", [CCNP_TO_DB], flow(WEB, REMOTE_DB), "default-deny", []),
    ("local-cluster-follows-cluster-name", V19, "east", [TO_DB], flow(WEB, REMOTE_DB), "allowed", ["to-db"]),
    ("local-cluster-ingress-remote-source", V19, "default", [FROM_WEB],
     ingress(mesh_pod("shop", "web", 2001, cluster="east"), DB), "default-deny", []),
    # -- the cluster entity ---------------------------------------------------------------------
    # pkg/policy/api/entity.go (InitEntities): host, remote-node, init, ingress, health, unmanaged,
    # kube-apiserver, and k8s:io.cilium.k8s.policy.cluster=<cluster-name>, whatever the version.
    ("cluster-entity-local-pod", V18, "default", [TO_CLUSTER], flow(WEB, DB), "allowed", ["to-cluster"]),
    ("cluster-entity-remote-pod", V18, "default", [TO_CLUSTER], flow(WEB, REMOTE_DB), "default-deny", []),
    ("cluster-entity-pod-without-cluster-label", V18, "default", [TO_CLUSTER],
     flow(WEB, {"identity": 3333, "labels": ["k8s:app=db", "k8s:io.kubernetes.pod.namespace=shop"]}),
     "default-deny", []),
    ("cluster-entity-named-cluster", V18, "east", [TO_CLUSTER], flow(WEB, REMOTE_DB), "allowed", ["to-cluster"]),
    ("cluster-entity-remote-node", V18, "default", [TO_CLUSTER],
     flow(WEB, {"identity": 6, "labels": ["reserved:remote-node"]}), "allowed", ["to-cluster"]),
    ("cluster-entity-not-world", V18, "default", [TO_CLUSTER], flow(WEB, WORLD, dst_ip="8.8.8.8"),
     "default-deny", []),
    # -- fromRequires / toRequires (1.18) ----------------------------------------------------------
    # pkg/policy/rules.go (resolveL4IngressPolicy: the requirements of every rule selecting the
    # endpoint), pkg/policy/api/ingress.go (GetSourceEndpointSelectorsWithRequirements: folded into
    # fromEndpoints only) and pkg/policy/rule.go (mergeIngress: no selector and no port, nothing merged).
    ("requires-only-grants-nothing", V18, "default", [REQUIRE_PROD], ingress(PROD_WEB, DB), "default-deny", []),
    ("requires-narrow-other-rule-kept", V18, "default", [FROM_WEB, REQUIRE_PROD], ingress(PROD_WEB, DB),
     "allowed", ["from-web"]),
    ("requires-narrow-other-rule-cut", V18, "default", [FROM_WEB, REQUIRE_PROD], ingress(DEV_WEB, DB),
     "default-deny", []),
    ("requires-not-entities", V18, "default", [FROM_WORLD, REQUIRE_PROD],
     ingress(WORLD, DB, src_ip="198.51.100.9"), "allowed", ["from-world"]),
    ("requires-with-ports-is-l4-only", V18, "default", [REQUIRE_PROD_L4], ingress(DEV_WEB, DB),
     "allowed", ["require-prod-l4"]),
    ("requires-deny-narrows-denies-only", V18, "default", [FROM_WEB, DENY_FROM_WEB], ingress(PROD_WEB, DB),
     "allowed", ["from-web"]),
    ("requires-deny-matching", V18, "default", [FROM_WEB, DENY_FROM_WEB], ingress(DEV_WEB, DB),
     "denied", ["deny-web"]),
    ("to-requires-narrow-egress", V18, "default", [TO_ANY_WEB, TO_PROD_ONLY], flow(WEB, DEV_WEB),
     "default-deny", []),
    ("to-requires-egress-kept", V18, "default", [TO_ANY_WEB, TO_PROD_ONLY], flow(WEB, PROD_WEB),
     "allowed", ["to-web"]),
    # 1.19 removed the fields (cilium#42615): pruned, they narrow nothing; the entry is `{}`.
    ("requires-1.19-pruned", V19, "default", [FROM_WEB, REQUIRE_PROD], ingress(DEV_WEB, DB),
     "allowed", ["from-web"]),
    ("requires-1.19-only-grants-nothing", V19, "default", [REQUIRE_PROD], ingress(PROD_WEB, DB),
     "default-deny", []),
]


def build(tmp_path, docs: list[str], options: BuildOptions) -> PolicySet:
    path = tmp_path / "policies.yaml"
    path.write_text("\n---\n".join(textwrap.dedent(d).strip() for d in docs) + "\n")
    loaded = load_policies([str(path)], options)
    # From 1.19 lint refuses fromRequires (HF010: the CRD keeps it only with maxItems 0, cilium#43167);
    # the model still builds the policy as if written without the field, which is what these rows check.
    errors = [d for d in loaded.diagnostics
              if d.level.value == "error" and "Requires takes no entries from Cilium 1.19" not in d.message]
    assert not errors, errors
    return loaded.policy_set


@pytest.mark.parametrize(
    ("version", "cluster", "docs", "event", "outcome", "responsible"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_cilium_semantics(tmp_path, version, cluster, docs, event, outcome, responsible):
    attributor = Attributor(build(tmp_path, docs, BuildOptions.for_cluster(version, cluster)))
    attribution = attributor.observe(event)
    assert attribution is not None
    assert attribution.decision.outcome == outcome
    assert sorted({m.rule.policy.name for m in attribution.decision.responsible}) == responsible


TO_MESH = cnp("to-mesh", WEB_SEL + "  egress:\n  - toEntities: [cluster-mesh]\n")

# (id, version, policy-default-local-cluster as the agent sets it, policies, flow, outcome, responsible)
SWITCH_CASES = [
    # pkg/clustermesh/types/option.go: policy-default-local-cluster is an agent option; a 1.19
    # cluster can turn it off, a 1.18 one on (Helm clustermesh.policyDefaultLocalCluster).
    ("local-cluster-off-on-1.19", V19, False, [TO_DB], flow(WEB, REMOTE_DB), "allowed", ["to-db"]),
    ("local-cluster-on-on-1.18", V18, True, [TO_DB], flow(WEB, REMOTE_DB), "default-deny", []),
    ("local-cluster-default-1.19", V19, None, [TO_DB], flow(WEB, REMOTE_DB), "default-deny", []),
    # pkg/policy/types (aggregateFor, Cilium 1.20): the reserved cluster-mesh identity aggregates
    # the global identities of other clusters; local pods aggregate to the cluster identity.
    ("cluster-mesh-entity-remote-pod", (1, 20), None, [TO_MESH], flow(WEB, REMOTE_DB), "allowed", ["to-mesh"]),
    ("cluster-mesh-entity-not-local-pod", (1, 20), None, [TO_MESH], flow(WEB, DB), "default-deny", []),
    ("cluster-mesh-entity-not-world", (1, 20), None, [TO_MESH], flow(WEB, WORLD, dst_ip="8.8.8.8"),
     "default-deny", []),
]


@pytest.mark.parametrize(
    ("version", "switch", "docs", "event", "outcome", "responsible"),
    [c[1:] for c in SWITCH_CASES], ids=[c[0] for c in SWITCH_CASES],
)
def test_local_cluster_switch_and_the_mesh_entity(tmp_path, version, switch, docs, event, outcome, responsible):
    attributor = Attributor(build(tmp_path, docs, BuildOptions.for_cluster(version, "default", switch)))
    attribution = attributor.observe(event)
    assert attribution is not None
    assert attribution.decision.outcome == outcome
    assert sorted({m.rule.policy.name for m in attribution.decision.responsible}) == responsible


def test_the_switch_reaches_every_command(tmp_path):
    """lint/summary (click) and observe (pflag) take the agent's setting; observe --enrich with
    =false on 1.19 allows the remote pod the default would default-deny."""
    import json

    from hushflow.cli.summary import summary

    policy = tmp_path / "p.yaml"
    policy.write_text(TO_DB + "\n")
    for command in (lint, summary):
        result = CliRunner().invoke(command, ["--cilium-version", "1.19", "--no-policy-default-local-cluster",
                                              str(policy)])
        assert result.exit_code == 0, result.output
    line = json.dumps(flow(WEB, REMOTE_DB, verdict="DROPPED", drop="POLICY_DENIED")).encode() + b"\n"
    base = ["--enrich", str(policy), "--input-file", "-", "--cilium-version", "1.19", "-o", "explain"]
    _, default, _ = _observe(base, line)
    _, off, _ = _observe([*base, "--policy-default-local-cluster=false"], line)
    assert b"dropped by default-deny" in default
    assert b"decision: allowed" in off


def test_explain_mode_applies_requirements_too(tmp_path):
    """Explain mode (which bypasses the decision cache) folds the deny requirements the same way."""
    attributor = Attributor(build(tmp_path, [FROM_WEB, DENY_FROM_WEB], BuildOptions.for_cluster(V18)))
    decision = attributor.observe(ingress(PROD_WEB, DB), explain=True).decision
    assert decision.outcome == "allowed" and not decision.denies
    (match,) = decision.allows
    assert any("peer labels match" in why for why in match.why)


def test_build_options_follow_the_version():
    """pkg/clustermesh/types/option.go: policy-default-local-cluster; pkg/defaults: cluster-name "default"."""
    assert BuildOptions.for_cluster(V18).local_cluster is None
    assert BuildOptions.for_cluster(V19).local_cluster == "default"
    assert BuildOptions.for_cluster((1, 20), "prod").local_cluster == "prod"
    assert BuildOptions.for_cluster(V18, "prod").cluster_name == "prod"


# -- the lint error for 1.19 ------------------------------------------------------------------------
# cilium#42615 (Cilium 1.19) removed FromRequires/ToRequires from pkg/policy/api: no CRD field.

def _manifest(tmp_path, text: str):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    (manifest,) = load_manifests([str(path)]).manifests
    return manifest


@pytest.mark.parametrize(("doc", "field", "line"), [
    (REQUIRE_PROD, "fromRequires", 7),
    (TO_PROD_ONLY, "toRequires", 7),
    (DENY_FROM_WEB, "fromRequires", 8),
])
def test_requires_is_an_error_from_1_19(tmp_path, doc, field, line):
    manifest = _manifest(tmp_path, doc + "\n")
    assert requires_problems(manifest, V18) == []
    (problem,) = requires_problems(manifest, V19)
    assert problem.code == "HF010" and problem.level.value == "error"
    # cilium#43167 kept the fields with MaxItems=0: the 1.19 API server rejects any entry.
    assert problem.message.startswith(f"{field} takes no entries from Cilium 1.19")
    assert problem.location.line == line
    assert problem.location.field.endswith(field)


def test_requires_message_says_what_pruning_leaves(tmp_path):
    (only,) = requires_problems(_manifest(tmp_path, REQUIRE_PROD + "\n"), (1, 20))
    (mixed,) = requires_problems(_manifest(tmp_path, DENY_FROM_WEB + "\n"), (1, 20))
    assert "selects no peer" in only.message
    assert "narrow no rule" in mixed.message


@pytest.mark.parametrize("name", ["", "UPPER", "-lead", "trail-", "a" * 33, "dots.in"])
def test_cluster_name_option_refuses_bad_names(tmp_path, name):
    path = tmp_path / "p.yaml"
    path.write_text(TO_DB + "\n")
    result = CliRunner().invoke(lint, ["--cluster-name", name, str(path)])
    assert result.exit_code == 2
    assert "--cluster-name" in result.output and "Traceback" not in result.output


def test_cluster_name_option_accepted(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(TO_DB + "\n")
    result = CliRunner().invoke(lint, ["--cilium-version", "1.19", "--cluster-name", "east-1", str(path)])
    assert result.exit_code == 0, result.output


def _observe(argv: list[str], stdin: bytes) -> tuple[int, bytes, str]:
    import io

    from hushflow.cli.observe import run_observe

    out, err = io.BytesIO(), io.StringIO()
    code = run_observe(argv, stdout=out, stderr=err, stdin=io.BytesIO(stdin), now_ns=lambda: 1_772_442_000 * 10**9)
    return code, out.getvalue(), err.getvalue()


def test_observe_enrich_follows_cluster_name(tmp_path):
    """observe --enrich: with 1.19 the peer in mesh cluster east is default-denied, unless east is local."""
    import json

    policy = tmp_path / "p.yaml"
    policy.write_text(TO_DB + "\n")
    line = json.dumps(flow(WEB, REMOTE_DB, verdict="DROPPED", drop="POLICY_DENIED")).encode() + b"\n"
    base = ["--enrich", str(policy), "--input-file", "-", "--cilium-version", "1.19", "-o", "explain"]
    code, local, _ = _observe(base, line)
    assert code == 0 and b"dropped by default-deny" in local and b"matches what Cilium did" in local
    code, east, _ = _observe([*base, "--cluster-name", "east"], line)
    assert code == 0 and b"decision: allowed" in east and b"policy.cluster=east" in east
    code, _, err = _observe([*base, "--cluster-name", "Not_A_Name"], line)
    assert code == 1 and "--cluster-name" in err  # observe exits like hubble on a usage error
