"""The mixed-kinds example end to end (examples/mixed-kinds): a CiliumNetworkPolicy FQDN deny,
a Kubernetes NetworkPolicy and a Baseline ClusterNetworkPolicy on Cilium 1.20, explained.

Regenerate the golden file after a deliberate change with:
    HUSHFLOW_UPDATE_GOLDEN=1 .venv/bin/pytest tests/engine/test_mixed_example_golden.py
"""

from __future__ import annotations

import io
import runpy
import sys
from pathlib import Path

from hushflow.cli.explain import explain_argv
from hushflow.cli.observe import run_observe
from hushflow.policy.lint import lint_paths
from hushflow.policy.model import BuildOptions
from tests.engine.test_example_golden import ROOT, check_golden

EXAMPLE = ROOT / "examples" / "mixed-kinds"
ARGS = ["--policies", str(EXAMPLE / "policies"), "--input-file", str(EXAMPLE / "flows.jsonl"),
        "--cilium-version", "1.20", "--cluster-name", "demo"]


def test_the_flows_are_what_make_flows_writes(tmp_path: Path) -> None:
    target = tmp_path / "flows.jsonl"
    argv = sys.argv
    sys.argv = ["make_flows.py", str(target)]
    try:
        runpy.run_path(str(EXAMPLE / "make_flows.py"), run_name="__main__")
    finally:
        sys.argv = argv
    assert target.read_bytes() == (EXAMPLE / "flows.jsonl").read_bytes()


def test_explain_golden_names_every_kind_and_agrees_with_cilium() -> None:
    out, err = io.BytesIO(), io.StringIO()
    code = run_observe(explain_argv(ARGS), stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert text.count(b"matches what Cilium did") == 4 and b"DISAGREES" not in text
    assert b"allow NetworkPolicy my-namespace/postgres-from-my-app" in text
    assert b"decided in the Baseline tier by ClusterNetworkPolicy baseline-default-deny" in text
    check_golden("mixed-kinds.explain.txt", text)


def test_the_policies_lint_with_only_the_fqdn_deny_hushflow_compiles() -> None:
    report = lint_paths([str(EXAMPLE / "policies")], BuildOptions.for_cluster((1, 20), "demo"))
    assert sorted({(d.code, d.level.value) for d in report.diagnostics}) == [("HF020", "error"), ("HF071", "info")]
