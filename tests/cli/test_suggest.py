"""`hushflow suggest`: the diff and the replay without --write, the files patched with it, the
daemon's events as input, and every user mistake or bad line as exit 2 with one clear line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from hushflow.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "telemetry-block"
FLOWS = EXAMPLE / "flows.jsonl"
EGRESS_FILE = "my-namespace-egress.yaml"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    copied = tmp_path / "policies"
    shutil.copytree(EXAMPLE / "policies", copied)
    return copied


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["suggest", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_without_write_it_prints_the_diff_and_the_replay_and_changes_nothing(policies: Path) -> None:
    before = {p.name: p.read_text() for p in policies.iterdir()}
    code, out, err = invoke("--policies", str(policies), "--input-file", str(FLOWS))
    assert (code, err) == (0, "")
    assert out.startswith("3 unexpected drop(s) in 1 group(s); 9 planned drop(s) left alone\n")
    assert "[1] my-namespace/my-app -> 203.0.113.50/32 443/TCP (egress): 3 flow(s)" in out
    assert "replay: 3 newly-allowed, 14 unchanged: verified" in out
    assert "replay: 3 tag-changed, 14 unchanged: verified" in out
    assert f"+++ {policies / EGRESS_FILE}\n" in out
    assert "    +  - toCIDR:\n    +    - 203.0.113.50/32\n" in out
    assert {p.name: p.read_text() for p in policies.iterdir()} == before


def test_write_patches_the_file_in_place_and_says_so(policies: Path) -> None:
    original = (policies / EGRESS_FILE).read_text()
    code, out, err = invoke("--policies", str(policies), "--input-file", str(FLOWS), "--action", "allow", "--write")
    assert (code, err) == (0, "")
    assert out.endswith(f"\nwrote {policies / EGRESS_FILE}\n")
    patched = (policies / EGRESS_FILE).read_text()
    assert patched != original
    assert patched.startswith(original.split("  ingress:\n")[0])  # comments and what came before: as they were
    assert "  - toCIDR:\n    - 203.0.113.50/32\n" in patched
    assert sorted(p.name for p in policies.iterdir()) == ["app-external-block-policy.yaml", EGRESS_FILE]  # no temp


def test_json_output(policies: Path) -> None:
    code, out, _ = invoke("--policies", str(policies), "--input-file", str(FLOWS), "-o", "json", "--action", "block")
    assert code == 0
    document = json.loads(out)
    assert (document["unexpected_drops"], document["planned_drops"], document["bad_input"]) == (3, 9, 0)
    [group] = document["groups"]
    assert (group["workload"], group["direction"], group["peer"], group["port"], group["flows"]) == (
        "my-namespace/my-app", "EGRESS", {"kind": "cidr", "value": "203.0.113.50/32"}, "443/TCP", 3)
    [block] = group["suggestions"]
    assert (block["action"], block["verified"], block["policy"]["name"], block["section"]) == (
        "block", True, "app-external-block-policy", "egressDeny")
    assert block["replay"]["counts"] == {"newly-dropped": 0, "newly-allowed": 0, "tag-lost": 0,
                                         "tag-changed": 3, "unchanged": 14}
    assert [g["proposed"]["tags"] for g in block["replay"]["changed"]] == [["app-explicit-traffic-blocked"]]
    assert list(document) == sorted(document)


def drop_events(tmp_path: Path, extra: list[str] = ()) -> Path:
    """The daemon's events for the example's unplanned drops (sinks.events' shape)."""
    lines = []
    for line in FLOWS.read_text().splitlines():
        flow = json.loads(line)["flow"]
        if flow.get("IP", {}).get("destination") == "203.0.113.50":
            lines.append(json.dumps({"kind": "unexpected-drop", "port": 443, "protocol": "TCP", "flow": flow}))
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


def test_from_events(policies: Path, tmp_path: Path) -> None:
    code, out, err = invoke("--policies", str(policies), "--from-events", str(drop_events(tmp_path)),
                            "--action", "allow")
    assert (code, err) == (0, "")
    assert out.startswith("3 unexpected drop(s) in 1 group(s)")
    assert "replay: 3 newly-allowed: verified" in out


@pytest.mark.parametrize(("bad", "reason"), [
    pytest.param("{not json", "invalid JSON", id="not-json"),
    pytest.param('{"kind": "unexpected-drop"}', "no `flow` object", id="no-flow"),
    pytest.param('{"flow": {"IP": "10.0.0.1"}}', "invalid flow: flow.IP", id="bad-flow"),
])
def test_a_bad_event_line_is_named_and_the_exit_is_2(policies: Path, tmp_path: Path, bad: str, reason: str) -> None:
    events = drop_events(tmp_path, [bad])
    code, out, err = invoke("--policies", str(policies), "--from-events", str(events), "--action", "allow")
    assert code == 2
    assert "replay: 3 newly-allowed: verified" in out  # the good lines are still answered
    assert f"{events}:4: " in err and reason in err
    assert "Traceback" not in err


def test_a_bad_flow_line_is_named_and_the_exit_is_2(policies: Path, tmp_path: Path) -> None:
    flows = tmp_path / "flows.jsonl"
    flows.write_text(FLOWS.read_text() + "[1, 2]\n")
    code, out, err = invoke("--policies", str(policies), "--input-file", str(flows), "--action", "allow")
    assert code == 2
    assert "verified" in out
    assert f"{flows}:26: " in err and "Traceback" not in err


def test_an_unverified_suggestion_exits_1(policies: Path, tmp_path: Path) -> None:
    lines = FLOWS.read_text().splitlines()
    canary = json.loads(lines[20])  # the unplanned drop's call, let through, from a canary with my-app's label
    canary["flow"]["source"]["workloads"] = [{"name": "my-app-canary", "kind": "Deployment"}]
    canary["flow"]["verdict"] = "FORWARDED"
    del canary["flow"]["drop_reason_desc"]
    flows = tmp_path / "flows.jsonl"
    flows.write_text("\n".join([*lines, json.dumps(canary)]) + "\n")
    code, out, err = invoke("--policies", str(policies), "--input-file", str(flows), "--action", "allow")
    assert (code, err) == (1, "")
    assert out.count("allow: not a fix: it would also change 1 newly-allowed flow(s)") == 1
    assert "+++" not in out


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["--input-file", str(FLOWS), "--write"], "--write applies one fix per drop", id="write-both"),
    pytest.param([], "give the drops with --input-file FLOWS or --from-events EVENTS", id="no-input"),
    pytest.param(["--input-file", str(FLOWS), "--from-events", str(FLOWS)], "(one of them)", id="both-inputs"),
    pytest.param(["--input-file", str(FLOWS), "--block-tag", "x" * 33], "--block-tag", id="long-tag"),
    pytest.param(["--input-file", "/nonexistent/flows.jsonl"], "/nonexistent/flows.jsonl", id="no-flows-file"),
    pytest.param(["--from-events", "/nonexistent/events.jsonl"], "/nonexistent/events.jsonl", id="no-events-file"),
])
def test_user_mistakes_exit_2_with_one_line(policies: Path, args: list[str], message: str) -> None:
    code, out, err = invoke("--policies", str(policies), *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out == ""


def test_policies_that_cannot_be_used_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\nspec: [\n")
    code, out, err = invoke("--policies", str(broken), "--input-file", str(FLOWS))
    assert code == 2 and out == ""
    assert "error: " in err and "Traceback" not in err
