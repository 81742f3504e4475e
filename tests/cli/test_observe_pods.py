"""`--pods FILE` on observe --enrich and explain: named ports resolve from pod specs."""

from __future__ import annotations

import io
import json
from pathlib import Path

from hushflow.app.observe import EXIT_BAD_INPUT
from hushflow.cli.explain import explain_argv
from hushflow.cli.observe import run_observe
from tests.engine.test_named_ports import API, EG_HTTP, PODS_YAML, egress


def _files(tmp_path: Path) -> tuple[str, str, str]:
    policy, pods, flows = tmp_path / "p.yaml", tmp_path / "pods.yaml", tmp_path / "flows.jsonl"
    policy.write_text(EG_HTTP + "\n")
    pods.write_text(PODS_YAML)
    flows.write_text(json.dumps(egress(API, 8080)) + "\n")
    return str(policy), str(pods), str(flows)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.StringIO()
    code = run_observe(argv, stdout=out, stderr=err, stdin=io.BytesIO())
    return code, out.getvalue().decode(), err.getvalue()


def test_explain_resolves_a_named_port_from_pods(tmp_path):
    policy, pods, flows = _files(tmp_path)
    argv = explain_argv(["--policies", policy, "--input-file", flows, "--pods", pods])
    assert argv is not None
    code, out, _err = _run(argv)
    assert code == 0
    assert "decision: allowed" in out and "http-alt is 8080/TCP in pod shop/api-0" in out


def test_without_pods_the_named_port_is_unknown(tmp_path):
    policy, _pods, flows = _files(tmp_path)
    code, out, _err = _run(["--input-file", flows, "--enrich", policy, "-o", "explain"])
    assert code == 0
    assert "decision: unknown" in out and "no pod specs were given" in out


def test_a_bad_pods_file_exits_2_with_a_clear_message(tmp_path):
    policy, _pods, flows = _files(tmp_path)
    missing = tmp_path / "missing.yaml"
    code, out, err = _run(["--input-file", flows, "--enrich", policy, "--pods", str(missing)])
    assert code == EXIT_BAD_INPUT and out == ""
    assert err.startswith(f"--pods: {missing}: no such file or directory") and "Traceback" not in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("items: [\n")
    code, _out, err = _run(["--input-file", flows, "--enrich", policy, "--pods", str(broken)])
    assert code == EXIT_BAD_INPUT and f"--pods: {broken}:2" in err


def test_skipped_pod_documents_are_reported_with_file_line(tmp_path):
    policy, pods, flows = _files(tmp_path)
    Path(pods).write_text(PODS_YAML + "- apiVersion: v1\n  kind: Secret\n  metadata: {name: x}\n")
    code, out, err = _run(["--input-file", flows, "--enrich", policy, "--pods", pods])
    assert code == EXIT_BAD_INPUT  # the flows are still printed; bad input is never silent
    assert out
    assert f"hushflow: --pods: {pods}:36:3 kind: a 'Secret' object, not a Pod: skipped" in err


def test_pods_without_enrich_is_a_usage_error(tmp_path):
    _policy, pods, flows = _files(tmp_path)
    code, _out, err = _run(["--input-file", flows, "--pods", pods])
    assert code != 0 and "--pods needs the policies" in err
