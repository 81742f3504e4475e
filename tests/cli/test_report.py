"""`hushflow report`: the triage report of recorded flows. Unexpected drops grouped by workload,
peer (the DNS name when known), port and rule, with counts and first/last seen; planned drops
counted apart; "unexpected" decided as `hushflow run` decides it; text, JSON and Markdown."""

from __future__ import annotations

import io
import json
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from hushflow.app.daemon import Daemon, RunOptions
from hushflow.app.report import DropGroup, ReportOptions, make_report, render_json, render_markdown, render_text
from hushflow.cli.report import report

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "telemetry-block"
POLICIES = str(EXAMPLE / "policies")
FLOWS = EXAMPLE / "flows.jsonl"
TAG = "app-explicit-traffic-blocked"


# hushflow suggest's verified fixes for the 3 drops to 203.0.113.50:443
ALLOW_OR_BLOCK = (
    f"allow: 1 egress rule in CiliumNetworkPolicy/my-namespace/my-app-in-cluster ({POLICIES}/my-namespace-egress.yaml); "
    f"block: 1 egressDeny rule in CiliumNetworkPolicy/my-namespace/app-external-block-policy "
    f"({POLICIES}/app-external-block-policy.yaml)"
)


def hushflow_report(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(report, ["--policies", POLICIES, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_text_puts_the_unplanned_drops_on_top_and_counts_the_planned_apart() -> None:
    code, out, err = hushflow_report("--input-file", str(FLOWS))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == (f"25 flows, 17 policy verdicts: 3 unexpected drop(s) in 1 group(s), "
                        f"9 planned drop(s) ({TAG} 9)")
    header, row = lines[3].split(), lines[4].split()
    assert header[:5] == ["COUNT", "WORKLOAD", "PEER", "PORT", "RULE"]
    assert row[:5] == ["3", "my-namespace/my-app", "203.0.113.50", "443/TCP", "default-deny"]
    assert row[-2:] == ["2026-11-27T09:00:09.558Z", "2026-11-27T09:00:12.558Z"]  # first and last seen
    assert lines[5] == f"    suggestion: {ALLOW_OR_BLOCK}"
    assert len(lines) == 6


def test_suggestions_can_be_left_out() -> None:
    code, out, _err = hushflow_report("--input-file", str(FLOWS), "--no-suggest", "-o", "json")
    assert code == 0
    assert "suggestion" not in json.loads(out)["top"][0]


def test_no_fix_is_said_so_for_drops_an_intended_deny_covers() -> None:
    # Unplanned now (another expected tag), but the deny stands: suggest proposes no allow through it.
    code, out, _err = hushflow_report("--input-file", str(FLOWS), "-o", "json", "--expected-log", "something-else")
    assert code == 0
    first = json.loads(out)["top"][0]
    assert first["peer"] == "ingest.telemetry.example.com"
    allow, block = first["suggestion"].split("; ")
    assert allow.startswith("allow: none (") and block.startswith("block: none (")


def test_json_is_stable_and_complete() -> None:
    code, out, _err = hushflow_report("--input-file", str(FLOWS), "-o", "json")
    assert code == 0
    document = json.loads(out)
    assert out == orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode() + "\n"
    (group,) = document.pop("top")
    assert document == {"flows": 25, "groups": 1, "planned_by_tag": {TAG: 9}, "planned_drops": 9,
                        "policy_verdicts": 17, "skipped_inputs": 0, "unexpected_drops": 3}
    assert group == {
        "count": 3, "workload": "my-namespace/my-app", "peer": "203.0.113.50", "port": "443/TCP",
        "direction": "egress", "rule": "default-deny",
        "default_deny_by": ["CiliumNetworkPolicy/my-namespace/app-external-block-policy",
                            "CiliumNetworkPolicy/my-namespace/my-app-in-cluster",
                            "CiliumNetworkPolicy/my-namespace/my-app-saas-egress",
                            "CiliumNetworkPolicy/my-namespace/my-namespace-dns"],
        "first_seen": "2026-11-27T09:00:09.558Z", "last_seen": "2026-11-27T09:00:12.558Z",
        "first_flow": f"{FLOWS}:21",
        "suggestion": ALLOW_OR_BLOCK,
    }


def test_markdown_is_a_table_for_a_pull_request() -> None:
    code, out, _err = hushflow_report("--input-file", str(FLOWS), "-o", "markdown")
    assert code == 0
    assert out.startswith("### hushflow triage report\n\n25 flows, 17 policy verdicts: **3 unexpected drop(s)**")
    assert "| Count | Workload | Peer | Port | Rule | First seen | Last seen | Suggestion |\n" in out
    assert ("| 3 | my-namespace/my-app | 203.0.113.50 | 443/TCP | default-deny (4 policies select it) | "
            f"2026-11-27T09:00:09.558Z | 2026-11-27T09:00:12.558Z | {ALLOW_OR_BLOCK} |") in out


def without_hubble_names(tmp_path: Path) -> Path:
    """The example with Hubble's destination_names removed: names must come from the DNS answers."""
    lines = []
    for line in FLOWS.read_text().splitlines():
        event = json.loads(line)
        event["flow"].pop("destination_names", None)
        lines.append(json.dumps(event))
    path = tmp_path / "flows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_groups_by_peer_name_learned_from_dns_and_port_most_drops_first(tmp_path: Path) -> None:
    # Another expected tag: the deny's drops are unplanned now, as the daemon would count them.
    code, out, _err = hushflow_report("--input-file", str(without_hubble_names(tmp_path)), "-o", "json",
                                      "--expected-log", "something-else")
    assert code == 0
    document = json.loads(out)
    assert (document["unexpected_drops"], document["planned_drops"]) == (12, 0)
    rule = "CiliumNetworkPolicy/my-namespace/app-external-block-policy"
    assert [(g["count"], g["peer"], g["port"], g["rule"]) for g in document["top"]] == [
        (6, "ingest.telemetry.example.com", "443/TCP", rule),
        (3, "203.0.113.50", "443/TCP", "default-deny"),
        (3, "eu.telemetry.example.com", "80/TCP", rule),
    ]
    assert document["top"][0]["first_seen"] == "2026-11-27T09:00:00.408Z"
    assert document["top"][0]["last_seen"] == "2026-11-27T09:00:09.508Z"


def test_top_limits_the_groups_shown() -> None:
    code, out, _err = hushflow_report("--input-file", str(FLOWS), "-o", "markdown", "--top", "1",
                                      "--expected-log", "something-else")
    assert code == 0
    assert out.count("| my-namespace/my-app |") == 1
    assert "... and 2 more group(s)." in out


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--expected-log", "something-else"), id="expected-log"),
        pytest.param(("--expected-cel", "_flow.destination_names.size() == 0"), id="expected-cel"),
        pytest.param((), id="default"),
    ],
)
def test_unexpected_is_what_the_daemon_counts(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, out, _err = hushflow_report("--input-file", str(FLOWS), "-o", "json", *args)
    assert code == 0
    logs = tuple(args[1:]) if args[:1] == ("--expected-log",) else None
    cel = tuple(args[1:]) if args[:1] == ("--expected-cel",) else ()
    daemon = Daemon(RunOptions(policies=(POLICIES,), input_files=(str(FLOWS),), resolve=False, clock="flows",
                               expected_logs=logs, expected_cel=cel))
    assert daemon.run() == 0
    unexpected = sum(count for (_tag, expected), count in daemon.summary.drops_by_tag.items() if not expected)
    planned = sum(count for (_tag, expected), count in daemon.summary.drops_by_tag.items() if expected)
    document = json.loads(out)
    assert (document["unexpected_drops"], document["planned_drops"]) == (unexpected, planned)


def test_no_unexpected_drops_says_so() -> None:
    code, out, _err = hushflow_report("--input-file", str(FLOWS), "--expected-cel", "true")
    assert code == 0
    assert out.splitlines()[-1] == "no unexpected drops"
    assert "12 planned drop(s)" in out


def test_bad_lines_are_reported_with_where_and_exit_2(tmp_path: Path) -> None:
    flows = tmp_path / "flows.jsonl"
    flows.write_text(FLOWS.read_text() + "not json\n")
    code, out, err = hushflow_report("--input-file", str(flows))
    assert code == 2
    assert f"{flows}:26: invalid JSON" in err
    assert "3 unexpected drop(s)" in out  # the rest is still reported


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--input-file", "/nonexistent/flows.jsonl"), "no such input file: /nonexistent/flows.jsonl",
                     id="missing-input"),
        pytest.param((), "no input: pass --input-file", id="no-input"),
        pytest.param(("--input-file", str(FLOWS), "--policies", "/nonexistent/p.yaml"),
                     "/nonexistent/p.yaml: [HF004] no such file or directory", id="missing-policies"),
        pytest.param(("--input-file", str(FLOWS), "--expected-cel", "_flow.("), "--expected-cel:", id="bad-cel"),
    ],
)
def test_mistakes_exit_2_with_a_message(args: tuple[str, ...], message: str) -> None:
    code, _out, err = hushflow_report(*args)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_a_bad_policy_file_exits_2_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: bad\n"
                   "  namespace: x\nspec:\n  endpointSelector: {}\n  egress:\n  - toPorts:\n    - ports:\n"
                   "      - port: \"99999\"\n")
    code, _out, err = hushflow_report("--input-file", str(FLOWS), "--policies", str(bad))
    assert code == 2
    assert f"{bad}:11:9 spec.egress[0].toPorts[0].ports[0].port: [HF016]" in err


