"""The telemetry-block example end to end: enrichment, filtering on the tag, explain (golden files).

Regenerate the golden files after a deliberate change with:
    HUSHFLOW_UPDATE_GOLDEN=1 .venv/bin/pytest tests/engine/test_example_golden.py
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import orjson
import pytest

from hushflow.cli.observe import run_observe
from hushflow.flow.reader import events_from_bytes

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "telemetry-block"
FLOWS = EXAMPLE / "flows.jsonl"
GOLDEN = Path(__file__).parent / "golden"


def observe(*args: str) -> tuple[int, bytes, str]:
    out, err = io.BytesIO(), io.StringIO()
    code = run_observe(["--input-file", str(FLOWS), "--enrich", str(EXAMPLE), *args], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def check_golden(name: str, data: bytes) -> None:
    path = GOLDEN / name
    data = data.replace(str(ROOT).encode() + b"/", b"")
    if os.environ.get("HUSHFLOW_UPDATE_GOLDEN"):
        path.write_bytes(data)
    assert data == path.read_bytes(), f"{name} differs; see the module docstring to regenerate"


def test_example_flows_are_what_make_flows_writes(tmp_path):
    import runpy
    import sys

    target = tmp_path / "flows.jsonl"
    argv = sys.argv
    sys.argv = ["make_flows.py", str(target)]
    try:
        runpy.run_path(str(EXAMPLE / "make_flows.py"), run_name="__main__")
    finally:
        sys.argv = argv
    assert target.read_bytes() == FLOWS.read_bytes()


def test_enriched_jsonpb_golden_and_still_hubble_json():
    code, out, err = observe("-o", "jsonpb")
    assert code == 0, err
    check_golden("telemetry-block.enriched.jsonl", out)
    # Still canonical Hubble jsonpb: re-reading it changes nothing, and no hushflow key leaks in.
    again = events_from_bytes(out, strict=True)
    assert b"\n".join(e.raw for e in again) + b"\n" == out
    assert all("hushflow" not in orjson.loads(line) for line in out.splitlines())
    assert "filled: egress_allowed_by 1, egress_denied_by 9, ingress_allowed_by 1, policy_log 9" in err


def test_tag_filter_leaves_only_the_unplanned_drop():
    code, out, _ = observe(
        "-o", "jsonpb", "--verdict", "DROPPED", "--not", "--cel-expression",
        "'app-explicit-traffic-blocked' in _flow.policy_log",
    )
    assert code == 0
    flows = [orjson.loads(line)["flow"] for line in out.splitlines()]
    assert {f["IP"]["destination"] for f in flows} == {"203.0.113.50"}
    assert len(flows) == 3  # the policy verdict and its two SYN retransmit drops


def test_without_enrichment_the_tag_filter_cannot_tell_drops_apart():
    out, err = io.BytesIO(), io.StringIO()
    code = run_observe(["--input-file", str(FLOWS), "-o", "jsonpb", "--verdict", "DROPPED", "--not",
                        "--cel-expression", "'app-explicit-traffic-blocked' in _flow.policy_log"],
                       stdout=out, stderr=err)
    assert code == 0
    assert len(out.getvalue().splitlines()) == 12  # every drop, planned or not: Cilium left policy_log empty


def test_findings_object_next_to_flow():
    code, out, _ = observe("-o", "jsonpb", "--with-findings", "--drop-reason-desc", "POLICY_DENY", "--first", "1")
    assert code == 0
    event = orjson.loads(out)
    findings = event["hushflow"]
    assert list(event)[:1] == ["flow"]
    assert findings["decision"] == "denied" and findings["expected"] is True and findings["agrees"] is True
    (rule,) = findings["rules"]
    assert rule["policy"] == "my-namespace/app-external-block-policy"
    assert rule["rule"] == "spec" and rule["line"] == 10 and rule["log"] == "app-explicit-traffic-blocked"
    assert rule["file"].endswith("app-external-block-policy.yaml")


def test_explain_golden():
    code, out, _ = observe("-o", "explain")
    assert code == 0
    check_golden("telemetry-block.explain.txt", out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "explain"], "-o explain needs the policies"),
    ],
)
def test_explain_output_needs_policies(args, message):
    out, err = io.BytesIO(), io.StringIO()
    assert run_observe(["--input-file", str(FLOWS), *args], stdout=out, stderr=err) == 1
    assert message in err.getvalue()


def test_policies_with_errors_stop_enrichment(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\nspec:\n"
                   "  endpointSelector: {}\n  egres: [{}]\n")
    out, err = io.BytesIO(), io.StringIO()
    code = run_observe(["--input-file", str(FLOWS), "--enrich", str(bad)], stdout=out, stderr=err)
    assert code == 1
    assert "cannot enrich: the policies have 2 error(s)" in err.getvalue()
    assert f"{bad}:6:3 spec.egres: [HF010] unknown field" in err.getvalue()


def test_explain_command_line(tmp_path):
    from click.testing import CliRunner

    from hushflow.cli import main

    result = CliRunner().invoke(main, ["explain", "--policies", str(EXAMPLE), "--input-file", str(FLOWS),
                                       "--to-ip", "203.0.113.50", "--first", "1"])
    assert result.exit_code == 0
    assert "UNEXPECTED drop" in result.output and "default-deny" in result.output
    assert CliRunner().invoke(main, ["explain", "--input-file", str(FLOWS)]).exit_code == 1
