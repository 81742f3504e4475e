"""A kind Cilium enforces that hushflow does not decide with yet is never silent.

ClusterNetworkPolicies are loaded and validated (policy/cluster_network_policy.py) but the
decision engine does not use them yet; `run` and `observe --enrich` say so on stderr, `compile`
counts them in its notes, and lint counts them among the policies."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from click.testing import CliRunner

from hushflow.app.daemon import Daemon
from hushflow.app.example import example_dir
from hushflow.cli.lint import lint
from hushflow.cli.observe import run_observe
from tests.app.test_daemon import options

EXAMPLE = example_dir()
assert EXAMPLE is not None
KCNP = ("apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
        "metadata: {name: baseline-deny}\nspec:\n  tier: Baseline\n  priority: 10\n"
        "  subject: {namespaces: {}}\n  ingress:\n  - {action: Deny, from: [{namespaces: {}}]}\n")


def _policies(tmp_path: Path) -> Path:
    policies = tmp_path / "policies"
    shutil.copytree(EXAMPLE / "policies", policies)
    (policies / "baseline.yaml").write_text(KCNP)
    return policies


def test_run_says_it_does_not_decide_with_cluster_network_policies(tmp_path: Path) -> None:
    stderr = io.StringIO()
    daemon = Daemon(options(tmp_path, policies=(str(_policies(tmp_path)),), events=()), stderr=stderr)
    daemon.run()
    assert "1 ClusterNetworkPolicy object(s) read and validated, but hushflow does not decide with them yet" \
        in stderr.getvalue()


def test_observe_enrich_warns_and_lint_counts_them(tmp_path: Path) -> None:
    policies = _policies(tmp_path)
    out, err = io.BytesIO(), io.StringIO()
    run_observe(["--input-file", str(EXAMPLE / "flows.jsonl"), "--enrich", str(policies)], stdout=out, stderr=err)
    assert "hushflow: warning: 1 ClusterNetworkPolicy object(s) read and validated" in err.getvalue()
    result = CliRunner().invoke(lint, ["--cilium-version", "1.20", str(policies / "baseline.yaml")])
    assert "1 policy(ies)" in result.output, result.output
