"""ClusterNetworkPolicies in the jobs: `observe --enrich` on Cilium 1.20 attributes a drop an
Admin Deny decides to it; before 1.20 (not enforced, lint HF070) they change nothing; lint
counts them among the policies and `compile` leaves them alone and says so."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from hushflow.app.example import example_dir
from hushflow.cli.compile import compile_
from hushflow.cli.lint import lint
from hushflow.cli.observe import run_observe

EXAMPLE = example_dir()
assert EXAMPLE is not None
# my-app's HTTPS to the world, denied in the Admin tier before the example's policies.
KCNP = ("apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
        "metadata: {name: admin-no-https}\nspec:\n  tier: Admin\n  priority: 1\n"
        "  subject: {namespaces: {}}\n  egress:\n  - action: Deny\n    to: [{networks: [0.0.0.0/0]}]\n"
        "    protocols: [{tcp: {destinationPort: {number: 443}}}]\n")


def _policies(tmp_path: Path) -> Path:
    policies = tmp_path / "policies"
    shutil.copytree(EXAMPLE / "policies", policies)
    (policies / "admin.yaml").write_text(KCNP)
    return policies


def _denied_by(tmp_path: Path, version: str) -> list[list[str]]:
    out, err = io.BytesIO(), io.StringIO()
    run_observe(["--input-file", str(EXAMPLE / "flows.jsonl"), "--enrich", str(_policies(tmp_path)),
                 "--cilium-version", version, "--verdict", "DROPPED", "-o", "jsonpb"], stdout=out, stderr=err)
    flows = [json.loads(line)["flow"] for line in out.getvalue().splitlines()]
    return [[e["kind"] for e in f.get("egress_denied_by", [])] for f in flows if f["l4"].get("TCP", {}).get(
        "destination_port") == 443]


def test_observe_enrich_decides_with_them_from_1_20_only(tmp_path: Path) -> None:
    # 1.20 correlates its own type-5 verdicts (hushflow checks those): the drop notifications
    # hushflow fills name the Admin-tier deny, never the CiliumNetworkPolicy behind it.
    on_1_20 = [kinds for kinds in _denied_by(tmp_path / "a", "1.20") if kinds]
    assert on_1_20 and all(kinds == ["ClusterNetworkPolicy"] for kinds in on_1_20)
    on_1_19 = [kinds for kinds in _denied_by(tmp_path / "b", "1.19") if kinds]
    assert on_1_19 and all(kinds == ["CiliumNetworkPolicy"] for kinds in on_1_19)


def test_lint_counts_them_and_compile_leaves_them_alone(tmp_path: Path) -> None:
    policies = _policies(tmp_path)
    result = CliRunner().invoke(lint, ["--cilium-version", "1.20", str(policies / "admin.yaml")])
    assert "1 policy(ies)" in result.output, result.output
    out = tmp_path / "out"
    result = CliRunner().invoke(compile_, [str(policies), "--out", str(out), "--no-resolve", "--cilium-version",
                                           "1.20"])
    assert "read 1 ClusterNetworkPolicy object(s): left as they are" in result.output, result.output
    assert not any("admin-no-https" in p.read_text() for p in out.rglob("*.yaml"))
