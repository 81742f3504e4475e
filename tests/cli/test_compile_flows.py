"""`hushflow compile --flows`: one odd flow is named by file:line and skipped; the DNS answers
after it are still learned, the output is written, and the exit code (2) says input was skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hushflow.app.example import example_dir
from hushflow.cli.compile import compile_

EXAMPLE = example_dir()
assert EXAMPLE is not None
LINES = (EXAMPLE / "flows.jsonl").read_text().splitlines()
INGEST = LINES[5]  # the answer for ingest.telemetry.example.com: 198.51.100.10
EU = LINES[7]  # the answer for eu.telemetry.example.com: 198.51.100.11, 198.51.100.12
assert "ingest.telemetry" in INGEST and "eu.telemetry" in EU and '"RESPONSE"' in EU


def changed(line: str, **flow_fields: object) -> str:
    event = json.loads(line)
    event["flow"].update(flow_fields)
    if "time" in flow_fields:
        event["time"] = flow_fields["time"]
    return json.dumps(event)


def compile_flows(tmp_path: Path, lines: list[str]) -> tuple[int, str, set[str]]:
    flows = tmp_path / "flows.jsonl"
    flows.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(compile_, [str(EXAMPLE / "policies"), "--out", str(out), "--no-resolve",
                                           "--flows", str(flows), "--clock", "flows"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    state = json.loads((out / ".hushflow-state.json").read_text())
    learned = {ip for ips in state["denies"].values() for ip in ips}
    return result.exit_code, result.output, learned


@pytest.mark.parametrize(("odd", "reason"), [
    # all refused by the reader itself: a line the C proof does not vouch for is validated at
    # every level, as protojson reads it
    (changed(INGEST, time="9999-99-99"), "flow.time: invalid timestamp '9999-99-99'"),
    (changed(INGEST, time="0000-01-01T00:00:00Z"), "flow.time: invalid timestamp '0000-01-01T00:00:00Z'"),
    (changed(INGEST, l7={"type": "RESPONSE", "dns": "x"}), "flow.l7.dns: expected an object, got string"),
    (changed(INGEST, destination={"labels": [1]}), "flow.destination.labels[0]: expected a string, got number"),
    (changed(INGEST, time=5), "flow.time: expected an RFC 3339 timestamp, got number"),
])
def test_an_odd_flow_is_named_and_skipped_and_the_answers_after_it_are_learned(tmp_path: Path, odd: str,
                                                                               reason: str) -> None:
    code, output, learned = compile_flows(tmp_path, [odd, EU])
    assert code == 2
    assert f"warning: {tmp_path / 'flows.jsonl'}:1: {reason}\n" in output
    assert "warning: 1 bad line skipped" in output
    assert learned == {"198.51.100.11", "198.51.100.12"}


def test_a_line_that_is_no_event_is_named_and_the_exit_code_says_so(tmp_path: Path) -> None:
    code, output, learned = compile_flows(tmp_path, ["{not json", INGEST, EU])
    assert code == 2
    assert f"warning: {tmp_path / 'flows.jsonl'}:1: invalid JSON" in output
    assert learned == {"198.51.100.10", "198.51.100.11", "198.51.100.12"}


def test_clean_flows_exit_zero(tmp_path: Path) -> None:
    code, output, learned = compile_flows(tmp_path, [INGEST, EU])
    assert code == 0, output
    assert "warning" not in output
    assert learned == {"198.51.100.10", "198.51.100.11", "198.51.100.12"}