def test_each_output_carries_the_suggestion_of_its_group() -> None:
    asked: list[str] = []

    def suggest(group: DropGroup) -> str:
        asked.append(group.key.peer)
        return f"allow {group.key.peer} on {group.key.port}"

    options = ReportOptions(policies=(POLICIES,), input_files=(str(FLOWS),), top=2,
                            expected_logs=("something-else",))
    built = make_report(options, io.StringIO(), suggest=suggest)
    assert asked == ["ingest.telemetry.example.com", "203.0.113.50"]  # only the groups shown
    text = render_text(built, 2)
    assert "    suggestion: allow ingest.telemetry.example.com on 443/TCP\n" in text
    assert "| Suggestion |" in render_markdown(built, 2)
    assert json.loads(render_json(built, 2))["top"][1]["suggestion"] == "allow 203.0.113.50 on 443/TCP"


def test_stdin_is_read_and_suggestions_are_left_out_with_a_note() -> None:
    result = CliRunner().invoke(report, ["--policies", POLICIES, "--input-file", "-", "-o", "json"],
                                input=FLOWS.read_bytes())
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["unexpected_drops"], document["planned_drops"]) == (3, 9)
    assert "suggestion" not in document["top"][0]
    assert "no suggestions for flows read from stdin" in result.stderr
